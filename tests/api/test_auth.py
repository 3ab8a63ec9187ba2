"""Logging in, access tokens, and who a request acts as."""

from __future__ import annotations

import datetime as dt

import jwt
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from api.auth import create_access_token
from tests.api.conftest import PASSWORD, World
from tests.factories import make_user
from tools.models import User
from tools.security import hash_password
from tools.settings import Settings, load_settings


def _login(client: TestClient, email: str, password: str) -> tuple[int, dict[str, object]]:
    response = client.post("/api/auth/token", data={"username": email, "password": password})
    return response.status_code, response.json()


def test_login_returns_a_token_that_opens_the_api(client: TestClient, world: World) -> None:
    rep = world.users["rep"]
    status, body = _login(client, rep.email.upper(), PASSWORD)  # e-mail case does not matter
    assert status == 200 and body["token_type"] == "bearer"
    assert 0 < int(str(body["expires_in"])) <= 12 * 60 * 60
    me = client.get("/api/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "id": rep.id,
        "email": rep.email,
        "name": rep.name,
        "role": "rep",
        "manager_id": world.users["manager"].id,
    }


def test_wrong_password_and_unknown_user_get_the_same_401(client: TestClient, world: World) -> None:
    wrong = _login(client, world.users["rep"].email, "not the password")
    unknown = _login(client, "nobody@example.com", PASSWORD)
    assert wrong == unknown == (401, {"detail": "Incorrect email or password"})


def test_every_api_route_needs_credentials(client: TestClient) -> None:
    for method, path in [
        ("GET", "/api/me"),
        ("GET", "/api/tools"),
        ("POST", "/api/tools/store_profile"),
        ("GET", "/api/keys"),
        ("POST", "/api/keys"),
        ("DELETE", "/api/keys/mgl_0000000000"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"


def test_expired_token_is_refused(client: TestClient, world: World, api_settings: Settings) -> None:
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = create_access_token(world.users["rep"], api_settings, minutes=60, now=issued)
    response = client.get("/api/me", headers={"Authorization": f"Bearer {token.token}"})
    assert response.status_code == 401 and response.json() == {"detail": "Token has expired"}


def test_token_lifetime_follows_the_setting(
    client: TestClient, world: World, api_settings: Settings
) -> None:
    short = load_settings(
        database_url=api_settings.database_url,
        secret_key=api_settings.secret_key.get_secret_value(),
        access_token_minutes=5,
    )
    token = create_access_token(world.users["rep"], short)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 5 * 60


def test_forged_and_malformed_tokens_are_refused(
    client: TestClient, world: World, api_settings: Settings
) -> None:
    other_secret = load_settings(secret_key="another-secret-entirely-0123456789-abcdef")
    forged = create_access_token(world.users["admin"], other_secret).token
    unsigned = jwt.encode({"sub": str(world.users["admin"].id)}, key="", algorithm="none")
    for header in [f"Bearer {forged}", f"Bearer {unsigned}", "Bearer nonsense", "Basic abc"]:
        response = client.get("/api/me", headers={"Authorization": header})
        assert response.status_code == 401, header
        # The tool route reads the caller itself, in the session the tool runs in.
        response = client.post("/api/tools/low_stock", json={}, headers={"Authorization": header})
        assert response.status_code == 401, header


def test_inactive_user_can_neither_log_in_nor_use_a_token(
    client: TestClient, api_engine: Engine, api_settings: Settings
) -> None:
    with Session(api_engine, expire_on_commit=False) as session:
        user = make_user(session, "rep")
        user.password_hash = hash_password(PASSWORD)
        session.commit()
    token = create_access_token(user, api_settings).token
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/me", headers=headers).status_code == 200
    assert client.post("/api/tools/low_stock", json={}, headers=headers).status_code == 200
    with Session(api_engine) as session:
        session.execute(update(User).where(User.id == user.id).values(is_active=False))
        session.commit()
    assert client.get("/api/me", headers=headers).status_code == 401
    assert client.post("/api/tools/low_stock", json={}, headers=headers).status_code == 401
    assert _login(client, user.email, PASSWORD)[0] == 401
