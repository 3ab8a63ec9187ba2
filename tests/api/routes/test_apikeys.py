"""API keys: made, listed and revoked over the API and the CLI; stored hashed; revoked = refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.cli import app as cli
from tests.api.conftest import World
from tests.factories import make_user
from tools.db import reset_engine
from tools.models import ApiKey, User
from tools.settings import get_settings

Bearer = Callable[[str], dict[str, str]]


def _fresh_user(engine: Engine, role: str = "rep") -> User:
    with Session(engine, expire_on_commit=False) as session:
        user = make_user(session, role)
        session.commit()
    return user


def test_create_list_revoke_over_the_api(
    client: TestClient, bearer: Bearer, world: World, api_engine: Engine
) -> None:
    created = client.post("/api/keys", json={"name": "reporting"}, headers=bearer("manager"))
    assert created.status_code == 201
    body = created.json()
    key, prefix = body["key"], body["prefix"]
    assert key.startswith(prefix + "_") and len(key) > 40
    assert body["user_id"] == world.users["manager"].id and body["revoked_at"] is None

    # Stored hashed: the database holds neither the key nor its secret part.
    with Session(api_engine) as session:
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one()
        assert key not in row.key_hash and key.rsplit("_", 1)[1] not in row.key_hash

    # The key opens the API as its owner, and never shows up again in listings.
    me = client.get("/api/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.json()["id"] == world.users["manager"].id
    listed = client.get("/api/keys", headers={"X-API-Key": key}).json()
    mine = [k for k in listed if k["prefix"] == prefix]
    assert len(mine) == 1 and "key" not in mine[0] and mine[0]["last_used_at"] is not None

    revoked = client.delete(f"/api/keys/{prefix}", headers=bearer("manager"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = client.get("/api/me", headers={"X-API-Key": key})
    assert refused.status_code == 401 and refused.json() == {"detail": "API key has been revoked"}
    assert (
        client.post(
            "/api/tools/find_store", json={"query": "alpha"}, headers={"X-API-Key": key}
        ).status_code
        == 401
    )


def test_wrong_or_malformed_keys_are_refused(client: TestClient, bearer: Bearer) -> None:
    key = client.post("/api/keys", json={"name": "k"}, headers=bearer("rep")).json()["key"]
    tampered = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for bad in [tampered, "mgl_short_x", "nonsense", key.split("_", 2)[0] + "_" + "0" * 10 + "_x"]:
        assert client.get("/api/me", headers={"X-API-Key": bad}).status_code == 401, bad


def test_a_user_cannot_see_or_revoke_someone_elses_key(client: TestClient, bearer: Bearer) -> None:
    prefix = client.post("/api/keys", json={"name": "mine"}, headers=bearer("rep")).json()["prefix"]
    other = client.get("/api/keys", headers=bearer("teammate")).json()
    assert prefix not in [k["prefix"] for k in other]
    assert client.delete(f"/api/keys/{prefix}", headers=bearer("teammate")).status_code == 404
    assert client.get("/api/keys?all_users=true", headers=bearer("teammate")).status_code == 403
    # An admin sees and may revoke every key.
    everyone = client.get("/api/keys?all_users=true", headers=bearer("admin")).json()
    assert prefix in [k["prefix"] for k in everyone]
    assert client.delete(f"/api/keys/{prefix}", headers=bearer("admin")).status_code == 200


def test_key_of_an_inactive_user_is_refused(
    client: TestClient, api_engine: Engine, api_settings: object
) -> None:
    user = _fresh_user(api_engine)
    with Session(api_engine) as session:
        from api.auth import create_api_key

        key = create_api_key(session, session.get(User, user.id), "soon inactive").key  # type: ignore[arg-type]
        session.commit()
    assert client.get("/api/me", headers={"X-API-Key": key}).status_code == 200
    with Session(api_engine) as session:
        session.get(User, user.id).is_active = False  # type: ignore[union-attr]
        session.commit()
    assert client.get("/api/me", headers={"X-API-Key": key}).status_code == 401


def test_key_needs_a_name(client: TestClient, bearer: Bearer) -> None:
    for body in [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}]:
        response = client.post("/api/keys", json=body, headers=bearer("rep"))
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"][-1] == "name"


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture()
def cli_env(api_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The `mangalm` command pointed at the API test database."""
    monkeypatch.setenv("DATABASE_URL", api_db_url)
    monkeypatch.setenv("COLUMNS", "200")  # rich tables in one line each
    get_settings.cache_clear()
    reset_engine()
    yield CliRunner()
    reset_engine()


def test_cli_create_list_revoke(cli_env: CliRunner, client: TestClient, api_engine: Engine) -> None:
    user = _fresh_user(api_engine, "manager")
    made = cli_env.invoke(cli, ["apikey", "create", "--user", user.email, "--name", "nightly"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("mgl_")
    assert "not shown again" in made.stderr
    assert client.get("/api/me", headers={"X-API-Key": key}).json()["email"] == user.email

    prefix = key[: len("mgl_") + 10]
    listed = cli_env.invoke(cli, ["apikey", "list", "--user", user.email])
    assert listed.exit_code == 0
    assert prefix in listed.stdout and "nightly" in listed.stdout and "active" in listed.stdout
    assert key not in listed.stdout

    revoked = cli_env.invoke(cli, ["apikey", "revoke", prefix])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert client.get("/api/me", headers={"X-API-Key": key}).status_code == 401
    assert "revoked" in cli_env.invoke(cli, ["apikey", "list", "--user", user.email]).stdout


def test_cli_errors_are_one_line(cli_env: CliRunner) -> None:
    unknown = cli_env.invoke(cli, ["apikey", "create", "--user", "ghost@x.com", "--name", "n"])
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == "error: no user with e-mail ghost@x.com"
    missing = cli_env.invoke(cli, ["apikey", "revoke", "mgl_ffffffffff"])
    assert missing.exit_code == 2 and "no API key with prefix" in missing.stderr
