"""The embedded PostgreSQL default: starts, is reused, and explains an unusable directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tools.db import DatabaseError, database_url, describe_database, start_embedded
from tools.settings import load_settings


@pytest.fixture(scope="module")
def embedded_home() -> Iterator[Path]:
    # Not under pytest's basetemp: pytest resets that folder to mode 0700 whenever a test
    # session starts, and the server runs as its own system user, which must traverse it.
    home = Path(tempfile.mkdtemp(prefix="mangalm-embedded-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_starts_and_answers_queries(embedded_home: Path) -> None:
    server = start_embedded(embedded_home)
    assert (embedded_home / "postgres" / "PG_VERSION").exists()
    engine = create_engine(server.url)
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar()
        conn.execute(text("CREATE TABLE IF NOT EXISTS kept (x int)"))
        conn.commit()
    engine.dispose()
    assert version and version.startswith("18")
    assert str(embedded_home / "postgres") in server.describe()


def test_is_reused_with_its_data(embedded_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANGALM_HOME", str(embedded_home))
    url = database_url(load_settings())
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('kept')")).scalar() == "kept"
    engine.dispose()
    assert "Embedded PostgreSQL" in describe_database(load_settings())


def test_database_url_setting_bypasses_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@db.internal:5432/sales")
    assert database_url(load_settings()) == "postgresql+psycopg://someone@db.internal:5432/sales"


def test_unwritable_home_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DatabaseError, match="MANGALM_HOME"):
        start_embedded(blocker / "home")
