"""The engine every part of the product uses."""

from __future__ import annotations

from sqlalchemy import text

from tools.db import make_engine


def test_connections_run_without_jit(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW jit")).scalar() == "off"
    finally:
        engine.dispose()


def test_own_connection_options_are_kept(db_url: str) -> None:
    engine = make_engine(
        db_url, connect_args={"options": "-c statement_timeout=1234", "connect_timeout": 5}
    )
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW jit")).scalar() == "off"
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "1234ms"
    finally:
        engine.dispose()
