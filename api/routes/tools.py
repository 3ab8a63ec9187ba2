"""The tool registry over REST: list the tools with their schemas, call one by name.

Each call runs in its own database session with the authenticated user as the acting user, so
the tools' own data scoping applies (a rep never reaches another rep's stores). Read tools run
read-only; the session is committed only after a write tool succeeds.

Answers:

- 200 `{"name", "args", "result"}`;
- 404 `unknown_tool` — no tool has this name;
- 422 `{"detail": [{"loc": ["body", FIELD], "msg", "type"}]}` — the arguments do not match the
  tool's schema (the field is named);
- 404 `not_found` — nothing the user may see matches (a store of another rep answers exactly
  like one that does not exist);
- 409 `ambiguous` — several things match; `candidates` lists them to choose from;
- 403 `refused` — the tool declined to act: a read-only user asked for a write, or the action
  is not possible (over the credit limit, out of stock); `message` says why;
- 400 for any other tool error.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import (
    UNAUTHORIZED,
    CurrentActor,
    DatabaseDep,
    RequestCredentials,
    SettingsDep,
    authenticated_actor,
)
from tools.context import Actor, ToolContext
from tools.registry import (
    Ambiguous,
    InvalidArguments,
    NotFound,
    Refused,
    ToolError,
    UnknownTool,
    available_tools,
    call_tool,
    get_tool,
    to_jsonable,
)

router = APIRouter(prefix="/api/tools", tags=["tools"], responses=UNAUTHORIZED)


class ToolInfo(BaseModel):
    """A tool as a developer (or a model) needs it to call it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "outstanding",
                    "description": "Money a store owes: invoices, paid, due and overdue buckets.",
                    "category": "credit",
                    "writes": False,
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "store": {
                                "type": "string",
                                "description": "Store id, code or name.",
                            }
                        },
                        "required": ["store"],
                        "additionalProperties": False,
                    },
                }
            ]
        }
    )

    name: str
    description: str
    category: str
    writes: bool = Field(description="True when the tool changes data (needs a confirmation).")
    parameters: dict[str, Any] = Field(description="JSON schema of the arguments object.")


class ToolCallResult(BaseModel):
    """A successful call: the arguments as given and the tool's result."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "outstanding",
                    "args": {"store": "S0042"},
                    "result": {"store": "Sharma General Store", "due": 18250.0},
                }
            ]
        }
    )

    name: str
    args: dict[str, Any]
    result: Any


class ToolErrorBody(BaseModel):
    """A tool error: a machine-readable `error` code and a sentence for people."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"error": "not_found", "message": "No store matches 'S9999'."},
                {
                    "error": "ambiguous",
                    "message": "2 stores match 'sharma'.",
                    "candidates": [
                        {"id": 42, "code": "S0042", "name": "Sharma General Store"},
                        {"id": 77, "code": "S0077", "name": "Sharma Medicals"},
                    ],
                },
            ]
        },
    )

    error: str
    message: str
    candidates: list[dict[str, Any]] | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {"model": ToolErrorBody, "description": "Another tool error."},
    status.HTTP_403_FORBIDDEN: {
        "model": ToolErrorBody,
        "description": "Refused: read-only user, or the action is not possible.",
    },
    status.HTTP_404_NOT_FOUND: {
        "model": ToolErrorBody,
        "description": "Unknown tool, or nothing the user may see matches.",
    },
    status.HTTP_409_CONFLICT: {
        "model": ToolErrorBody,
        "description": "Ambiguous: several things match; pick one of `candidates`.",
    },
}

_STATUS_OF: list[tuple[type[ToolError], int]] = [
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Ambiguous, status.HTTP_409_CONFLICT),
    (Refused, status.HTTP_403_FORBIDDEN),
]


def status_of(error: ToolError) -> int:
    """The HTTP status a tool error is answered with."""
    for kind, code in _STATUS_OF:
        if isinstance(error, kind):
            return code
    return status.HTTP_400_BAD_REQUEST


@router.get("", response_model=list[ToolInfo], summary="List the tools")
def list_tools(actor: CurrentActor) -> list[ToolInfo]:
    """Every tool the caller may call, with its JSON schema (read-only users get no writes)."""
    return [
        ToolInfo(
            name=spec.name,
            description=spec.description,
            category=spec.category,
            writes=spec.writes,
            parameters=spec.json_schema(),
        )
        for spec in available_tools(actor)
    ]


@router.post(
    "/{name}",
    response_model=ToolCallResult,
    summary="Call a tool",
    responses=ERROR_RESPONSES,
)
def run(
    name: str,
    credentials: RequestCredentials,
    database: DatabaseDep,
    settings: SettingsDep,
    arguments: Annotated[
        dict[str, Any] | None,
        Body(
            description="The tool's arguments as a JSON object (see its `parameters` schema).",
            openapi_examples={
                "store": {"summary": "A store by code", "value": {"store": "S0042"}},
                "none": {"summary": "No arguments", "value": {}},
            },
        ),
    ] = None,
) -> Any:
    """Validate the arguments against the tool's schema and run it as the caller."""
    # The caller is read in the session the tool runs in, on this one thread: a call is one
    # trip to the thread pool and one pooled connection, however many statements it runs. The
    # connection is in autocommit until a write: reading the caller needs no transaction, a
    # read tool then takes a read-only one of its own, and a write tool opens the transaction
    # committed below (`tools.registry.call_tool`). The pool restores the isolation level.
    session = database.session()
    try:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        actor = authenticated_actor(session, settings, credentials)
        return _run(session, actor, name, arguments or {})
    finally:
        session.close()


def _run(session: Session, actor: Actor, name: str, args: dict[str, Any]) -> Any:
    try:
        spec = get_tool(name)
    except UnknownTool:
        return _error(status.HTTP_404_NOT_FOUND, "unknown_tool", f"No tool is named {name!r}.")
    ctx = ToolContext(session=session, actor=actor, channel="api")
    try:
        value = call_tool(ctx, name, args)
    except InvalidArguments as error:
        detail = [
            {"loc": ["body", *item["loc"]], "msg": item["msg"], "type": item["type"]}
            for item in error.errors
        ]
        return JSONResponse(
            {"detail": detail, "error": "invalid_arguments", "message": str(error)},
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    except ToolError as error:
        session.rollback()
        return JSONResponse(jsonable_encoder(error.to_dict()), status_code=status_of(error))
    # A tool's model dumps itself as JSON data already; anything else is encoded here.
    result = (
        to_jsonable(value) if isinstance(value, BaseModel) else jsonable_encoder(to_jsonable(value))
    )
    if spec.writes:
        session.commit()
    return ToolCallResult(name=name, args=args, result=result)


def _error(code: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=code)
