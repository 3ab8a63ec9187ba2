"""The OpenAPI document holds: schemathesis generates requests from it, authenticated, and
every answer must be a non-5xx that matches the documented schema.

Bounded (a few examples per operation, no shrinking) so it runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from tests.api.conftest import World
from tools.settings import load_settings


def _operations() -> list[tuple[str, str]]:
    # The document does not depend on the database: an app on an unreachable one lists them.
    offline = create_app(load_settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    return [
        (method.upper(), path)
        for path, operations in offline.openapi()["paths"].items()
        for method in operations
    ]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_operation_conforms_to_its_schema(
    app: FastAPI,
    bearer: Callable[[str], dict[str, str]],
    world: World,
    method: str,
    path: str,
) -> None:
    with TestClient(app):  # runs the lifespan, as a server would
        operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]
        # An admin's token: every route is reachable; the generated data decides the rest.
        headers = bearer("admin")
        statuses: list[int] = []

        @settings(
            max_examples=8,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            # Generated credentials (the schemes are in the document) would only be refused.
            case.headers = {
                key: value
                for key, value in (case.headers or {}).items()
                if key.lower() not in ("authorization", "x-api-key")
            }
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            statuses.append(response.status_code)

        check()
    assert statuses
    if path.startswith("/api/") and path != "/api/auth/token":
        assert 401 not in statuses  # the requests got past authentication


def test_every_api_operation_documents_authentication(app: FastAPI) -> None:
    document = app.openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/api/auth/token"
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["APIKeyHeader"]["description"],
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not path.startswith("/api/") or path == "/api/auth/token":
                continue
            assert operation.get("security"), (method, path)
            assert "401" in operation["responses"], (method, path)
