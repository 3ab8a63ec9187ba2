"""The FastAPI app: `create_app()` builds it, its lifespan starts and stops what it needs.

Run it with `mangalm serve` (or `uvicorn api.main:create_app --factory`). It refuses to start
with a bad setting — in production, a default or short `SECRET_KEY` — naming the setting.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from starlette.routing import Route

from api.deps import AppAssistant, AppDatabase, get_app_settings, get_current_user, get_session
from api.limits import BodySizeLimit
from api.mcp import McpEndpoint
from api.routes import ROUTERS
from channels import meta_whatsapp, telegram, twilio_messaging, twilio_voice
from channels.base import ChannelConfigError
from channels.digest import digest_scheduler, rollup_scheduler
from channels.linking import link_code_router
from channels.queue import ChannelRuntime
from channels.web import STATIC_DIR
from tools.db import DatabaseError, is_connection_error
from tools.observability import UNAVAILABLE_REPLIES, configure_tracing
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


DATABASE_UNAVAILABLE = (
    "The sales database is temporarily unavailable. Please try again in a minute."
)
# Seconds a client is asked to wait before trying again while the database is unavailable.
RETRY_AFTER_SECONDS = 30


async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    """503 with a plain sentence when the database cannot be reached (any route); other
    database errors stay server errors."""
    if not is_connection_error(error):
        raise error
    log.warning(
        "%s %s: database unavailable (%s)",
        request.method,
        request.url.path,
        error.__class__.__name__,
    )
    UNAVAILABLE_REPLIES.labels("database").inc()
    return JSONResponse(
        {"detail": DATABASE_UNAVAILABLE},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 for a request that does not validate, also when the input it quotes
    back is bytes that are not UTF-8 (shown with replacement characters, never a 500)."""
    assert isinstance(error, RequestValidationError)
    detail = jsonable_encoder(
        error.errors(), custom_encoder={bytes: lambda raw: raw.decode("utf-8", "replace")}
    )
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _check_secret(settings: Settings) -> None:
    # Settings validation already refuses this; checked again because an app can be handed
    # settings built some other way, and starting with a guessable key must never happen.
    if settings.environment == "production" and (
        settings.secret_key.get_secret_value() == DEFAULT_SECRET
    ):
        raise SettingsError(
            "Invalid setting: SECRET_KEY must be set to a real secret in production"
        )


def _mount_channels(app: FastAPI, settings: Settings, database: AppDatabase) -> None:
    """The turn queue (`app.state.turns`), `POST /api/link-code`, and the Telegram and
    WhatsApp (Meta) webhooks. A channel is enabled by its token setting; enabled without its
    secret it raises `ChannelConfigError` naming the missing setting."""
    telegram.check_settings(settings)
    meta_whatsapp.check_settings(settings)
    turns = ChannelRuntime(
        settings, engine=lambda: database.engine, assistant=app.state.assistant.get
    )
    app.state.turns = turns
    app.state.telegram = None
    app.state.meta_whatsapp = None
    if settings.telegram_bot_token is not None:
        app.state.telegram = telegram.TelegramWebhook(
            settings, lambda message: turns.submit(message, via=telegram.ROUTE)
        )
    if meta_whatsapp.enabled(settings):
        app.state.meta_whatsapp = meta_whatsapp.MetaWebhook(
            settings,
            lambda message: turns.submit(message, via=meta_whatsapp.ROUTE),
        )
    app.include_router(link_code_router(get_current_user, get_session, get_app_settings))
    app.include_router(telegram.router)
    app.include_router(meta_whatsapp.router)


async def _start_channels(app: FastAPI) -> AsyncExitStack:
    """Lifespan part: start the turn queue, then the Telegram application; closing the
    returned stack stops them in the reverse order."""
    stack = AsyncExitStack()
    try:
        await stack.enter_async_context(app.state.turns.run())
        if app.state.telegram is not None:
            await stack.enter_async_context(app.state.telegram.run())
    except BaseException:
        await stack.aclose()
        raise
    return stack


async def _warm_up(app: FastAPI) -> None:
    """Load the classifier and name indexes before serving (a few seconds at 10,000 stores);
    a failure (the database down at start) only leaves them to the first turns."""
    warm = getattr(app.state.assistant, "warm_up", None)
    if warm is None:
        return
    try:
        await anyio.to_thread.run_sync(warm)
    except Exception as error:
        log.warning("assistant warm-up skipped: %s", error.__class__.__name__)


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
        async with (
            mcp.run(),
            twilio_messaging.twilio_lifespan(app),
            digest_scheduler(app),
            rollup_scheduler(app),
        ):
            await _warm_up(app)
            channels = await _start_channels(app)
            try:
                yield
            finally:
                await channels.aclose()
        database.dispose()

    app = FastAPI(
        title="Mangalm Sales Assistant",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.add_exception_handler(DBAPIError, _database_unavailable)
    app.add_exception_handler(DatabaseError, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.state.mcp = mcp
    app.state.assistant = AppAssistant(database, settings)
    # Twilio webhooks: SMS and WhatsApp (/twilio/...), and voice calls (/voice...). First:
    # routes are matched in order, and webhooks arrive at the highest rates (paths of their
    # own, so nothing after them is shadowed).
    app.include_router(twilio_messaging.router)
    app.include_router(twilio_voice.router)
    # Telegram and WhatsApp (Meta) webhooks, the turn queue, account linking.
    try:
        _mount_channels(app, settings, database)
    except ChannelConfigError as error:
        log.error("cannot start: %s", error)
        raise
    for router in ROUTERS:
        app.include_router(router)
    # The web chat's files; the page itself is `GET /` (channels.web).
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if settings.otel_enabled:
        configure_tracing(endpoint=settings.otel_exporter_otlp_endpoint)
    app.router.routes.append(
        Route("/mcp", endpoint=mcp, methods=["GET", "POST", "DELETE"], include_in_schema=False)
    )
    return app
