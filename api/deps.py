"""What routes depend on: the app's database, a session per request, the authenticated user.

Routes never open sessions or read the environment themselves; they declare one of the
`Annotated` aliases below (`SessionDep`, `SettingsDep`, `CurrentUser`, `CurrentActor`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from api.auth import API_KEY_HEADER, AuthError, authenticate, user_id_from_token
from tools.context import Actor
from tools.db import database_url, make_engine
from tools.models import User
from tools.settings import Settings

# Seconds to wait for a connection before /readyz (and any request) reports the database down.
CONNECT_TIMEOUT_SECONDS = 5


class AppDatabase:
    """The app's engine and session factory, made on first use.

    With `DATABASE_URL` unset the first use starts the embedded PostgreSQL (the lifespan does
    it at start-up so the first request does not wait). A given engine (tests) is used as is
    and not disposed by the app.
    """

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._owns_engine = engine is None
        self._sessions: sessionmaker[Session] | None = None
        self._lock = threading.RLock()

    @property
    def engine(self) -> Engine:
        """The engine (raises `DatabaseError` when the embedded server cannot start)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = make_engine(
                        database_url(self.settings),
                        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
                    )
        return self._engine

    def session(self) -> Session:
        """A new session; the caller commits (writes only) and closes it."""
        if self._sessions is None:
            with self._lock:
                if self._sessions is None:
                    # Objects stay readable after commit: a response is built after the write.
                    self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        return self._sessions()

    def dispose(self) -> None:
        """Close pooled connections of an engine this object made."""
        if self._owns_engine and self._engine is not None:
            self._engine.dispose()


class AppAssistant:
    """The app's assistant (planner, sessions), built on first use on the app's database."""

    def __init__(self, database: AppDatabase, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self._assistant: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The `assistant.turn.Assistant`; channels call `.handle(InboundMessage)` on it."""
        if self._assistant is None:
            with self._lock:
                if self._assistant is None:
                    from assistant.factory import build_assistant

                    self._assistant = build_assistant(self.settings, self.database.engine)
        return self._assistant

    def warm_up(self) -> None:
        """Build the assistant and load what its first turns would otherwise wait for."""
        from assistant.factory import warm_up

        warm_up(self.get())


def get_assistant(request: Request) -> Any:
    return request.app.state.assistant.get()


# Dependencies that only read the app's state are `async`: FastAPI runs a plain `def`
# dependency in its thread pool, and each such hop costs more than the read itself.
async def get_database(request: Request) -> AppDatabase:
    database: AppDatabase = request.app.state.database
    return database


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DatabaseDep = Annotated[AppDatabase, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_session(database: DatabaseDep) -> Iterator[Session]:
    """A session for one request; whatever the route did not commit is rolled back."""
    session = database.session()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]

# Both schemes appear in the OpenAPI document, so clients (and its "Authorize" button) know
# either header opens the API. `auto_error=False`: the check below answers one 401 for both.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/auth/token",
    auto_error=False,
    description="An access token from POST /api/auth/token.",
)
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="A developer API key (mangalm apikey create, or POST /api/keys).",
)

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {
        "description": "Missing, invalid or expired credentials, revoked key, or inactive user.",
        "content": {"application/json": {"example": {"detail": "Not authenticated"}}},
    }
}


@dataclass(frozen=True)
class Credentials:
    """What the request presented: a bearer token, an API key, or both (the key wins)."""

    token: str | None
    api_key: str | None


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_credentials(
    token: Annotated[str | None, Depends(oauth2_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Credentials:
    """The request's credentials, unchecked (401 when there are none)."""
    if not token and not api_key:
        raise _unauthorized("Not authenticated")
    return Credentials(token=token, api_key=api_key)


RequestCredentials = Annotated[Credentials, Depends(get_credentials)]


def authenticated_user(session: Session, settings: Settings, credentials: Credentials) -> User:
    """The active user behind `credentials`, read in `session` (401 otherwise).

    A route that does its own database work in one session calls this first, in its own
    thread, rather than depending on `CurrentUser` (which reads the user in a session of its
    own, then hands the request to another thread).
    """
    try:
        return authenticate(
            session,
            settings,
            authorization=f"Bearer {credentials.token}" if credentials.token else None,
            api_key=credentials.api_key,
        )
    except AuthError as error:
        raise _unauthorized(error.message) from None


# The columns an `Actor` is made of, for a bearer token's user id (`authenticated_actor`).
_ACTOR_SQL = text(
    "SELECT id, email, name, role, manager_id FROM users WHERE id = :id AND is_active"
)


def authenticated_actor(session: Session, settings: Settings, credentials: Credentials) -> Actor:
    """`authenticated_user` as the tools see them: for a bearer token, only the columns an
    `Actor` needs are read (no ORM object is made); an API key goes through
    `authenticated_user`, which also records the key's use."""
    if credentials.api_key or not credentials.token:
        return Actor.from_user(authenticated_user(session, settings, credentials))
    try:
        user_id = user_id_from_token(credentials.token.strip(), settings)
    except AuthError as error:
        raise _unauthorized(error.message) from None
    row = session.execute(_ACTOR_SQL, {"id": user_id}).first()
    if row is None:
        raise _unauthorized("Invalid token")
    return Actor(
        id=row.id, email=row.email, name=row.name, role=row.role, manager_id=row.manager_id
    )


def get_current_user(
    session: SessionDep, settings: SettingsDep, credentials: RequestCredentials
) -> User:
    """The active user behind the request's bearer token or API key (401 otherwise)."""
    user = authenticated_user(session, settings, credentials)
    # End the read so the connection goes back to the pool now, not when the response is
    # sent: a chat turn uses its own session, and holding this one as well would need two
    # connections per request (under load the pool runs dry and requests time out).
    # Objects stay loaded (`expire_on_commit=False`); the route's own work autobegins anew.
    session.commit()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_actor(user: CurrentUser) -> Actor:
    """The authenticated user as the tools see them."""
    return Actor.from_user(user)


CurrentActor = Annotated[Actor, Depends(get_current_actor)]

AssistantDep = Annotated[Any, Depends(get_assistant)]
"""The app's `assistant.turn.Assistant` (typed loosely: `api` imports `assistant` lazily)."""
