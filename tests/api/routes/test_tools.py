"""The tool registry over REST: schemas, validation, errors as 4xx, writes committed only when
confirmed, all as the authenticated user."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.api.conftest import World
from tools.models import Communication
from tools.registry import load_all

Bearer = Callable[[str], dict[str, str]]


def test_lists_every_tool_with_its_schema(client: TestClient, bearer: Bearer) -> None:
    listed = client.get("/api/tools", headers=bearer("rep"))
    assert listed.status_code == 200
    tools = {t["name"]: t for t in listed.json()}
    assert set(tools) == set(load_all())
    for name, spec in load_all().items():
        assert tools[name]["parameters"] == spec.json_schema()
        assert tools[name]["writes"] is spec.writes
        assert tools[name]["description"] == spec.description
    profile = tools["store_profile"]
    assert profile["parameters"]["type"] == "object"
    assert profile["parameters"]["required"] == ["store"]
    assert tools["draft_order"]["writes"] is True


def test_read_only_users_are_not_offered_write_tools(client: TestClient, bearer: Bearer) -> None:
    names = {t["name"] for t in client.get("/api/tools", headers=bearer("viewer")).json()}
    writes = {name for name, spec in load_all().items() if spec.writes}
    assert writes and not names & writes
    assert {name for name, spec in load_all().items() if not spec.writes} == names


def test_call_returns_name_args_and_result(
    client: TestClient, bearer: Bearer, world: World
) -> None:
    store = world.stores["rep"]
    response = client.post(
        "/api/tools/store_profile", json={"store": store.code}, headers=bearer("rep")
    )
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "store_profile" and body["args"] == {"store": store.code}
    assert body["result"]["store"]["id"] == store.id
    assert body["result"]["store"]["name"] == "Alpha Kirana Store"


def test_unknown_tool_is_404(client: TestClient, bearer: Bearer) -> None:
    response = client.post("/api/tools/drop_all_tables", json={}, headers=bearer("admin"))
    assert response.status_code == 404
    assert response.json() == {
        "error": "unknown_tool",
        "message": "No tool is named 'drop_all_tables'.",
    }


def test_bad_arguments_are_422_naming_the_field(client: TestClient, bearer: Bearer) -> None:
    cases = {
        "missing": ({}, ["body", "store"], "missing"),
        "wrong type": ({"store": "x", "limit": "many"}, ["body", "limit"], "int_parsing"),
        "unknown field": ({"store": "x", "colour": "red"}, ["body", "colour"], "extra_forbidden"),
    }
    for label, (args, loc, kind) in cases.items():
        response = client.post("/api/tools/recent_orders", json=args, headers=bearer("rep"))
        assert response.status_code == 422, label
        detail = response.json()["detail"]
        assert [d["loc"] for d in detail] == [loc], label
        assert detail[0]["type"] == kind, label
    not_an_object = client.post("/api/tools/recent_orders", json=[1, 2], headers=bearer("rep"))
    assert not_an_object.status_code == 422


def test_ambiguous_is_409_with_candidates_and_scoped(
    client: TestClient, bearer: Bearer, world: World
) -> None:
    admin = client.post(
        "/api/tools/store_profile", json={"store": "sharma"}, headers=bearer("admin")
    )
    assert admin.status_code == 409
    body = admin.json()
    assert body["error"] == "ambiguous"
    assert {c["id"] for c in body["candidates"]} == {
        world.stores["sharma1"].id,
        world.stores["sharma2"].id,
    }
    # The same words from a rep of another team reveal nothing: no candidates, just not found.
    rep = client.post("/api/tools/store_profile", json={"store": "sharma"}, headers=bearer("rep"))
    assert rep.status_code == 404 and rep.json()["error"] == "not_found"
    assert "candidates" not in rep.json()


def _notes(engine: Engine, store_id: int) -> int:
    with Session(engine) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Communication)
                .where(Communication.store_id == store_id)
            )
            or 0
        )


def test_a_write_is_committed_only_once_confirmed(
    client: TestClient, bearer: Bearer, world: World, api_engine: Engine
) -> None:
    store = world.stores["rep"]
    before = _notes(api_engine, store.id)
    args = {"store": store.code, "text": "Owner asked for the Diwali scheme leaflet."}
    asked = client.post("/api/tools/log_note", json=args, headers=bearer("rep"))
    assert asked.status_code == 200
    token = asked.json()["result"]["confirmation_token"]
    assert token and _notes(api_engine, store.id) == before  # nothing written yet

    done = client.post(
        "/api/tools/log_note", json={**args, "confirmation_token": token}, headers=bearer("rep")
    )
    assert done.status_code == 200
    assert _notes(api_engine, store.id) == before + 1  # committed: another session sees it
    again = client.post(
        "/api/tools/log_note", json={**args, "confirmation_token": token}, headers=bearer("rep")
    )
    assert again.status_code == 200 and _notes(api_engine, store.id) == before + 1

    # The token is bound to its user: a teammate cannot redeem it.
    stolen = client.post(
        "/api/tools/log_note",
        json={**args, "confirmation_token": token},
        headers=bearer("manager"),
    )
    assert stolen.status_code in (403, 404) and _notes(api_engine, store.id) == before + 1


def test_refusals_are_403_and_write_nothing(
    client: TestClient, bearer: Bearer, world: World, api_engine: Engine
) -> None:
    store = world.stores["teammate"]
    before = _notes(api_engine, store.id)
    viewer = client.post(
        "/api/tools/log_note",
        json={"store": store.code, "text": "viewers cannot write"},
        headers=bearer("viewer"),
    )
    assert viewer.status_code == 403
    assert viewer.json()["error"] == "refused" and "read-only" in viewer.json()["message"]
    too_much = client.post(
        "/api/tools/draft_order",
        json={"store": store.code, "lines": [{"product": "API-SKU-1", "quantity": 99999}]},
        headers=bearer("manager"),
    )
    assert too_much.status_code == 403 and too_much.json()["error"] == "refused"
    assert _notes(api_engine, store.id) == before
