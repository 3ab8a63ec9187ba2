"""The app loads the intent classifier and the name indexes before it serves."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from api.main import create_app
from assistant.nlu import entities
from tools.settings import load_settings


def test_start_builds_the_name_indexes(db_url: str) -> None:
    entities.forget_name_indexes()
    engine = create_engine(db_url)
    try:
        with TestClient(create_app(load_settings(), engine=engine)) as client:
            assert client.get("/healthz").status_code == 200
            # The indexes are keyed by the database's URL.
            url = engine.url
            built = {kind for (where, kind), index in entities._INDEXES.items() if where == url}
            assert built == {"store", "product"}
            assert all(entities._INDEXES[(url, kind)].fingerprint is not None for kind in built)
    finally:
        engine.dispose()


def test_start_without_the_database_still_serves(caplog: pytest.LogCaptureFixture) -> None:
    dead = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
    try:
        with (
            caplog.at_level(logging.WARNING, logger="api.main"),
            TestClient(create_app(load_settings(), engine=dead)) as client,
        ):
            assert client.get("/healthz").status_code == 200
        assert "assistant warm-up skipped" in caplog.text
    finally:
        dead.dispose()
