"""Probes, and refusing to start with unsafe settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import app as cli
from api.main import create_app
from tools.settings import SettingsError, load_settings


def test_healthz_and_readyz_when_all_is_well(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}


def test_readyz_is_503_with_a_reason_when_the_database_is_down() -> None:
    settings = load_settings(database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200  # the process itself is fine
        ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("cannot reach the database")
    assert "127.0.0.1" not in body["reason"]  # connection details stay in the log


def test_readyz_is_503_when_the_schema_is_not_migrated(
    create_database: Callable[..., str],
) -> None:
    settings = load_settings(database_url=create_database(migrate=False))
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "mangalm init" in ready.json()["reason"]


def test_app_refuses_the_default_secret_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        create_app()


def test_serve_refuses_the_default_secret_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--port", "8765"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert message.startswith("error: Invalid setting")
    assert "SECRET_KEY must be set to a real secret in production" in message
    assert "Traceback" not in result.output


def test_production_with_a_real_secret_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        environment="production",
        secret_key="a-real-secret-of-more-than-thirty-two-characters",
        database_url="postgresql://postgres@127.0.0.1:1/nowhere",
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
