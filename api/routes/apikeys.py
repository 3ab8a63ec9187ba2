"""API keys for developers: create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ApiKeyCreated, ApiKeyError, ApiKeyRead, create_api_key, list_api_keys
from api.auth import revoke_api_key as revoke_key
from api.deps import UNAUTHORIZED, CurrentUser, SessionDep

router = APIRouter(prefix="/api/keys", tags=["api keys"], responses=UNAUTHORIZED)


class ApiKeyCreate(BaseModel):
    """What to call the new key (to recognise it in listings)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "reporting script"}]})

    name: str = Field(min_length=1, max_length=100, pattern=r"\S")


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    responses={422: {"description": "The name is missing or too long."}},
)
def create(body: ApiKeyCreate, user: CurrentUser, session: SessionDep) -> ApiKeyCreated:
    """Make a key acting as the caller. The full `key` is in this response only: store it."""
    try:
        created = create_api_key(session, user, body.name)
    except ApiKeyError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    session.commit()
    return created


@router.get(
    "",
    response_model=list[ApiKeyRead],
    summary="List API keys",
    responses={403: {"description": "all_users asked for by a non-admin."}},
)
def list_keys(
    user: CurrentUser,
    session: SessionDep,
    all_users: Annotated[bool, Query(description="Every user's keys (admins only).")] = False,
) -> list[ApiKeyRead]:
    """The caller's keys, newest first (revoked ones included, with `revoked_at`)."""
    if all_users and user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Only admins may list all keys")
    return list_api_keys(session, user=None if all_users else user)


@router.delete(
    "/{prefix}",
    response_model=ApiKeyRead,
    summary="Revoke an API key",
    responses={404: {"description": "No key of the caller has this prefix."}},
)
def revoke(prefix: str, user: CurrentUser, session: SessionDep) -> ApiKeyRead:
    """Revoke one of the caller's keys by its prefix (admins: anyone's). Idempotent."""
    try:
        revoked = revoke_key(session, prefix, owner=None if user.role == "admin" else user)
    except ApiKeyError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    session.commit()
    return revoked
