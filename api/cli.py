"""The `mangalm` command.

Every command reads the one Settings; a bad setting or an unreachable database ends the
command with a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from tools.db import DatabaseError, describe_database, get_engine
from tools.settings import SettingsError, get_settings

app = typer.Typer(
    name="mangalm",
    help="Mangalm Sales Assistant: a conversational assistant for distributors' sales teams.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class LogLevel(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


class TwilioChannel(StrEnum):
    sms = "sms"
    whatsapp = "whatsapp"


class CommandError(RuntimeError):
    """An expected failure of a command; printed as one line, exit code 2."""


def friendly(func: F) -> F:
    """Turn expected errors into one clear line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SettingsError, DatabaseError, CommandError) as error:
            err.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Configure logging once for every command."""
    try:
        level = "DEBUG" if verbose else get_settings().log_level
    except SettingsError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(code=2) from None
    from tools.observability import configure_logging

    configure_logging(
        "WARNING" if level == "INFO" and not verbose else level,
        get_settings().log_format,
        sys.stderr,
    )


def _announce_database() -> None:
    err.print(describe_database(), style="dim", highlight=False)


@app.command()
@friendly
def init() -> None:
    """Create or migrate the database schema to the newest version."""
    from tools.migrate import current_revision, head_revision, upgrade

    _announce_database()
    engine = get_engine()
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    if before == after:
        console.print(f"Database schema is current (revision {after}).")
    else:
        console.print(f"Database schema migrated from {before or 'empty'} to {after}.")
    assert after == head_revision()


@db_app.command("info")
@friendly
def db_info() -> None:
    """Say which database is in use and its schema revision."""
    from tools.migrate import current_revision, head_revision

    console.print(describe_database(), highlight=False)
    console.print(f"schema revision: {current_revision(get_engine())} (newest {head_revision()})")


@db_app.command("refresh")
@friendly
def db_refresh() -> None:
    """Rebuild the sales rollups now (the app also does it nightly at ROLLUP_REFRESH_TIME)."""
    from tools.migrate import refresh_rollups

    _announce_database()
    outcome = refresh_rollups(get_engine())
    if not outcome.refreshed:
        raise CommandError("another process is refreshing the sales rollups; try again later")
    console.print(
        f"Sales rollups refreshed in {outcome.seconds:.1f} s "
        f"({outcome.changes_cleared} logged order changes folded in)."
    )


@db_app.command("downgrade")
@friendly
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for empty.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Migrate the schema down (data in dropped tables is lost)."""
    from tools.migrate import downgrade

    _announce_database()
    if not yes and not typer.confirm(f"Downgrade the schema to {revision}?"):
        raise typer.Exit(code=1)
    downgrade(get_engine(), revision)
    console.print(f"Database schema downgraded to {revision}.")


def _existing_file(path: Path) -> Path:
    if not path.exists():
        raise CommandError(f"{path}: no such file")
    if not path.is_file():
        raise CommandError(f"{path}: not a file")
    return path


@app.command()
@friendly
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="uvicorn's log level (access lines at info).")
    ] = LogLevel.info,
) -> None:
    """Run the API server: REST under /api, MCP at /mcp, probes at /healthz and /readyz.

    With `--workers N` each process listens on a socket of its own (SO_REUSEPORT), so the
    kernel spreads connections, and the webhook turns they bring, over the processes.
    """
    import uvicorn

    from api.main import create_app
    from api.serve import ServeError, serve_workers

    settings = get_settings()  # a bad setting stops here, named, before anything listens
    _announce_database()
    err.print(f"Serving on http://{host}:{port} (MCP at /mcp, docs at /docs)", highlight=False)
    # Keep idle client connections longer than uvicorn's 5 s default: a chat client that pauses
    # a few seconds between questions would otherwise race the server closing its connection
    # (and see "connection reset"); 75 s outlasts the usual 60 s idle timeout of proxies.
    keep_alive = 75
    if workers == 1:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=log_level.value,
            timeout_keep_alive=keep_alive,
        )
        return
    # Several processes build their apps from the environment (`api.main:create_app`).
    try:
        serve_workers(host, port, workers, log_level=log_level.value, timeout_keep_alive=keep_alive)
    except ServeError as error:
        raise CommandError(str(error)) from None


@app.command()
@friendly
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Turns run at once.")] = 8,
    burst: Annotated[bool, typer.Option("--burst", help="Stop once the queue is empty.")] = False,
    nice: Annotated[
        int,
        typer.Option(
            "--nice",
            min=0,
            max=19,
            help="Lower this worker's CPU priority (Unix nice) so that a web process on the "
            "same machine acknowledges webhooks first.",
        ),
    ] = 0,
) -> None:
    """Run webhook turns from the Redis queue (REDIS_URL) and send the replies."""
    import asyncio
    import os

    if nice:
        os.nice(nice)

    from channels.base import ChannelConfigError
    from channels.queue import make_worker, run_worker

    settings = get_settings()
    if not settings.redis_url:
        raise CommandError("REDIS_URL is not set: without it `mangalm serve` runs the turns itself")
    _announce_database()
    err.print("Worker: processing turns from the Redis queue (Ctrl+C stops)", highlight=False)
    try:
        asyncio.run(run_worker(make_worker(settings, concurrency=concurrency, burst=burst)))
    except ChannelConfigError as error:
        raise CommandError(str(error)) from None


@app.command("telegram")
@friendly
def telegram_bot(
    polling: Annotated[
        bool,
        typer.Option("--polling", help="Fetch updates with getUpdates (no public address)."),
    ] = False,
) -> None:
    """Run the Telegram bot locally by polling (webhook mode runs inside `mangalm serve`)."""
    from channels.base import ChannelConfigError

    if not polling:
        raise CommandError(
            "the Telegram webhook runs inside `mangalm serve` (with PUBLIC_BASE_URL, "
            "TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET); use --polling to run it locally"
        )
    settings = get_settings()
    _announce_database()
    err.print("Telegram bot polling for updates (Ctrl+C stops)", highlight=False)
    from channels.telegram import run_polling

    try:
        run_polling(settings)
    except ChannelConfigError as error:
        raise CommandError(str(error)) from None


apikey_app = typer.Typer(help="API keys for developers.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


def _user_by_email(session: Any, email: str) -> Any:
    from sqlalchemy import select

    from tools.models import User

    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise CommandError(f"no user with e-mail {email}")
    return user


@apikey_app.command("create")
@friendly
def apikey_create(
    user: Annotated[str, typer.Option("--user", help="E-mail of the user the key acts as.")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
) -> None:
    """Create an API key; the key is printed once and cannot be shown again."""
    from api.auth import ApiKeyError, create_api_key
    from tools.db import session_scope

    with session_scope() as session:
        owner = _user_by_email(session, user)
        if not owner.is_active:
            raise CommandError(f"user {owner.email} is inactive")
        try:
            created = create_api_key(session, owner, name)
        except ApiKeyError as error:
            raise CommandError(str(error)) from None
    console.print(created.key, highlight=False, soft_wrap=True)
    err.print(
        f"API key {created.prefix} ({created.name}) for {owner.email}. "
        "Store it now: it is not shown again. Send it as the X-API-Key header.",
        highlight=False,
    )


@apikey_app.command("list")
@friendly
def apikey_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
) -> None:
    """List API keys (prefix, name, owner, when made and last used, whether revoked)."""
    from rich.table import Table
    from sqlalchemy import select

    from api.auth import list_api_keys
    from tools.db import session_scope
    from tools.models import User

    with session_scope() as session:
        owner = _user_by_email(session, user) if user else None
        keys = list_api_keys(session, user=owner)
        owners = select(User.id, User.email).where(User.id.in_({k.user_id for k in keys}))
        emails = {user_id: email for user_id, email in session.execute(owners)}
    if not keys:
        console.print("No API keys.")
        return
    table = Table()
    # The prefix is what `apikey revoke` takes: never wrapped, so it can be copied.
    table.add_column("prefix", no_wrap=True)
    for column in ("name", "user", "created", "last used", "status"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.prefix,
            key.name,
            emails.get(key.user_id, str(key.user_id)),
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never",
            f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active",
        )
    console.print(table)


@apikey_app.command("revoke")
@friendly
def apikey_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, as `apikey list` shows.")],
) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    from api.auth import ApiKeyError, revoke_api_key
    from tools.db import session_scope

    with session_scope() as session:
        try:
            revoked = revoke_api_key(session, prefix)
        except ApiKeyError as error:
            raise CommandError(str(error)) from None
    console.print(f"API key {revoked.prefix} ({revoked.name}) is revoked.")


class ImportEntity(StrEnum):
    """What `mangalm import` loads."""

    stores = "stores"
    products = "products"
    orders = "orders"
    payments = "payments"
    communications = "communications"


def _import_epilog() -> str:
    from tools.data.import_rows import describe_fields

    entities = "\n\n".join(
        f"{entity.value}: {describe_fields(entity.value)}" for entity in ImportEntity
    )
    return (
        "Fields (* required) per entity; map each to a column with --map field=column. Columns "
        "named exactly like a field are mapped automatically.\n\n" + entities + "\n\n"
        "Orders also need unit_price or amount (then the unit price is derived); stores and "
        "products they mention that do not exist are created when store_name / product_name "
        "are mapped. Without order_id, a store's lines of one date form one order."
    )


IMPORT_HELP = (
    "Import a CSV export: stores, products, orders, payments or communications.\n\n"
    "The file imports whole or not at all: if any row is rejected nothing is written (unless "
    "--skip-rejects), and each rejected row is listed with its line number and reason and "
    "written to a rejects CSV. Importing the same file again creates no duplicates."
)


@app.command("import", help=IMPORT_HELP, epilog=_import_epilog())
@friendly
def import_data(
    entity: Annotated[ImportEntity, typer.Argument(help="What the file holds.")],
    file: Annotated[
        Path, typer.Argument(help="The CSV file (for orders with --lines: the order headers).")
    ],
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", "-m", help="field=column (repeat it): which column of the file feeds a field."
        ),
    ] = None,
    lines: Annotated[
        Path | None,
        typer.Option(help="Orders only: the order lines file, joined to FILE on order_id."),
    ] = None,
    lookup: Annotated[
        list[str] | None,
        typer.Option(
            help="field=FILE:KEY_COLUMN:VALUE_COLUMN: replace a field's codes by names from "
            "another CSV, e.g. category=categories.csv:category_id:category_name."
        ),
    ] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="Column separator (default: detected from the header).")
    ] = None,
    decimal: Annotated[str, typer.Option(help="Decimal mark of numbers: '.' or ','.")] = ".",
    date_format: Annotated[
        str | None,
        typer.Option(help="Date layout in strptime codes, e.g. %d/%m/%Y (default: ISO dates)."),
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="Text encoding, e.g. utf-8-sig, cp1252, latin-1.")
    ] = "utf-8-sig",
    timezone: Annotated[
        str, typer.Option(help="Time zone of timestamps that do not carry one.")
    ] = "UTC",
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where to write rejected rows (default: FILE.rejects.csv)."),
    ] = None,
    skip_rejects: Annotated[
        bool, typer.Option(help="Import the good rows even when some are rejected.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Check the file and report what would happen; write nothing.")
    ] = False,
) -> None:
    """Import a CSV export (see IMPORT_HELP)."""
    import time

    from tools.data.importer import (
        CsvOptions,
        ImportFailure,
        ImportRequest,
        import_file,
        parse_lookups,
        parse_map,
    )
    from tools.db import session_scope
    from tools.migrate import current_revision

    try:
        request = ImportRequest(
            entity=entity.value,
            path=_existing_file(file),
            mapping=parse_map(map_ or []),
            lines_path=_existing_file(lines) if lines else None,
            options=CsvOptions(
                delimiter=delimiter,
                decimal=decimal,
                date_format=date_format,
                encoding=encoding,
                timezone=timezone,
            ),
            lookups=parse_lookups(lookup or []),
            skip_rejects=skip_rejects,
            dry_run=dry_run,
        )
        _announce_database()
        if current_revision(get_engine()) is None:
            raise CommandError("the database has no schema yet: run `mangalm init` first")
        started = time.perf_counter()
        with err.status(f"Importing {file.name} ..."), session_scope() as session:
            result = import_file(session, request)
        if result.written and result.entity == "orders":
            from tools.migrate import vacuum_rollups

            vacuum_rollups(get_engine())
        seconds = time.perf_counter() - started
    except ImportFailure as error:
        raise CommandError(str(error)) from None
    _report_import(result, rejects, seconds)
    if result.rejects and not result.accepted:
        raise typer.Exit(code=1)


def _report_import(result: Any, rejects_path: Path | None, seconds: float) -> None:
    """Print an import's summary, its first rejects, and write the rejects files."""
    from tools.data.importer import default_rejects_path, write_rejects_files

    for role, mapping in result.mappings.items():
        pairs = ", ".join(f"{field}={column}" for field, column in mapping.items())
        err.print(f"{role} file mapping: {pairs}", style="dim", highlight=False, soft_wrap=True)
    names = " + ".join(path.name for path in result.files)
    verb = "Would import" if result.dry_run else "Imported" if result.accepted else "Read"
    console.print(
        f"{verb} {result.entity} from {names}: {result.rows_read:,} rows read, "
        f"{result.inserted:,} inserted, {result.updated:,} updated, "
        f"{result.unchanged:,} already present, {result.rejected:,} rejected "
        f"(in {seconds:.1f} s, {result.rows_read / max(seconds, 1e-6):,.0f} rows/s).",
        highlight=False,
        soft_wrap=True,
    )
    created = ", ".join(f"{count:,} {what}" for what, count in result.created.items() if count)
    if created:
        label = "Would write: " if result.dry_run else "Written: "
        console.print(label + created, highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if not result.rejects:
        if result.dry_run:
            console.print("Dry run: nothing was written.")
        return
    file_names = {role: table.path.name for role, table in result.tables.items()}
    shown = result.sorted_rejects()[:20]
    for reject in shown:
        where = f"{file_names.get(reject.file, '')} line {reject.line}"
        err.print(f"  {where}: {reject.reason}", highlight=False, markup=False, soft_wrap=True)
    if result.rejected > len(shown):
        more = result.rejected - len(shown)
        err.print(f"  ... and {more:,} more", highlight=False, soft_wrap=True)
    try:
        written = write_rejects_files(result, rejects_path)
    except OSError as error:
        if rejects_path is not None:
            message = f"cannot write rejects to {rejects_path}: {error.strerror}"
            raise CommandError(message) from None
        # The input's folder may be read-only (a shared dataset): keep rejects under our home.
        fallback = get_settings().home / "rejects" / default_rejects_path(result.files[0]).name
        written = write_rejects_files(result, fallback)
    where = ", ".join(map(str, written))
    err.print(f"Rejected rows with line numbers and reasons: {where}", soft_wrap=True)
    if result.dry_run:
        console.print("Dry run: nothing was written.")
    elif result.accepted:
        console.print(f"Imported the other rows; {result.rejected:,} rejected rows were skipped.")
    else:
        err.print(
            f"[bold red]Nothing was imported:[/] {result.rejected:,} rows were rejected. Fix them "
            "and run the command again, or pass --skip-rejects to import the other rows."
        )


# --------------------------------------------------------------------------- demo data

bench_app = typer.Typer(help="Benchmarks (results go into BENCHMARKS.md).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

StoresOpt = Annotated[int, typer.Option("--stores", help="Number of stores.")]
ProductsOpt = Annotated[int, typer.Option("--products", help="Number of products.")]
MonthsOpt = Annotated[int, typer.Option("--months", help="Months of order history.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")]
TodayOpt = Annotated[
    str | None, typer.Option("--today", help="Last day of history, YYYY-MM-DD (default: today).")
]


def _demo_day(value: str | None, option: str = "--today") -> Any:
    import datetime as dt

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} must be a date like 2025-06-30 (got {value!r})") from None


def _load_demo_with_progress(engine: Any, **kwargs: Any) -> Any:
    """Run `load_demo` with rich progress bars (one per step)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TaskID,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from tools.data.demo import DemoDataExists, DemoError, load_demo

    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bars:

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bars.add_task(step, total=max(total, 1))
            bars.update(tasks[step], completed=done, total=max(total, 1))

        try:
            return load_demo(engine, progress=report, **kwargs)
        except (DemoError, DemoDataExists) as error:
            raise CommandError(str(error)) from None


def _demo_counts_table(summary: Any) -> Any:
    from rich.table import Table

    table = Table(title="Demo distributor loaded", show_header=True)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in summary.counts.items():
        table.add_row(name, f"{count:,}")
    table.add_row("time taken", f"{summary.seconds:.1f} s")
    return table


@app.command()
@friendly
def demo(
    stores: StoresOpt = 500,
    products: ProductsOpt = 300,
    months: MonthsOpt = 24,
    seed: SeedOpt = 42,
    today: TodayOpt = None,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing (exit 0) when stores already exist.")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Empty every data table first (same transaction).")
    ] = False,
) -> None:
    """Generate and load the demo distributor (migrates the schema first)."""
    from rich.table import Table

    from tools.data.demo import has_stores
    from tools.migrate import upgrade

    if if_empty and replace:
        raise CommandError("--if-empty and --replace cannot be used together")
    day = _demo_day(today)
    _announce_database()
    engine = get_engine()
    upgrade(engine)
    if if_empty:
        with engine.connect() as conn:
            if has_stores(conn):
                console.print("Demo data is already there (the database has stores); nothing done.")
                return
    elif not replace:
        with engine.connect() as conn:
            if has_stores(conn):
                raise CommandError(
                    "the database already has stores; run `mangalm demo --replace` to empty it "
                    "and load the demo again, or `--if-empty` to keep it"
                )
    summary = _load_demo_with_progress(
        engine,
        stores=stores,
        products=products,
        months=months,
        seed=seed,
        today=day,
        replace=replace,
    )
    console.print(_demo_counts_table(summary))
    logins = Table(title="Demo logins (shown once; change them outside a demo)")
    logins.add_column("email")
    logins.add_column("role")
    logins.add_column("password")
    for login in summary.logins:
        logins.add_row(login.email, login.role, login.password)
    console.print(logins)


@bench_app.command("demo")
@friendly
def bench_demo(
    stores: StoresOpt = 500,
    products: ProductsOpt = 300,
    months: MonthsOpt = 24,
    seed: SeedOpt = 42,
    today: TodayOpt = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Empty the configured database first.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Time generating and loading the demo into the configured database; report its size."""
    import json
    import os
    import time

    from sqlalchemy import text

    from tools.bench import machine
    from tools.migrate import upgrade

    day = _demo_day(today)
    _announce_database()
    engine = get_engine()
    upgrade(engine)
    cpu_before = time.process_time()
    summary = _load_demo_with_progress(
        engine,
        stores=stores,
        products=products,
        months=months,
        seed=seed,
        today=day,
        replace=replace,
    )
    cpu_seconds = time.process_time() - cpu_before
    with engine.connect() as conn:
        size = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    figures = {
        "stores": stores,
        "products": products,
        "months": months,
        "seed": seed,
        "wall_seconds": round(summary.seconds, 1),
        "python_cpu_seconds": round(cpu_seconds, 1),
        "load_average_1m_after": None if load is None else round(load, 1),
        "steps_seconds": {k: round(v, 1) for k, v in summary.timings.items()},
        "rows": summary.counts,
        "database_bytes": size,
        "database_size": f"{size / 1024**2:,.0f} MB",
        "machine": machine(),
    }
    if as_json:
        console.print_json(json.dumps(figures))
        return
    console.print(_demo_counts_table(summary))
    for step, seconds in figures["steps_seconds"].items():
        console.print(f"  {step:<24} {seconds:>7.1f} s")
    console.print(
        f"database size: {figures['database_size']}; machine: {figures['machine']}; "
        f"Python CPU {figures['python_cpu_seconds']} s; load average after: "
        f"{figures['load_average_1m_after']}"
    )


@app.command()
@friendly
def ask(
    question: Annotated[str, typer.Argument(help="The question, in your own words.")],
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Ask as this user (e-mail); default: admin.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the turn as JSON.")] = False,
    today: Annotated[
        str | None, typer.Option("--today", help="Treat this date (YYYY-MM-DD) as today.")
    ] = None,
) -> None:
    """Ask the assistant one question."""
    import json

    from assistant.messages import InboundMessage

    assistant, email = _cli_assistant(user, today)
    result = assistant.handle(InboundMessage(channel="cli", sender=email, text=question))
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False, default=str))
    else:
        _print_reply(result.reply)


@app.command()
@friendly
def chat(
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Chat as this user (e-mail); default: admin.")
    ] = None,
    today: Annotated[
        str | None, typer.Option("--today", help="Treat this date (YYYY-MM-DD) as today.")
    ] = None,
) -> None:
    """Chat with the assistant in the terminal (the session is kept between questions)."""
    from assistant.messages import InboundMessage

    assistant, email = _cli_assistant(user, today)
    console.print(f"Chatting as {email}. Empty line or Ctrl-D to quit.", style="dim")
    while True:
        try:
            text = console.input("[bold]> [/]").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not text:
            break
        result = assistant.handle(InboundMessage(channel="cli", sender=email, text=text))
        _print_reply(result.reply)


def _cli_assistant(user: str | None, today: str | None) -> tuple[Any, str]:
    """The assistant for the CLI and the e-mail it acts as (default: the first admin)."""
    from assistant.factory import build_assistant, default_cli_user

    engine = get_engine()
    email = user or default_cli_user(engine)
    if email is None:
        raise CommandError("No users yet: run `mangalm demo` or create an admin first.")
    return build_assistant(get_settings(), engine, today=_parse_day(today)), email


def _parse_day(value: str | None) -> Any:
    import datetime as dt

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--today must be YYYY-MM-DD, not {value!r}") from None


def _print_reply(reply: Any) -> None:
    from rich.table import Table as RichTable

    console.print(reply.text, highlight=False, soft_wrap=True)
    if reply.table and reply.table.rows:
        table = RichTable(title=reply.table.title)
        for column in reply.table.columns:
            table.add_column(str(column))
        for row in reply.table.rows:
            table.add_row(*["" if cell is None else str(cell) for cell in row])
        console.print(table)
    if reply.buttons:
        console.print("Reply " + " or ".join(f"'{b.label}'" for b in reply.buttons), style="dim")
    for citation in reply.citations:
        console.print(
            f"  [{citation.communication_id}] {citation.store or ''} {citation.date or ''}: "
            f"{citation.snippet or ''}",
            style="dim",
            highlight=False,
        )
    if reply.notice:
        console.print(reply.notice, style="yellow")


@app.command()
@friendly
def train(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Train on orders up to this day (YYYY-MM-DD).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same models).")] = 0,
    no_backtest: Annotated[
        bool, typer.Option("--no-backtest", help="Skip the holdout backtest of each model.")
    ] = False,
) -> None:
    """Train every forecasting model, store its predictions and its backtest metrics."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from forecasting.train import TrainingError, train_all
    from tools.migrate import upgrade

    day = _demo_day(as_of, "--as-of")
    _announce_database()
    engine = get_engine()
    upgrade(engine)
    with Progress(
        TextColumn("{task.description:<36}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bars:
        task = bars.add_task("training", total=1.0)

        def report(step: str, done: float) -> None:
            bars.update(task, description=step, completed=done)

        try:
            with engine.begin() as conn:
                result = train_all(
                    conn,
                    home=get_settings().home,
                    as_of=day,
                    seed=seed,
                    evaluate=not no_backtest,
                    progress=report,
                )
        except TrainingError as error:
            raise CommandError(str(error)) from None
    table = Table(title=f"Models {result.version} (orders up to {result.as_of})")
    table.add_column("predictions")
    table.add_column("rows", justify="right")
    for kind, count in result.predictions.items():
        table.add_row(kind, f"{count:,}")
    console.print(table)
    for name, reason in result.skipped.items():
        console.print(f"[yellow]skipped {name}:[/] {reason}", highlight=False)
    console.print(f"Saved to {result.directory}", highlight=False)


@app.command()
@friendly
def backtest(
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            help="demo (the database), superstore, northwind, cdnow, or a path to their files.",
        ),
    ] = "demo",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    cutoffs: Annotated[int, typer.Option("--cutoffs", help="Number of rolling origins.")] = 3,
    no_peers: Annotated[
        bool, typer.Option("--no-peers", help="Skip the statsforecast peers (faster).")
    ] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Rolling-origin backtests of every model against baselines and peers, in one run."""
    import json

    from forecasting.datasets import DatasetError, run_dataset_backtest

    def note(message: str) -> None:
        if not as_json:
            err.print(message, style="dim", highlight=False)

    try:
        results = run_dataset_backtest(
            dataset, cutoffs=cutoffs, peers=not no_peers, seed=seed, progress=note
        )
    except DatasetError as error:
        raise CommandError(str(error)) from None
    if as_json:
        print(json.dumps(results, indent=2, default=str))
        return
    from rich.table import Table

    for result in results:
        table = Table(title=f"{result['dataset']}: cut-offs {', '.join(result['cutoffs'])}")
        table.add_column("task / method")
        table.add_column("metrics")
        for key, metrics in result["summary"].items():
            table.add_row(key, ", ".join(f"{m} {v:.3f}" for m, v in metrics.items()))
        console.print(table)


# --------------------------------------------------------------------------- retrieval


def _retrieval_errors() -> tuple[type[Exception], ...]:
    from retrieval.chroma import IndexMismatch
    from retrieval.embeddings import EmbeddingError
    from tools.registry import ToolError

    return (IndexMismatch, EmbeddingError, ToolError)


@app.command("index")
@friendly
def index_command(
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Drop the index and embed everything again.")
    ] = False,
) -> None:
    """Bring the communication-history index (Chroma) up to date with the database."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from retrieval.chroma import target_of
    from retrieval.index import sync_index

    _announce_database()
    settings = get_settings()
    err.print(f"{target_of(settings).describe()}, embeddings {settings.embeddings}", style="dim")
    with Progress(
        TextColumn("indexing communications"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        console=err,
        disable=not err.is_terminal,
    ) as bars:
        task = bars.add_task("index", total=1)

        def progress(done: int, total: int) -> None:
            bars.update(task, completed=done, total=max(total, 1))

        try:
            report = sync_index(get_engine(), settings, rebuild=rebuild, progress=progress)
        except _retrieval_errors() as error:
            raise CommandError(str(error)) from None
    console.print(
        f"Index {'rebuilt' if rebuild else 'updated'}: {report.indexed:,} communications "
        f"embedded ({report.chunks:,} chunks), {report.deleted:,} removed, "
        f"{report.total:,} in the index ({report.seconds:.1f} s)."
    )


eval_app = typer.Typer(help="Quality evaluations on the demo data.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("retrieval")
@friendly
def eval_retrieval(
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many queries.")] = 300,
) -> None:
    """Recall@5 and MRR of hybrid vs BM25-only vs vector-only search, with and without the
    store filter, on queries built from the demo generator's ground truth."""
    import json

    from retrieval.eval import run_evaluation

    _announce_database()
    try:
        report = run_evaluation(get_engine(), get_settings(), limit=limit)
    except _retrieval_errors() as error:
        raise CommandError(str(error)) from None
    if not report.queries:
        raise CommandError(
            "No labelled communications: load the demo first (`mangalm demo`), whose ground "
            "truth says which communications mention which complaint or scheme."
        )
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    from rich.table import Table

    table = Table(
        title=f"Retrieval: {report.queries} queries over {report.communications:,} communications"
    )
    for column in ("store filter", "method", "recall@5", "MRR", "p50 ms", "p95 ms"):
        left = column in ("store filter", "method")
        table.add_column(column, justify="left" if left else "right")
    for mode, by_method in report.results.items():
        for method, figures in by_method.items():
            table.add_row(
                "yes" if mode == "with_store_filter" else "no",
                method,
                f"{figures.recall_at_5:.3f}",
                f"{figures.mrr:.3f}",
                f"{figures.p50_ms:.1f}",
                f"{figures.p95_ms:.1f}",
            )
    console.print(table)


class EvalDataset(StrEnum):
    demo = "demo"
    superstore = "superstore"
    northwind = "northwind"


@eval_app.command("assistant")
@friendly
def eval_assistant(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    dataset: Annotated[
        EvalDataset,
        typer.Option("--dataset", help="Which question set (the database must hold that data)."),
    ] = EvalDataset.demo,
    user: Annotated[
        str | None,
        typer.Option("--user", "-u", help="Ask everything as this user (default: per question)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed drawing the entities (default: the evaluation seed)."),
    ] = None,
    today: Annotated[
        str | None,
        typer.Option("--today", help="Treat this date as today (default: the last order day)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the first N single questions.")
    ] = None,
    show: Annotated[int, typer.Option("--show", help="How many failures to list.")] = 25,
) -> None:
    """Ask the question set through the assistant and report intent accuracy, answer
    accuracy, clarification and wrong-answer rates (nothing is written: it all rolls back)."""
    import json

    from rich.table import Table

    from assistant.evaluation import EVAL_SEED, EvaluationError, evaluate
    from assistant.factory import make_planner

    _announce_database()
    planner = make_planner(get_settings())

    def progress(done: int, total: int) -> None:
        if not as_json and (done % 25 == 0 or done == total):
            err.print(f"  {done}/{total} turns", style="dim", highlight=False)

    try:
        report = evaluate(
            get_engine(),
            planner,
            dataset=dataset.value,
            seed=EVAL_SEED if seed is None else seed,
            user=user,
            today=_parse_day(today),
            limit=limit,
            progress=progress,
        )
    except EvaluationError as error:
        raise CommandError(str(error)) from None
    figures = report.to_json()
    if as_json:
        print(json.dumps(figures, ensure_ascii=False, default=str))
        return
    summary = Table(
        title=f"Assistant evaluation: {figures['dataset']} (seed {figures['seed']}, today "
        f"{figures['today']}, {figures['planner']} planner)"
    )
    for column in ("turns", "intent acc.", "answer acc.", "clarified", "wrong", "failed"):
        summary.add_column(column, justify="right")
    summary.add_column("set", justify="left")
    for label, key in (("all", None), ("single", "single_turn"), ("dialogues", "multi_turn")):
        rates = figures if key is None else figures[key]
        if not rates.get("n", rates.get("turns")):
            continue
        summary.add_row(
            str(rates.get("n", figures["turns"])),
            f"{rates['intent_accuracy']:.1%}",
            f"{rates['answer_accuracy']:.1%}",
            f"{rates['clarification_rate']:.1%}",
            f"{rates['wrong_answer_rate']:.1%}",
            f"{rates['failed_rate']:.1%}",
            label,
        )
    console.print(summary)
    per_intent = Table(title="Per intent")
    for column in ("intent", "n", "intent acc.", "answer acc.", "clarified", "wrong"):
        per_intent.add_column(column, justify="left" if column == "intent" else "right")
    for name, rates in figures["per_intent"].items():
        per_intent.add_row(
            name,
            str(rates["n"]),
            f"{rates['intent_accuracy']:.0%}",
            f"{rates['answer_accuracy']:.0%}",
            f"{rates['clarification_rate']:.0%}",
            f"{rates['wrong_answer_rate']:.0%}",
        )
    console.print(per_intent)
    for failure in figures["failures"][:show]:
        console.print(
            f"[bold]{failure['verdict']}[/] {failure['id']} ({failure['user']}): "
            f"{failure['text']!r} -> intent {failure['intent']} (expected "
            f"{failure['expected_intent']}); {'; '.join(failure['problems'])}",
            highlight=False,
        )
        console.print(f"    {failure['answer'][:200]!r}", style="dim", highlight=False)
    met = figures["targets"]["met"]
    console.print(
        f"latency p50 {figures['latency_ms']['p50']} ms, p95 {figures['latency_ms']['p95']} ms; "
        f"targets (answer accuracy >= 95%, wrong <= 1%): {'met' if met else 'NOT met'}",
        highlight=False,
    )


@bench_app.command("twilio")
@friendly
def bench_twilio(
    messages: Annotated[int, typer.Option("--messages", help="Inbound SMS to send.")] = 400,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Webhooks in flight at once.")
    ] = 16,
    redis: Annotated[
        str | None,
        typer.Option("--redis", help="Run turns through this Redis queue and worker processes."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=16, help="Worker processes (with --redis).")
    ] = 1,
    worker_nice: Annotated[
        int,
        typer.Option("--worker-nice", min=0, max=19, help="Workers' nice value (with --redis)."),
    ] = 0,
    web_workers: Annotated[
        int,
        typer.Option(
            "--web-workers",
            min=1,
            max=16,
            help="Web server processes (without --redis each runs its own turns).",
        ),
    ] = 1,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            help="Open loop: messages due per second (at most --concurrency in flight); "
            "without it each sender posts again as soon as it is acknowledged.",
        ),
    ] = None,
    channel: Annotated[
        TwilioChannel,
        typer.Option("--channel", help="Twilio's SMS or WhatsApp webhook."),
    ] = TwilioChannel.sms,
    instructions: Annotated[
        bool,
        typer.Option(
            "--instructions",
            help="Count the web process's instructions per message with valgrind's callgrind "
            "(one web process; it runs 30-50x slower: use e.g. --rate 2 --messages 300).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Twilio SMS (or WhatsApp) webhooks on loopback: ack latency p50/p95/p99 and end-to-end
    messages/s.

    Uses the configured database (load it with `mangalm demo` first); each message is
    answered by the offline planner and written to conversation_turns like any other.
    `--instructions` adds the instructions the web process ran per message: unlike time, they
    do not change with the machine's load, so they compare versions of the code.
    """
    import json

    from channels.twilio_bench import run_benchmark

    if messages < 1 or concurrency < 1:
        raise CommandError("--messages and --concurrency must be at least 1")
    if rate is not None and rate <= 0:
        raise CommandError("--rate must be positive")
    try:
        figures = run_benchmark(
            get_settings(),
            get_engine(),
            messages=messages,
            concurrency=concurrency,
            redis_url=redis,
            workers=workers,
            worker_nice=worker_nice,
            rate=rate,
            web_workers=web_workers,
            channel=channel.value,
            instructions=instructions,
        )
    except (RuntimeError, ValueError) as error:
        raise CommandError(str(error)) from None
    if as_json:
        console.print_json(json.dumps(figures))
        return
    ack = figures["ack_ms"]
    cpu = figures["cpu_ms_per_message"]
    kind = "SMS" if channel is TwilioChannel.sms else "WhatsApp messages"
    console.print(
        f"{figures['messages']} {kind}, {figures['load']}, at most {figures['concurrency']} in "
        f"flight, {figures['queue']}, {figures['senders']} senders: ack p50 {ack['p50']} ms, "
        f"p95 {ack['p95']} ms, p99 {ack['p99']} ms; offered "
        f"{figures['offered_messages_per_second']} messages/s, "
        f"{figures['end_to_end_messages_per_second']} messages/s end to end (last reply "
        f"{figures['last_reply_after_last_send_seconds']} s after the last message); "
        f"CPU per message {cpu['total']} ms ("
        + ", ".join(f"{k} {v}" for k, v in cpu.items() if k not in ("total", "machine"))
        + f"; the whole machine {cpu['machine']} ms); {figures['machine']}",
        highlight=False,
    )
    if "web_instructions_per_message" in figures:
        console.print(
            f"The web process ran {figures['web_instructions_per_message'] / 1e6:.3f} million "
            "instructions per message (callgrind; its times above are valgrind's).",
            highlight=False,
        )


@bench_app.command("assistant")
@friendly
def bench_assistant(
    turns: Annotated[int, typer.Option("--turns", help="Offline planner turns to time.")] = 200,
    llm_turns: Annotated[
        int, typer.Option("--llm-turns", help="Turns through the LLM planner (scripted model).")
    ] = 50,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Ask as this user (default: a rep).")
    ] = None,
    today: Annotated[
        str | None,
        typer.Option("--today", help="Treat this date as today (default: the last order day)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Offline planner turn latency (p50/p95, in process, on the configured database) and the
    time the agent adds around an LLM call (scripted zero-latency model)."""
    import json

    from assistant.evaluation import EvaluationError, benchmark

    if turns < 10 or llm_turns < 1:
        raise CommandError("--turns needs at least 10 and --llm-turns at least 1")
    _announce_database()
    try:
        figures = benchmark(
            get_engine(), turns=turns, llm_turns=llm_turns, user=user, today=_parse_day(today)
        )
    except EvaluationError as error:
        raise CommandError(str(error)) from None
    if as_json:
        print(json.dumps(figures, default=str))
        return
    console.print(
        f"Offline planner, {figures['offline_turns']} turns as {figures['user']} "
        f"({figures['stores_visible']:,} stores visible; {figures['data']['stores']:,} stores, "
        f"{figures['data']['order_lines']:,} order lines): p50 {figures['offline_p50_ms']} ms, "
        f"p95 {figures['offline_p95_ms']} ms (target p95 < 100 ms)",
        highlight=False,
    )
    console.print(
        f"Around an LLM call ({figures['llm_turns']} turns, scripted model): overhead p50 "
        f"{figures['llm_overhead_p50_ms']} ms, p95 {figures['llm_overhead_p95_ms']} ms "
        f"(target < 50 ms); machine: {figures['machine']}",
        highlight=False,
    )


@bench_app.command("tools")
@friendly
def bench_tools(
    calls: Annotated[int, typer.Option("--calls", help="Timed calls per tool, user, path.")] = 40,
    roles: Annotated[
        str, typer.Option("--roles", help="Comma-separated roles to call the tools as.")
    ] = "rep,manager,admin",
    only: Annotated[
        str | None, typer.Option("--tools", help="Comma-separated tool names (default: all).")
    ] = None,
    rest: Annotated[
        bool, typer.Option("--rest/--no-rest", help="Also time the REST API (POST /api/tools).")
    ] = True,
    explain: Annotated[
        bool, typer.Option("--explain/--no-explain", help="EXPLAIN the slowest statements.")
    ] = True,
    today: Annotated[
        str | None,
        typer.Option("--today", help="Treat this date as today (default: the last order day)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """p50/p95 latency of every read tool through the Python API and REST, per role, on the
    configured database; EXPLAIN of the slowest statement of tools over the target."""
    import json

    from tools.bench import TARGET_P95_MS, BenchError, run_benchmark

    if calls < 5:
        raise CommandError("--calls needs at least 5")
    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    bad = sorted(set(role_list) - {"rep", "manager", "admin", "viewer"})
    if bad or not role_list:
        raise CommandError(f"--roles takes rep, manager, admin, viewer (got {roles!r})")
    _announce_database()
    try:
        figures = run_benchmark(
            get_engine(),
            calls=calls,
            roles=role_list,
            tools=[t.strip() for t in only.split(",") if t.strip()] if only else None,
            rest=rest,
            explain=explain,
            today=_parse_day(today),
            note=lambda line: err.print(line, style="dim"),
        )
    except BenchError as error:
        raise CommandError(str(error)) from None
    if as_json:
        print(json.dumps(figures, default=str))
        return
    from rich.table import Table

    data = figures["data"]
    table = Table(
        title=(
            f"Read tools, {figures['calls_per_tool']} calls each ({data['stores']:,} stores, "
            f"{data['order_lines']:,} order lines; {figures['machine']}); "
            f"target p95 < {TARGET_P95_MS:.0f} ms"
        )
    )
    table.add_column("tool")
    for role in figures["tools"]:
        table.add_column(f"{role} python p50/p95 ms", justify="right")
        if rest:
            table.add_column(f"{role} REST p50/p95 ms", justify="right")
    names = next(iter(figures["tools"].values())).keys()
    for name in names:
        cells = [name]
        for rows in figures["tools"].values():
            row = rows[name]
            cells.append(f"{row['python_p50_ms']} / {row['python_p95_ms']}")
            if rest:
                cells.append(f"{row.get('rest_p50_ms')} / {row.get('rest_p95_ms')}")
        table.add_row(*cells)
    console.print(table)
    for rows in figures["tools"].values():
        for name, row in rows.items():
            if row["errors"]:
                err.print(f"{name}: errors {row['errors']}", highlight=False)
    for name, plans in figures["plans"].items():
        for plan in plans:
            console.print(f"\n[bold]{name}[/bold] as {plan['role']}: slowest statement plan")
            console.print(plan["plan"], highlight=False, markup=False)


@bench_app.command("e2e")
@friendly
def bench_e2e(
    users: Annotated[int, typer.Option("--users", help="Simulated people at once.")] = 50,
    seconds: Annotated[int, typer.Option("--seconds", help="How long each load runs.")] = 60,
    workers: Annotated[int, typer.Option("--workers", help="Server worker processes.")] = 1,
    think: Annotated[
        float,
        typer.Option("--think", help="Mean pause between a person's questions (s; 0: none)."),
    ] = 0.0,
    compare: Annotated[
        bool,
        typer.Option("--compare/--no-compare", help="Also load direct SQL endpoints (ratio)."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Chat turns through the HTTP API under concurrent users (locust on loopback): latency,
    throughput, errors and server memory, against endpoints that run the equivalent SQL."""
    import json

    from api.e2e_bench import run_benchmark
    from tools.bench import BenchError

    if users < 1 or seconds < 2 or workers < 1 or think < 0:
        raise CommandError(
            "--users and --workers need at least 1, --seconds at least 2, --think 0 or more"
        )
    _announce_database()
    try:
        figures = run_benchmark(
            get_engine(),
            users=users,
            seconds=seconds,
            workers=workers,
            compare=compare,
            think=think,
            note=lambda line: err.print(line, style="dim"),
        )
    except BenchError as error:
        raise CommandError(str(error)) from None
    if as_json:
        print(json.dumps(figures))
        return
    data = figures["data"]
    console.print(
        f"{users} users (think {think} s), {seconds} s, {workers} worker(s); "
        f"{data['stores']:,} stores, "
        f"{data['order_lines']:,} order lines; {figures['machine']}",
        highlight=False,
    )
    for mode in ("chat", "sql"):
        if mode in figures:
            f = figures[mode]
            console.print(
                f"  {mode:<4} p50 {f['p50_ms']:.0f} ms, p95 {f['p95_ms']:.0f} ms, "
                f"p99 {f['p99_ms']:.0f} ms, {f['throughput_per_s']} req/s, "
                f"{f['failures']} errors of {f['requests']:,}",
                highlight=False,
            )
    for mode in ("chat", "sql"):
        for failure, count in figures.get(mode, {}).get("errors", {}).items():
            err.print(f"  {mode} error x{count}: {failure}", highlight=False)
    rss = figures["server_rss_mb"]
    console.print(
        f"  server memory: {rss['after_start']} MB after start, peak {rss['peak']} MB",
        highlight=False,
    )
    if "overhead" in figures:
        o = figures["overhead"]
        console.print(
            f"  assistant vs direct SQL: p50 x{o['p50_ratio']}, p95 x{o['p95_ratio']}, "
            f"throughput /{o['throughput_ratio']}",
            highlight=False,
        )


@bench_app.command("retrieval")
@friendly
def bench_retrieval(
    sizes: Annotated[
        str, typer.Option("--sizes", help="Comma-separated numbers of communications.")
    ] = "20000,200000",
    searches: Annotated[int, typer.Option("--searches", help="Searches per size.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Indexing throughput, search p50/p95 and index size, each size in a scratch database."""
    import json

    from retrieval.bench import run_benchmark

    try:
        counts = [int(part.replace("_", "")) for part in sizes.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--sizes must be numbers like 20000,200000 (got {sizes!r})") from None
    if not counts or min(counts) < 100:
        raise CommandError("--sizes needs numbers of at least 100")
    _announce_database()
    figures = run_benchmark(
        counts, searches=searches, note=lambda line: err.print(line, style="dim")
    )
    if as_json:
        console.print_json(json.dumps(figures))
        return
    from rich.table import Table

    table = Table(title=f"Retrieval benchmark ({figures['machine']})")
    table.add_column("figure")
    for size in figures["sizes"]:
        table.add_column(f"{size['communications']:,}", justify="right")
    for key in figures["sizes"][0]:
        if key != "communications":
            table.add_row(key, *(str(size[key]) for size in figures["sizes"]))
    console.print(table)


EXAMPLE_QUESTIONS = [
    "which stores should I call today?",
    "how much does <a store> owe?",
    "what did <a store> order last time?",
    "sales by region this month vs last month",
    "which stores have not ordered for 30 days?",
    "what should I pitch to <a store>?",
    "what did <a store> complain about?",
    "book 5 cases of Parle-G for <a store>",
]


def _models_are_current(engine: Any) -> bool:
    """True when predictions exist and are newer than the newest order."""
    from sqlalchemy import text

    with engine.connect() as conn:
        newest_prediction = conn.execute(text("SELECT max(created_at) FROM predictions")).scalar()
        newest_order = conn.execute(text("SELECT max(created_at) FROM orders")).scalar()
    if newest_prediction is None:
        return False
    return newest_order is None or newest_prediction >= newest_order


def _demo_logins_still_valid(engine: Any) -> list[tuple[str, str, str]]:
    """Demo users whose password is still the demo default (so printing it is no leak)."""
    from sqlalchemy import text

    from tools.data.demo import DEMO_PASSWORDS
    from tools.security import verify_password

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT email, role, password_hash FROM users "
                "WHERE is_active AND email LIKE '%@demo.mangalm.in' ORDER BY id"
            )
        ).all()
    checked: dict[tuple[str, str], bool] = {}
    logins = []
    for email, role, password_hash in rows:
        password = DEMO_PASSWORDS.get(role)
        if password is None:
            continue
        key = (role, password_hash)
        if key not in checked:
            checked[key] = verify_password(password, password_hash)
        if checked[key]:
            logins.append((email, role, password))
    return logins


@app.command()
@friendly
def up(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Prepare everything, then exit.")
    ] = False,
) -> None:
    """Prepare everything and serve: migrate, load the demo distributor into an empty database,
    index communications, train the models when the data changed, then serve the web chat."""
    from rich.table import Table

    from tools.data.demo import has_stores
    from tools.migrate import upgrade

    settings = get_settings()
    _announce_database()
    engine = get_engine()
    upgrade(engine)
    with engine.connect() as conn:
        empty = not has_stores(conn)
    if empty:
        err.print("Loading the demo distributor (first run only) ...")
        summary = _load_demo_with_progress(engine)
        console.print(_demo_counts_table(summary))
    try:
        from retrieval.index import sync_index

        report = sync_index(engine, settings)
        err.print(
            f"Communication history indexed ({report.indexed} new or changed).", highlight=False
        )
    except Exception as error:  # the assistant still answers what needs no history
        err.print(f"[yellow]Communication history not indexed:[/] {error}", highlight=False)
    if _models_are_current(engine):
        err.print("Forecasting models are current.")
    else:
        err.print("Training the forecasting models (when the data changed) ...")
        from forecasting.train import TrainingError, train_all

        try:
            with engine.begin() as conn:
                train_all(conn, home=settings.home, evaluate=False)
        except TrainingError as error:
            err.print(f"[yellow]Models not trained:[/] {error}", highlight=False)
    logins = _demo_logins_still_valid(engine)
    if logins:
        table = Table(title="Demo logins")
        for column in ("email", "role", "password"):
            table.add_column(column)
        for row in logins:
            table.add_row(*row)
        console.print(table)
    console.print("Try asking:\n" + "\n".join(f"  - {q}" for q in EXAMPLE_QUESTIONS))
    if no_serve:
        return
    import uvicorn

    from api.main import create_app

    console.print(f"Web chat and API on http://{host}:{port} (Ctrl-C to stop)", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command()
@friendly
def digest(
    now: Annotated[
        bool, typer.Option("--now", help="Send today's digest now instead of at DIGEST_TIME.")
    ] = False,
) -> None:
    """Send each active rep their call list on their preferred channel (once a day per rep).

    Without --now, wait for DIGEST_TIME (in DIGEST_TIMEZONE) every day and send then; the API
    server does the same by itself, so run this only where no server runs.
    """
    import asyncio
    import datetime as dt

    from rich.table import Table

    from channels.digest import DigestScheduler, next_run, run_digest

    settings = get_settings()
    engine = get_engine()
    if not now:
        first = next_run(dt.datetime.now(dt.UTC), settings.digest_time, settings.digest_timezone)
        console.print(f"Next digest at {first:%Y-%m-%d %H:%M %Z} (Ctrl-C to stop)")

        async def send(when: dt.datetime) -> Any:
            return await run_digest(when, engine=engine, settings=settings)

        asyncio.run(DigestScheduler(send, settings).run_forever())
        return
    outcomes = asyncio.run(run_digest(dt.datetime.now(dt.UTC), engine=engine, settings=settings))
    if not outcomes:
        console.print("No active reps.")
        return
    table = Table(title="Morning digest")
    for column in ("rep", "channel", "status", "detail"):
        table.add_column(column)
    for outcome in outcomes:
        table.add_row(outcome.email, outcome.channel or "-", outcome.status, outcome.detail)
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
