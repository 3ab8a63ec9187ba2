"""The FastAPI app: `create_app()` builds it, its lifespan starts and stops what it needs.

Run it with `mangalm serve` (or `uvicorn api.main:create_app --factory`). It refuses to start
with a bad setting — in production, a default or short `SECRET_KEY` — naming the setting.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.routing import Route

from api.deps import AppAssistant, AppDatabase
from api.limits import BodySizeLimit
from api.mcp import McpEndpoint
from api.routes import ROUTERS
from channels import twilio_messaging, twilio_voice
from channels.digest import digest_scheduler
from channels.web import STATIC_DIR
from tools.observability import configure_tracing
from tools.settings import DEFAULT_SECRET, Settings, SettingsError, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """
The tools of the Mangalm Sales Assistant — stores, orders, credit, inventory, promotions,
forecasts — for developers, over REST and MCP (`/mcp`, streamable HTTP).

**Authentication.** Every `/api` route (and `/mcp`) needs either
`Authorization: Bearer <token>` (from `POST /api/auth/token`, e-mail and password) or
`X-API-Key: <key>` (from `POST /api/keys` or `mangalm apikey create`).
Each user sees only their own data: a rep their stores, a manager their team's.

**Calling tools.** `GET /api/tools` lists each tool's JSON schema; `POST /api/tools/{name}`
with the arguments as a JSON object runs it. Errors: 404 unknown tool or nothing found,
409 ambiguous (with `candidates`), 403 refused, 422 bad arguments (the field is named).
"""


def _check_secret(settings: Settings) -> None:
    # Settings validation already refuses this; checked again because an app can be handed
    # settings built some other way, and starting with a guessable key must never happen.
    if settings.environment == "production" and (
        settings.secret_key.get_secret_value() == DEFAULT_SECRET
    ):
        raise SettingsError(
            "Invalid setting: SECRET_KEY must be set to a real secret in production"
        )


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the app from `settings` (default: the environment), on `engine` if given.

    Raises `SettingsError` naming the bad setting when the settings are not usable.
    """
    try:
        settings = settings or get_settings()
        _check_secret(settings)
    except SettingsError as error:
        log.error("cannot start: %s", error)
        raise
    database = AppDatabase(settings, engine)
    mcp = McpEndpoint(database, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if engine is None and settings.database_url is None:
            # Start the embedded PostgreSQL now rather than on the first request.
            await anyio.to_thread.run_sync(lambda: database.engine)
        async with mcp.run(), twilio_messaging.twilio_lifespan(app), digest_scheduler(app):
            yield
        database.dispose()

    app = FastAPI(
        title="Mangalm Sales Assistant",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.mcp = mcp
    app.state.assistant = AppAssistant(database, settings)
    for router in ROUTERS:
        app.include_router(router)
    # Twilio webhooks: SMS and WhatsApp (/twilio/...), and voice calls (/voice...).
    app.include_router(twilio_messaging.router)
    app.include_router(twilio_voice.router)
    # The web chat's files; the page itself is `GET /` (channels.web).
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if settings.otel_enabled:
        configure_tracing(endpoint=settings.otel_exporter_otlp_endpoint)
    app.router.routes.append(
        Route("/mcp", endpoint=mcp, methods=["GET", "POST", "DELETE"], include_in_schema=False)
    )
    return app
