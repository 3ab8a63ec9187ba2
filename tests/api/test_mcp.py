"""The tool registry over MCP, spoken to by the official MCP client against a real server."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.api.conftest import World
from tools.registry import load_all

Bearer = Callable[[str], dict[str, str]]


def run_mcp(
    base_url: str,
    headers: dict[str, str],
    work: Callable[[ClientSession], Awaitable[Any]],
    *,
    mode: str = "legacy",
    statuses: list[int] | None = None,
) -> Any:
    """Open an MCP session to `base_url`/mcp with `headers` on every request, run `work`.

    The HTTP status of every response is appended to `statuses` when given.
    """

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    async def main() -> Any:
        async with httpx2.AsyncClient(
            headers=headers, timeout=30, event_hooks={"response": [record]}
        ) as http:
            transport = streamable_http_client(f"{base_url}/mcp", http_client=http)
            if mode == "legacy":
                async with transport as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    return await work(session)
            async with Client(transport, mode=mode, cache=None) as client:
                return await work(client.session)

    return anyio.run(main)


def payload(result: types.CallToolResult) -> dict[str, Any]:
    """A tool result's JSON body (the text content, which must match the structured content)."""
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    body: dict[str, Any] = json.loads(text.text)
    assert result.structured_content == body
    return body


def test_unauthenticated_requests_get_401(live_server: str) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    for extra in [{}, {"Authorization": "Bearer nonsense"}, {"X-API-Key": "mgl_0000000000_x"}]:
        response = httpx.post(
            f"{live_server}/mcp", json=initialize, headers={**headers, **extra}, timeout=10
        )
        assert response.status_code == 401, extra
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_lists_every_tool_with_its_schema(live_server: str, bearer: Bearer, mode: str) -> None:
    async def work(session: ClientSession) -> types.ListToolsResult:
        return await session.list_tools()

    listed = run_mcp(live_server, bearer("rep"), work, mode=mode)
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == set(load_all())
    for name, spec in load_all().items():
        assert tools[name].input_schema == spec.json_schema()
        assert tools[name].description == spec.description
        assert tools[name].annotations is not None
        assert tools[name].annotations.read_only_hint is (not spec.writes)


def test_read_only_users_are_not_offered_write_tools(live_server: str, bearer: Bearer) -> None:
    async def work(session: ClientSession) -> set[str]:
        return {t.name for t in (await session.list_tools()).tools}

    names = run_mcp(live_server, bearer("viewer"), work)
    assert names == {name for name, spec in load_all().items() if not spec.writes}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_calls_a_tool_as_the_authenticated_user(
    live_server: str, bearer: Bearer, world: World, mode: str
) -> None:
    own, foreign = world.stores["rep"], world.stores["outsider"]

    async def work(session: ClientSession) -> tuple[types.CallToolResult, types.CallToolResult]:
        mine = await session.call_tool("store_profile", {"store": own.code})
        theirs = await session.call_tool("store_profile", {"store": foreign.code})
        return mine, theirs

    mine, theirs = run_mcp(live_server, bearer("rep"), work, mode=mode)
    assert not mine.is_error and payload(mine)["store"]["id"] == own.id
    assert theirs.is_error and payload(theirs)["error"] == "not_found"


def test_an_api_key_works_and_a_revoked_one_does_not(
    live_server: str, client: TestClient, bearer: Bearer, world: World
) -> None:
    created = client.post("/api/keys", json={"name": "mcp agent"}, headers=bearer("manager"))
    key, prefix = created.json()["key"], created.json()["prefix"]

    async def work(session: ClientSession) -> types.CallToolResult:
        return await session.call_tool("store_profile", {"store": world.stores["teammate"].code})

    result = run_mcp(live_server, {"X-API-Key": key}, work)
    assert not result.is_error and payload(result)["store"]["name"] == "Bravo Medical Hall"

    client.delete(f"/api/keys/{prefix}", headers=bearer("manager"))
    statuses: list[int] = []
    with pytest.raises(BaseException, match="unhandled errors"):  # the client gives up
        run_mcp(live_server, {"X-API-Key": key}, work, statuses=statuses)
    assert statuses == [401]


def test_errors_come_back_as_tool_errors(live_server: str, bearer: Bearer) -> None:
    async def work(session: ClientSession) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["bad"] = await session.call_tool("recent_orders", {"store": "x", "limit": "many"})
        out["ambiguous"] = await session.call_tool("store_profile", {"store": "sharma"})
        try:
            await session.call_tool("drop_all_tables", {})
        except MCPError as error:
            out["unknown"] = error
        return out

    out = run_mcp(live_server, bearer("admin"), work)
    bad = payload(out["bad"])
    assert out["bad"].is_error and bad["error"] == "invalid_arguments"
    assert [f["loc"] for f in bad["fields"]] == [["limit"]]
    ambiguous = payload(out["ambiguous"])
    assert out["ambiguous"].is_error and ambiguous["error"] == "ambiguous"
    assert len(ambiguous["candidates"]) == 2
    assert isinstance(out["unknown"], MCPError) and "drop_all_tables" in out["unknown"].message


def test_a_confirmed_write_over_mcp_is_committed(
    live_server: str, bearer: Bearer, world: World, client: TestClient
) -> None:
    store = world.stores["rep"]
    args = {"store": store.code, "text": "Asked for a credit extension over MCP."}

    async def work(session: ClientSession) -> dict[str, Any]:
        asked = payload(await session.call_tool("log_note", args))
        token = asked["confirmation_token"]
        return payload(await session.call_tool("log_note", {**args, "confirmation_token": token}))

    saved = run_mcp(live_server, bearer("rep"), work)
    # Another face (REST, another session) sees the note: it was committed.
    history = client.post(
        "/api/tools/search_communications",
        json={"query": "credit extension over MCP", "store": store.code},
        headers=bearer("rep"),
    )
    assert history.status_code == 200, history.json()
    assert saved and "credit extension over MCP" in json.dumps(history.json()["result"])
