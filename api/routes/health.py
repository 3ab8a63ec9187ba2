"""Liveness and readiness probes (no authentication: orchestrators call them)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from api.deps import DatabaseDep
from tools.db import DatabaseError, check_database
from tools.migrate import current_revision, head_revision

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """A probe's answer; `reason` says what is wrong when not ready."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ok"},
                {"status": "unavailable", "reason": "cannot reach the database (OperationalError)"},
            ]
        }
    )

    status: str
    reason: str | None = None


@router.get(
    "/healthz", response_model=Health, response_model_exclude_none=True, summary="The process is up"
)
def healthz() -> Health:
    """Always `ok` while the process serves requests (no dependencies are checked)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="Ready to serve: the database answers and is migrated",
    responses={503: {"model": Health, "description": "Not ready; `reason` says why."}},
)
def readyz(database: DatabaseDep) -> JSONResponse:
    """`ok` when the database answers and its schema is current, else 503 with a reason."""
    try:
        engine = database.engine
        check_database(engine)
        current = current_revision(engine)
    except DatabaseError as error:
        # The full message (host, driver error) goes to the log, not to anonymous callers.
        log.warning("readiness check failed: %s", error)
        cause = error.__cause__.__class__.__name__ if error.__cause__ else "error"
        return _unavailable(f"cannot reach the database ({cause})")
    except Exception as error:
        log.warning("readiness check failed: %s", error)
        return _unavailable(f"cannot reach the database ({error.__class__.__name__})")
    head = head_revision()
    if current != head:
        return _unavailable(
            f"database schema is at {current or 'nothing'}, this version needs {head}: "
            "run `mangalm init`"
        )
    return JSONResponse(Health(status="ok").model_dump(exclude_none=True))


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        Health(status="unavailable", reason=reason).model_dump(),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )
