"""Authentication: password login with JWT access tokens, and API keys for developers.

Two credentials open every `/api` route and `/mcp`:

- `Authorization: Bearer <jwt>` — an access token from `POST /api/auth/token` (OAuth2 password
  flow), signed with `SECRET_KEY` (HS256) and valid for `ACCESS_TOKEN_MINUTES`;
- `X-API-Key: <key>` — a long-lived key made with `mangalm apikey create` or `POST /api/keys`.

An API key looks like `mgl_<prefix>_<secret>`. Only the prefix (to find and list it) and a
SHA-256 digest of the whole key are stored. The secret is 256 random bits, so a fast digest is
as safe as a slow password hash here and keeps every request cheap; the key is shown once.

Inactive users, expired or forged tokens, and revoked keys are all refused with the same 401.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import jwt
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tools.models import ApiKey, User
from tools.security import hash_password, verify_password
from tools.settings import Settings

ALGORITHM = "HS256"
KEY_SCHEME = "mgl"
API_KEY_HEADER = "X-API-Key"
# How stale `api_keys.last_used_at` may get before a request refreshes it (saves a write per call).
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)

# Verified against when the e-mail is unknown, so a wrong e-mail costs as much time as a wrong
# password and response times do not reveal which accounts exist.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class AuthError(Exception):
    """The request's credentials are missing or not valid (answered with 401)."""

    def __init__(self, message: str = "Not authenticated") -> None:
        super().__init__(message)
        self.message = message


class ApiKeyError(LookupError):
    """An API-key operation cannot be done (unknown user, unknown prefix)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- passwords and access tokens -------------------------------------------------------------


def authenticate_password(session: Session, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or None (same cost either way)."""
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None or not user.password_hash:
        verify_password(password, _DUMMY_HASH)
        return None
    if not verify_password(password, user.password_hash) or not user.is_active:
        return None
    return user


@dataclass(frozen=True)
class AccessToken:
    """A signed access token and when it expires."""

    token: str
    expires_at: dt.datetime

    @property
    def expires_in(self) -> int:
        """Seconds until expiry (as OAuth2 token responses report it)."""
        return max(0, int((self.expires_at - _now()).total_seconds()))


def create_access_token(
    user: User, settings: Settings, *, minutes: int | None = None, now: dt.datetime | None = None
) -> AccessToken:
    """A JWT naming the user, signed with `SECRET_KEY`."""
    issued = now or _now()
    expires = issued + dt.timedelta(minutes=minutes or settings.access_token_minutes)
    claims = {
        "sub": str(user.id),
        "email": user.email,
        "role": user.role,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "typ": "access",
    }
    token = jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=ALGORITHM)
    return AccessToken(token=token, expires_at=expires)


def user_id_from_token(token: str, settings: Settings) -> int:
    """The user id in a valid, unexpired access token; raises `AuthError` otherwise."""
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("Token has expired") from None
    except jwt.InvalidTokenError:
        raise AuthError("Invalid token") from None
    if claims.get("typ") != "access" or not str(claims["sub"]).isdigit():
        raise AuthError("Invalid token")
    return int(claims["sub"])


# --- API keys --------------------------------------------------------------------------------


class ApiKeyRead(BaseModel):
    """An API key as listed (never the secret)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    user_id: int
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class ApiKeyCreated(ApiKeyRead):
    """A new API key, with the full key: shown this once and never again."""

    key: str


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _split_key(key: str) -> str | None:
    """The stored prefix of a well-formed key, else None."""
    scheme, sep, rest = key.strip().partition("_")
    prefix_part, sep2, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not sep or not sep2 or not secret or len(prefix_part) != 10:
        return None
    return f"{KEY_SCHEME}_{prefix_part}"


def create_api_key(session: Session, user: User, name: str) -> ApiKeyCreated:
    """Make a key for `user` (the caller commits). The returned `key` is the only copy."""
    name = name.strip()
    if not name:
        raise ApiKeyError("an API key needs a name")
    if len(name) > 100:
        raise ApiKeyError("an API key name is at most 100 characters")
    while True:
        prefix = f"{KEY_SCHEME}_{secrets.token_hex(5)}"
        taken = session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
        if taken is None:
            break
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(user_id=user.id, name=name, prefix=prefix, key_hash=_digest(key))
    session.add(row)
    session.flush()
    session.refresh(row)
    return ApiKeyCreated(**ApiKeyRead.model_validate(row).model_dump(), key=key)


def list_api_keys(
    session: Session, *, user: User | None = None, include_revoked: bool = True
) -> list[ApiKeyRead]:
    """Keys of `user` (every user's when None), newest first."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if user is not None:
        query = query.where(ApiKey.user_id == user.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [ApiKeyRead.model_validate(row) for row in session.scalars(query)]


def revoke_api_key(session: Session, prefix: str, *, owner: User | None = None) -> ApiKeyRead:
    """Revoke the key with this prefix (only `owner`'s when given); idempotent."""
    query = select(ApiKey).where(ApiKey.prefix == prefix.strip())
    if owner is not None:
        query = query.where(ApiKey.user_id == owner.id)
    row = session.scalars(query).first()
    if row is None:
        raise ApiKeyError(f"no API key with prefix {prefix.strip()!r}")
    if row.revoked_at is None:
        row.revoked_at = _now()
        session.flush()
    return ApiKeyRead.model_validate(row)


def user_from_api_key(session: Session, key: str) -> User:
    """The active owner of a valid, unrevoked key; raises `AuthError` otherwise."""
    prefix = _split_key(key)
    if prefix is None:
        raise AuthError("Invalid API key")
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if row is None or not hmac.compare_digest(row.key_hash, _digest(key.strip())):
        raise AuthError("Invalid API key")
    if row.revoked_at is not None:
        raise AuthError("API key has been revoked")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise AuthError("Invalid API key")
    now = _now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        # Recorded in its own statement and committed at once, apart from whatever the
        # request goes on to do (which may be rolled back).
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        session.commit()
    return user


# --- one entry point for every face ----------------------------------------------------------


def authenticate(
    session: Session,
    settings: Settings,
    *,
    authorization: str | None = None,
    api_key: str | None = None,
) -> User:
    """The active user behind an `Authorization: Bearer` header or an `X-API-Key` header.

    Raises `AuthError` when neither is given or the one given is not valid.
    """
    if api_key:
        return user_from_api_key(session, api_key)
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Use 'Authorization: Bearer <token>' or the X-API-Key header")
        user_id = user_id_from_token(token.strip(), settings)
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            raise AuthError("Invalid token")
        return user
    raise AuthError("Not authenticated")
