"""The permission matrix over REST and over MCP (official client, real server): every role x
every registered tool that takes a store or an order x own vs another team's store.

Whichever face is used, a store (or order) the user may not see must answer exactly like one
that does not exist, and a read-only user is refused every write before anything is looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mcp.client.session import ClientSession

from tests.api.conftest import World
from tests.api.test_mcp import payload, run_mcp
from tools.registry import load_all

# Arguments besides the store that a tool needs to run at all.
EXTRA_ARGS: dict[str, dict[str, Any]] = {
    "draft_order": {"lines": [{"product": "API-SKU-1", "quantity": 1}]},
    "log_note": {"text": "Called; will order on Friday."},
    "search_communications": {"query": "order"},
}

# Whose store each role may and may not see (keys of `world.stores`).
OWN = {"admin": "outsider", "manager": "teammate", "rep": "rep", "viewer": "teammate"}
FOREIGN = {"admin": None, "manager": "outsider", "rep": "teammate", "viewer": "outsider"}
MISSING_STORE_REFS = {"id": "987654", "code": "NOPE-404", "name": "Nowhere Shop Xyzzy"}
MISSING_ORDER = 987654


def _targeted_tools() -> list[str]:
    """Every product tool with a `store` or `order` argument (tools that other test modules
    register for themselves, category "test", are not the product's and may be loaded first)."""
    return sorted(
        name
        for name, spec in load_all().items()
        if spec.category != "test" and {"store", "order"} & set(spec.args_model.model_fields)
    )


TOOLS = _targeted_tools()


def test_the_matrix_covers_the_tools_that_take_a_store_or_an_order() -> None:
    assert {"store_profile", "outstanding", "recent_orders", "order_details"} <= set(TOOLS)
    assert {"draft_order", "log_note", "cancel_order"} <= set(TOOLS)


def _refs(tool: str, world: World, key: str) -> dict[str, Any]:
    """References to the store (id, code, name) or order of `key`, by kind."""
    if "order" in load_all()[tool].args_model.model_fields:
        return {"id": world.orders[key].id}
    store = world.stores[key]
    return {"id": str(store.id), "code": store.code, "name": store.name}


def _args(tool: str, ref: Any) -> dict[str, Any]:
    field = "order" if "order" in load_all()[tool].args_model.model_fields else "store"
    return {field: ref, **EXTRA_ARGS.get(tool, {})}


def _normalise(answer: dict[str, Any], ref: Any) -> dict[str, Any]:
    """An error answer with the reference itself blanked out of the message."""
    return {**answer, "message": str(answer.get("message", "")).replace(str(ref), "REF")}


Caller = Callable[[str, list[dict[str, Any]]], list[tuple[bool, dict[str, Any]]]]


def _check_matrix(role: str, tool: str, world: World, call: Caller) -> None:
    """Run the cases of one role and tool through `call` (a face) and check the answers."""
    writes = load_all()[tool].writes
    own = _refs(tool, world, OWN[role])
    cases = [_args(tool, ref) for ref in own.values()]
    foreign_key = FOREIGN[role]
    pairs: list[tuple[Any, Any]] = []
    if foreign_key is not None:
        foreign = _refs(tool, world, foreign_key)
        for kind, ref in foreign.items():
            missing = MISSING_ORDER if kind == "id" and tool in _order_tools() else None
            pairs.append((ref, missing or MISSING_STORE_REFS[kind]))
        for denied_ref, missing_ref in pairs:
            cases += [_args(tool, denied_ref), _args(tool, missing_ref)]
    answers = call(tool, cases)

    own_answers = answers[: len(own)]
    for ref, (ok, body) in zip(own.values(), own_answers, strict=True):
        if role == "viewer" and writes:
            assert not ok and body["error"] == "refused", (ref, body)
            assert "read-only" in body["message"]
        else:
            # Found. A tool may still decline for its own reasons (no forecasts trained yet),
            # but never as if the store were missing or someone else's.
            assert ok or body["error"] not in ("not_found", "ambiguous", "refused"), (
                role,
                tool,
                ref,
                body,
            )
    own_all_ok = all(ok for ok, _ in own_answers)
    rest = answers[len(own) :]
    for index, (denied_ref, missing_ref) in enumerate(pairs):
        (denied_ok, denied), (missing_ok, missing) = rest[2 * index], rest[2 * index + 1]
        assert not denied_ok and not missing_ok, (role, tool, denied_ref, denied)
        if own_all_ok and not (role == "viewer" and writes):
            assert denied["error"] == "not_found", (role, tool, denied_ref, denied)
        assert _normalise(denied, denied_ref) == _normalise(missing, missing_ref)


def _order_tools() -> set[str]:
    return {t for t in TOOLS if "order" in load_all()[t].args_model.model_fields}


@pytest.mark.parametrize("role", list(OWN))
@pytest.mark.parametrize("tool", TOOLS)
def test_matrix_over_rest(
    client: TestClient,
    bearer: Callable[[str], dict[str, str]],
    world: World,
    role: str,
    tool: str,
) -> None:
    headers = bearer(role)

    def call(name: str, cases: list[dict[str, Any]]) -> list[tuple[bool, dict[str, Any]]]:
        answers = []
        for args in cases:
            response = client.post(f"/api/tools/{name}", json=args, headers=headers)
            assert response.status_code in (200, 400, 403, 404), (args, response.json())
            body = response.json()
            if response.status_code == 200:
                answers.append((True, body["result"] if isinstance(body["result"], dict) else {}))
            else:
                answers.append((False, {**body, "status": response.status_code}))
        return answers

    _check_matrix(role, tool, world, call)


@pytest.mark.parametrize("role", list(OWN))
def test_matrix_over_mcp(
    live_server: str,
    bearer: Callable[[str], dict[str, str]],
    world: World,
    role: str,
) -> None:
    # One MCP session per role runs every tool's cases (a session per case adds nothing).
    def call_all(tool: str, cases: list[dict[str, Any]]) -> list[tuple[bool, dict[str, Any]]]:
        async def work(session: ClientSession) -> list[tuple[bool, dict[str, Any]]]:
            answers = []
            for args in cases:
                result = await session.call_tool(tool, args)
                answers.append((not result.is_error, payload(result)))
            return answers

        answers: list[tuple[bool, dict[str, Any]]] = run_mcp(live_server, bearer(role), work)
        return answers

    for tool in TOOLS:
        _check_matrix(role, tool, world, call_all)
