"""The tool registry as an MCP server (official `mcp` SDK, streamable HTTP), mounted at `/mcp`.

Every registered tool is offered with its JSON schema and runs through the same registry as
REST, as the authenticated user: the same bearer token or `X-API-Key` header is checked on
every MCP HTTP request, before the SDK sees it (401 without valid credentials).

The transport is stateless with JSON responses: each POST stands alone, so any API process
can answer any request (no sticky sessions) — the same scale-out story as the REST API.

Tool failures a person should hear (not found, ambiguous, refused, bad arguments) come back as
tool results with `isError` set and a JSON body `{"error", "message", ...}`, so a model can
correct itself; an unknown tool name is a protocol error (invalid params).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import mcp_types as types
from fastapi.encoders import jsonable_encoder
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from api.auth import API_KEY_HEADER, AuthError, authenticate
from api.deps import AppDatabase
from tools.context import Actor, ToolContext, load_actor
from tools.registry import (
    InvalidArguments,
    ToolError,
    UnknownTool,
    available_tools,
    call_tool,
    get_tool,
    to_jsonable,
)
from tools.settings import Settings

log = logging.getLogger(__name__)

# Where the authenticated user's id travels from the HTTP layer to the tool handlers.
USER_SCOPE_KEY = "mangalm.user_id"

INSTRUCTIONS = (
    "Tools of the Mangalm Sales Assistant over a distributor's sales data: stores, orders, "
    "credit, inventory, promotions, forecasts. Stores and products may be named by id, code or "
    "name; an ambiguous name returns candidates to choose from. Write tools need a "
    "confirmation token from the matching draft step."
)


def _transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host/Origin checks against DNS rebinding: loopback plus the public base URL."""
    public = urlsplit(settings.public_base_url)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if public.hostname:
        hosts += [public.netloc, public.hostname]
        origins.append(f"{public.scheme}://{public.netloc}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def _user_id(ctx: ServerRequestContext[Any, Any]) -> int:
    request = ctx.request
    user_id = getattr(request, "scope", {}).get(USER_SCOPE_KEY) if request is not None else None
    if not isinstance(user_id, int):
        # Only reachable if the endpoint is wired without `McpEndpoint` in front.
        raise MCPError(code=types.INVALID_REQUEST, message="Not authenticated")
    return user_id


def _as_content(payload: Any, *, is_error: bool = False) -> types.CallToolResult:
    data = jsonable_encoder(payload)
    structured = data if isinstance(data, dict) else {"result": data}
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(data, ensure_ascii=False))],
        structured_content=structured,
        is_error=is_error,
    )


class McpEndpoint:
    """The ASGI app served at `/mcp`: authentication in front of the MCP session manager.

    The session manager can run only once, so each app lifespan makes a fresh one (`run`).
    """

    def __init__(self, database: AppDatabase, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.server: Server[Any] = Server(
            "mangalm",
            version="0.1.0",
            title="Mangalm Sales Assistant tools",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the MCP session manager for the app's lifetime (call from the lifespan)."""
        manager = StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            stateless=True,
            security_settings=_transport_security(self.settings),
        )
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - only HTTP is routed here
            return
        headers = Headers(scope=scope)
        try:
            user_id = await anyio.to_thread.run_sync(
                self._authenticate, headers.get("authorization"), headers.get(API_KEY_HEADER)
            )
        except AuthError as error:
            response = JSONResponse(
                {"detail": error.message}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        if self._manager is None:
            response = JSONResponse({"detail": "MCP server is not running"}, status_code=503)
            await response(scope, receive, send)
            return
        await self._manager.handle_request({**scope, USER_SCOPE_KEY: user_id}, receive, send)

    def _authenticate(self, authorization: str | None, api_key: str | None) -> int:
        with self.database.session() as session:
            user = authenticate(
                session, self.settings, authorization=authorization, api_key=api_key
            )
            return user.id

    def _actor(self, user_id: int) -> Actor:
        with self.database.session() as session:
            return load_actor(session, user_id=user_id)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            actor = await anyio.to_thread.run_sync(self._actor, _user_id(ctx))
        except LookupError:
            raise MCPError(code=types.INVALID_REQUEST, message="Not authenticated") from None
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=spec.name,
                    title=spec.name.replace("_", " "),
                    description=spec.description,
                    input_schema=spec.json_schema(),
                    annotations=types.ToolAnnotations(
                        read_only_hint=not spec.writes,
                        destructive_hint=spec.writes,
                        idempotent_hint=not spec.writes,
                    ),
                    meta={"category": spec.category},
                )
                for spec in available_tools(actor)
            ]
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            get_tool(params.name)
        except UnknownTool:
            raise MCPError(
                code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}"
            ) from None
        user_id = _user_id(ctx)
        return await anyio.to_thread.run_sync(
            self._run_tool, user_id, params.name, dict(params.arguments or {})
        )

    def _run_tool(self, user_id: int, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Run one tool in its own session as the user; commit only after a write succeeds."""
        with self.database.session() as session:
            # Autocommit until a write, as on the REST route: the user is read without a
            # transaction, a read tool takes a read-only one of its own, a write tool opens the
            # one committed below (`tools.registry.call_tool`).
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            try:
                actor = load_actor(session, user_id=user_id)
            except LookupError:
                return _as_content(
                    {"error": "not_authenticated", "message": "Not authenticated"}, is_error=True
                )
            ctx = ToolContext(session=session, actor=actor, channel="mcp")
            try:
                value = call_tool(ctx, name, arguments)
            except InvalidArguments as error:
                return _as_content(
                    {"error": "invalid_arguments", "message": str(error), "fields": error.errors},
                    is_error=True,
                )
            except ToolError as error:
                session.rollback()
                return _as_content(error.to_dict(), is_error=True)
            result = _as_content(to_jsonable(value))
            if get_tool(name).writes:
                session.commit()
            return result
