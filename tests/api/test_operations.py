"""Operations endpoints and limits: /metrics, request size limits."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from api.main import create_app
from tools.settings import load_settings


def _client(db_url: str) -> TestClient:
    return TestClient(create_app(load_settings(), engine=create_engine(db_url)))


def test_metrics_are_exposed_for_prometheus(db_url: str) -> None:
    with _client(db_url) as client:
        client.get("/healthz")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert "mangalm_turns_total" in response.text
    assert "mangalm_tool_calls_total" in response.text


def test_oversized_bodies_are_refused_before_any_route(db_url: str) -> None:
    with _client(db_url) as client:
        response = client.post(
            "/api/auth/token",
            content=b"x" * (1024 * 1024),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 413
