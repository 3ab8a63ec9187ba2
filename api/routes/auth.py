"""Log in (OAuth2 password flow) and say who is logged in."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authenticate_password, create_access_token
from api.deps import UNAUTHORIZED, CurrentUser, SessionDep, SettingsDep

router = APIRouter(prefix="/api", tags=["auth"])


class Token(BaseModel):
    """An OAuth2 bearer token response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIs...",
                    "token_type": "bearer",
                    "expires_in": 43200,
                }
            ]
        }
    )

    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")


class UserRead(BaseModel):
    """The logged-in user."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "email": "asha.rep@example.com",
                    "name": "Asha Rao",
                    "role": "rep",
                    "manager_id": 2,
                }
            ]
        },
    )

    id: int
    email: str
    name: str
    role: str = Field(description="admin, manager, rep or viewer.")
    manager_id: int | None = None


@router.post(
    "/auth/token",
    response_model=Token,
    summary="Log in with e-mail and password",
    responses={
        status.HTTP_401_UNAUTHORIZED: {
            "description": "Wrong e-mail or password (the same answer for both).",
            "content": {"application/json": {"example": {"detail": "Incorrect email or password"}}},
        }
    },
)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
) -> Token:
    """OAuth2 password flow: `username` is the e-mail. Returns a bearer access token."""
    user = authenticate_password(session, form.username, form.password)
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Incorrect email or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = create_access_token(user, settings)
    return Token(access_token=token.token, expires_in=token.expires_in)


@router.get("/me", response_model=UserRead, summary="The logged-in user", responses=UNAUTHORIZED)
def me(user: CurrentUser) -> UserRead:
    """Who the credentials belong to."""
    return UserRead.model_validate(user)
