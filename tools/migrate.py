"""Schema migrations (Alembic) driven from code: `mangalm init` upgrades to head."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at this package's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision`."""
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to `revision` ("base" removes everything)."""
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version of the product."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# In dependency order; `sales_rollup_info` (the refresh time) first, before every rollup that
# records stores' reps or regions, so a store reassigned while they refresh makes them count as
# stale.
ROLLUPS = (
    "sales_rollup_info",
    "sales_rollup_teams",
    "sales_daily",
    "sales_store_daily",
    "sales_store_monthly",
    "sales_store_cume",
    "sales_rep_monthly",
    "sales_rep_cume",
    "sales_rep_daily",
    "sales_store_cume_daily",
    "sales_group_cume_daily",
    "sales_rep_cume_daily",
    "sales_team_cume_daily",
    "sales_region_cume_daily",
    "store_last_sale",
)


def refresh_rollup(conn: Connection) -> int:
    """Refresh the sales rollups after loading orders (each is built from the one before);
    returns how many logged sales changes they now include.

    The sales changes logged before the first refresh began (committed, so every refresh sees
    them) are in the rollups afterwards and are removed; a change committed meanwhile stays
    logged, and its days are read live until the next refresh. The rollups group every order
    line: with the default work_mem (4 MB) the sorts spill to disk at scale, so it is raised for
    the refresh and put back afterwards.
    """
    seen = list(conn.execute(text("SELECT id FROM sales_changes")).scalars())
    work_mem = conn.execute(text("SHOW work_mem")).scalar()
    conn.execute(text("SET LOCAL work_mem = '256MB'"))
    for view in ROLLUPS:
        conn.execute(text(f"REFRESH MATERIALIZED VIEW {view}"))
    conn.execute(text("SELECT set_config('work_mem', :v, true)"), {"v": work_mem})
    if seen:
        conn.execute(text("DELETE FROM sales_changes WHERE id = ANY(:ids)"), {"ids": seen})
    return len(seen)


# Held while the rollups are refreshed: one refresh at a time across processes.
REFRESH_LOCK = 0x6D616E67  # "mang"


@dataclass(frozen=True)
class RollupRefresh:
    """The outcome of `refresh_rollups`."""

    refreshed: bool
    seconds: float
    changes_cleared: int


def refresh_rollups(engine: Engine) -> RollupRefresh:
    """Refresh the sales rollups in one transaction, unless another process is doing so (a
    PostgreSQL advisory lock; then nothing is done). Readers keep reading the previous rollups
    until it commits (REFRESH locks each view against reads only while it swaps it)."""
    started = time.perf_counter()
    with engine.begin() as conn:
        locked = conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": REFRESH_LOCK})
        if not locked.scalar():
            return RollupRefresh(False, time.perf_counter() - started, 0)
        cleared = refresh_rollup(conn)
    vacuum_rollups(engine)
    return RollupRefresh(True, time.perf_counter() - started, cleared)


def vacuum_rollups(engine: Engine) -> None:
    """VACUUM (ANALYZE) the rollups after a committed refresh.

    A refreshed materialized view has no visibility map until it is vacuumed, so every
    "index-only" read of it also visits the heap; autovacuum may not get to a rewritten view
    for a long time. A few seconds at 10 million order lines; it needs its own transaction.
    """
    views = ", ".join(v for v in ROLLUPS if v != "sales_rollup_info")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM (ANALYZE) {views}"))
