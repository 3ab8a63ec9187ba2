"""Refreshing the sales rollups: the change log, one refresh at a time, the command and the
app's nightly schedule."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from api.cli import app as cli
from channels.digest import rollup_scheduler
from tools.db import make_engine, reset_engine
from tools.migrate import REFRESH_LOCK, refresh_rollups
from tools.settings import SettingsError, get_settings, load_settings


@pytest.fixture()
def sales_db(
    create_database: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Engine]]:
    """A migrated database with one store, one product and one order (rollups not refreshed)."""
    url = create_database(migrate=True)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO stores (code, name) VALUES ('S1', 'Sharma General')"))
        conn.execute(text("INSERT INTO products (sku, name, price) VALUES ('P1', 'Parle-G', 10)"))
        conn.execute(
            text(
                "INSERT INTO orders (store_id, order_date, status, total_amount) "
                "SELECT id, DATE '2026-10-01', 'delivered', 30 FROM stores"
            )
        )
        conn.execute(
            text(
                "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price, "
                "amount) SELECT o.id, 1, p.id, 3, 10, 30 FROM orders o, products p"
            )
        )
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    reset_engine()
    yield url, engine
    reset_engine()
    get_settings.cache_clear()
    engine.dispose()


def _rolled_up(engine: Engine) -> object:
    with engine.connect() as conn:
        return conn.execute(text("SELECT sum(amount) FROM sales_store_daily")).scalar()


def _logged(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM sales_changes")).scalar() or 0)


def test_refresh_folds_the_logged_changes_in(sales_db: tuple[str, Engine]) -> None:
    _, engine = sales_db
    assert _rolled_up(engine) is None and _logged(engine) == 2  # the order and its line
    outcome = refresh_rollups(engine)
    assert outcome.refreshed and outcome.changes_cleared == 2
    assert _rolled_up(engine) == 30 and _logged(engine) == 0
    with engine.connect() as conn:
        # Vacuumed after the refresh: index-only reads of the rollups skip the heap.
        pages = conn.execute(
            text(
                "SELECT relpages, relallvisible FROM pg_class WHERE relname IN "
                "('sales_daily', 'sales_store_daily', 'sales_store_monthly', 'sales_rep_monthly', "
                "'sales_rep_daily', 'sales_store_cume', 'sales_rep_cume', "
                "'sales_store_cume_daily', 'sales_rep_cume_daily', 'sales_region_cume_daily', "
                "'sales_group_cume_daily', 'sales_team_cume_daily', 'sales_rollup_teams')"
            )
        ).all()
        assert len(pages) == 13 and all(visible == total for total, visible in pages)
        assert sum(total for total, _ in pages) >= 2  # the daily rollups hold the order
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'cancelled'"))
        conn.execute(text("UPDATE orders SET total_amount = 31"))  # not a sales change
    with engine.connect() as conn:
        assert conn.execute(text("SELECT day FROM sales_changes")).scalars().all() == [
            dt.date(2026, 10, 1)
        ]
    assert refresh_rollups(engine).changes_cleared == 1
    assert _rolled_up(engine) is None and _logged(engine) == 0


def test_one_refresh_at_a_time(sales_db: tuple[str, Engine]) -> None:
    _, engine = sales_db
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": REFRESH_LOCK})
        try:
            outcome = refresh_rollups(engine)
            assert not outcome.refreshed and outcome.changes_cleared == 0
            assert _rolled_up(engine) is None and _logged(engine) == 2
            code = CliRunner().invoke(cli, ["db", "refresh"])
            assert code.exit_code != 0 and "another process" in code.output
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": REFRESH_LOCK})
    assert refresh_rollups(engine).refreshed


def test_refresh_command(sales_db: tuple[str, Engine]) -> None:
    _, engine = sales_db
    result = CliRunner().invoke(cli, ["db", "refresh"])
    assert result.exit_code == 0, result.output
    assert "2 logged order changes folded in" in " ".join(result.output.split())
    assert _rolled_up(engine) == 30 and _logged(engine) == 0


def test_the_app_refreshes_the_rollups_nightly(sales_db: tuple[str, Engine]) -> None:
    """The app's lifespan runs a daily job at ROLLUP_REFRESH_TIME (in DIGEST_TIMEZONE) that
    refreshes the rollups; ROLLUP_REFRESH_ENABLED=false switches it off."""
    _, engine = sales_db
    ist = ZoneInfo("Asia/Kolkata")
    clock = [dt.datetime(2026, 11, 25, 2, 20, tzinfo=ist)]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += dt.timedelta(seconds=seconds)
        await asyncio.sleep(0)

    def app(enabled: bool) -> Any:
        settings = load_settings(
            rollup_refresh_time="02:30",
            rollup_refresh_enabled=enabled,
            digest_timezone="Asia/Kolkata",
        )
        database = SimpleNamespace(engine=engine)
        return SimpleNamespace(state=SimpleNamespace(settings=settings, database=database))

    async def run(enabled: bool) -> None:
        async with rollup_scheduler(app(enabled), clock=lambda: clock[0], sleep=sleep):
            for _ in range(200):
                if clock[0] >= dt.datetime(2026, 11, 25, 2, 30, tzinfo=ist) and not _logged(engine):
                    break
                await asyncio.sleep(0.05)

    asyncio.run(run(False))
    assert not slept and _logged(engine) == 2 and _rolled_up(engine) is None
    asyncio.run(run(True))
    assert slept[:2] == [300.0, 300.0]  # slept until 02:30 IST, then refreshed
    assert _rolled_up(engine) == 30 and _logged(engine) == 0


def test_refresh_time_is_checked() -> None:
    with pytest.raises(SettingsError, match="ROLLUP_REFRESH_TIME: must be HH:MM"):
        load_settings(rollup_refresh_time="25:00")
