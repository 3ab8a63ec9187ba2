"""The web chat API on a demo distributor: answers with tables and charts, the event stream,
history across requests, confirmation buttons, repeated submissions, citations and limits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.auth import create_access_token
from tests.channels.web_demo import (
    ADMIN,
    TODAY,
    bookable,
    demo_app,
    demo_assistant,
    demo_database,
    demo_settings,
)
from tools.db import make_engine
from tools.models import Communication, ConversationTurn, Order, Store, User
from tools.settings import Settings

SALES = "sales by region this month vs last month"
REP = "rep1@demo.mangalm.in"  # manager1's team
TEAMMATE = "rep2@demo.mangalm.in"
OUTSIDER = "rep6@demo.mangalm.in"  # manager2's team


@pytest.fixture(scope="module")
def web_url(create_database: Callable[..., str]) -> str:
    return demo_database(create_database)


@pytest.fixture(scope="module")
def web_engine(web_url: str) -> Iterator[Engine]:
    engine = make_engine(web_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def web_settings(web_url: str) -> Settings:
    return demo_settings(web_url)


@pytest.fixture(scope="module")
def web_assistant(web_settings: Settings, web_engine: Engine) -> Any:
    # One for the module: its intent classifier is trained once.
    return demo_assistant(web_settings, web_engine)


@pytest.fixture()
def client(web_settings: Settings, web_engine: Engine, web_assistant: Any) -> Iterator[TestClient]:
    with TestClient(demo_app(web_settings, web_engine, web_assistant)) as test_client:
        yield test_client


@pytest.fixture()
def auth(web_settings: Settings, web_engine: Engine) -> Callable[[str], dict[str, str]]:
    """Authorization headers for a demo user by e-mail."""

    def headers(email: str) -> dict[str, str]:
        with Session(web_engine) as session:
            user = session.scalars(select(User).where(User.email == email)).one()
            token = create_access_token(user, web_settings)
        return {"Authorization": f"Bearer {token.token}"}

    return headers


def sse_events(body: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of a Server-Sent Events body; comment lines are skipped."""
    events = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next(line.removeprefix("event: ") for line in lines if line.startswith("event: "))
        data = "\n".join(line.removeprefix("data: ") for line in lines if line.startswith("data: "))
        events.append((name, json.loads(data)))
    return events


def turns_with_id(engine: Engine, message_id: str) -> int:
    with Session(engine) as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(ConversationTurn)
                .where(
                    ConversationTurn.channel == "web",
                    ConversationTurn.message_id.endswith(message_id),
                )
            )
            or 0
        )


def ask(client: TestClient, headers: dict[str, str], text: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/chat", json={"text": text, **extra}, headers=headers)
    assert response.status_code == 200, response.text
    turn: dict[str, Any] = response.json()
    return turn


# --- answers ---------------------------------------------------------------------------------


def test_chat_answers_with_a_table_and_a_chart(
    client: TestClient, auth: Callable[[str], dict[str, str]], web_engine: Engine
) -> None:
    turn = ask(client, auth(ADMIN), SALES)

    assert turn["intent"] == "sales_summary"
    assert [call["name"] for call in turn["tool_calls"]] == ["sales_summary"]
    reply = turn["reply"]
    assert reply["text"].startswith("Sales this month")
    assert turn["answer"].startswith(reply["text"])
    table, chart = reply["table"], reply["chart"]
    assert table["columns"][0] == "region"
    with Session(web_engine) as session:
        regions = set(session.scalars(select(Store.region).distinct()))
    labels = [row[0] for row in table["rows"]]
    assert labels and set(labels) <= regions
    assert chart["kind"] == "bar" and chart["labels"] == labels
    assert set(chart["series"]) == {"this period", "before"}
    assert all(len(values) == len(labels) for values in chart["series"].values())


def test_stream_sends_status_deltas_reply_done_in_order(
    client: TestClient, auth: Callable[[str], dict[str, str]]
) -> None:
    response = client.post("/api/chat/stream", json={"text": SALES}, headers=auth(ADMIN))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "status" and events[0][1] == {"state": "thinking"}
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) >= 2
    assert names == ["status", *["delta"] * len(deltas), "reply", "done"]
    turn = events[-2][1]
    assert "".join(deltas) == turn["reply"]["text"]
    assert turn["reply"]["table"]["rows"] and turn["reply"]["chart"]["labels"]
    assert events[-1][1] == {"turn_id": turn["turn_id"]}


def test_history_keeps_the_users_own_turns_with_tables_in_order(
    client: TestClient, auth: Callable[[str], dict[str, str]]
) -> None:
    first = ask(client, auth(TEAMMATE), SALES)
    second = ask(client, auth(TEAMMATE), "which stores have not ordered for a month?")

    response = client.get("/api/chat/history", headers=auth(TEAMMATE))
    assert response.status_code == 200
    turns = response.json()["turns"]
    assert [t["turn_id"] for t in turns[-2:]] == [first["turn_id"], second["turn_id"]]
    assert turns[-2]["text"] == SALES
    # Redrawn after a reload exactly as first shown: table and chart included.
    assert turns[-2]["reply"] == first["reply"]
    assert turns[-1]["reply"] == second["reply"]

    latest = client.get("/api/chat/history?limit=1", headers=auth(TEAMMATE)).json()["turns"]
    assert [t["turn_id"] for t in latest] == [second["turn_id"]]
    others = client.get("/api/chat/history", headers=auth(OUTSIDER)).json()["turns"]
    assert not {t["turn_id"] for t in others} & {first["turn_id"], second["turn_id"]}


def test_confirmation_button_places_one_order_when_submitted_twice_at_once(
    client: TestClient, auth: Callable[[str], dict[str, str]], web_engine: Engine
) -> None:
    booking = bookable(web_engine, [f"rep{n}@demo.mangalm.in" for n in range(1, 11)])
    headers = auth(booking.email)
    draft = ask(client, headers, f"book 2 cases of {booking.product} for {booking.store}")
    buttons = {b["label"]: b["payload"] for b in draft["reply"]["buttons"]}
    assert set(buttons) == {"Yes", "No"}, draft["reply"]["text"]

    def orders() -> int:
        with Session(web_engine) as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Order)
                    .where(Order.store_id == booking.store_id)
                )
                or 0
            )

    before = orders()
    message_id = str(uuid.uuid4())
    body = {"text": "", "button_payload": buttons["Yes"], "message_id": message_id}
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(
            pool.map(lambda _: client.post("/api/chat", json=body, headers=headers), range(2))
        )

    assert [a.status_code for a in answers] == [200, 200]
    turns = [a.json() for a in answers]
    assert sorted(t["duplicate"] for t in turns) == [False, True]
    assert turns[0]["reply"]["text"] == turns[1]["reply"]["text"]
    assert "placed" in turns[0]["reply"]["text"] and booking.store in turns[0]["reply"]["text"]
    assert orders() == before + 1
    assert turns_with_id(web_engine, message_id) == 1
    history = client.get("/api/chat/history", headers=headers).json()["turns"]
    assert history[-1]["text"] == "" and history[-1]["button"] == "Yes"
    assert "placed" in history[-1]["reply"]["text"]


def test_a_repeated_question_answers_the_first_reply(
    client: TestClient, auth: Callable[[str], dict[str, str]], web_engine: Engine
) -> None:
    message_id = uuid.uuid4().hex
    first = ask(client, auth(ADMIN), SALES, message_id=message_id)
    again = client.post(
        "/api/chat/stream", json={"text": SALES, "message_id": message_id}, headers=auth(ADMIN)
    )

    turn = sse_events(again.text)[-2][1]
    assert turn["duplicate"] is True and turn["turn_id"] == first["turn_id"]
    assert turn["reply"] == first["reply"]
    assert turns_with_id(web_engine, message_id) == 1


def test_the_same_message_id_from_another_user_is_their_own_turn(
    client: TestClient, auth: Callable[[str], dict[str, str]]
) -> None:
    message_id = uuid.uuid4().hex
    mine = ask(client, auth(ADMIN), SALES, message_id=message_id)
    theirs = ask(client, auth(OUTSIDER), SALES, message_id=message_id)

    assert theirs["duplicate"] is False and theirs["turn_id"] != mine["turn_id"]
    assert theirs["reply"]["table"] != mine["reply"]["table"]


# --- citations -------------------------------------------------------------------------------


def test_a_citation_opens_only_for_users_who_may_see_its_store(
    client: TestClient, auth: Callable[[str], dict[str, str]], web_engine: Engine
) -> None:
    with Session(web_engine) as session:
        rep = session.scalars(select(User).where(User.email == REP)).one()
        item, store = session.execute(
            select(Communication, Store)
            .join(Store, Store.id == Communication.store_id)
            .where(Store.rep_id == rep.id)
            .order_by(Communication.id)
            .limit(1)
        ).one()
        missing = (session.scalar(select(func.max(Communication.id))) or 0) + 1000

    url = f"/api/communications/{item.id}"
    shown = client.get(url, headers=auth(REP))
    assert shown.status_code == 200
    data = shown.json()
    assert (data["id"], data["text"], data["store"]) == (item.id, item.text, store.name)
    assert (data["kind"], data["channel"]) == (item.kind, item.channel)
    assert data["date"].startswith(item.occurred_at.date().isoformat()[:4])
    for email in (ADMIN, "manager1@demo.mangalm.in"):
        assert client.get(url, headers=auth(email)).status_code == 200

    not_there = client.get(f"/api/communications/{missing}", headers=auth(REP))
    assert not_there.status_code == 404
    for email in (OUTSIDER, TEAMMATE, "manager2@demo.mangalm.in", "viewer2@demo.mangalm.in"):
        hidden = client.get(url, headers=auth(email))
        assert (hidden.status_code, hidden.json()) == (404, not_there.json()), email
    assert client.get("/api/communications/99999999999", headers=auth(REP)).status_code == 422


# --- authentication and limits ---------------------------------------------------------------


ROUTES = [
    ("POST", "/api/chat"),
    ("POST", "/api/chat/stream"),
    ("GET", "/api/chat/history"),
    ("GET", "/api/communications/1"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_valid_token(
    client: TestClient, web_engine: Engine, method: str, path: str
) -> None:
    before = turns_with_id(web_engine, "")
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = client.request(method, path, json={"text": SALES}, headers=headers)
        assert response.status_code == 401
    assert turns_with_id(web_engine, "") == before


def test_messages_over_4000_characters_are_refused_and_not_processed(
    client: TestClient, auth: Callable[[str], dict[str, str]], web_engine: Engine
) -> None:
    before = turns_with_id(web_engine, "")
    for path in ("/api/chat", "/api/chat/stream"):
        response = client.post(path, json={"text": "x" * 4001}, headers=auth(ADMIN))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "text"]
    for body in ({"text": "   "}, {"text": "hello", "message_id": "x"}, {"texts": "hello"}):
        assert client.post("/api/chat", json=body, headers=auth(ADMIN)).status_code == 422
    assert turns_with_id(web_engine, "") == before

    longest = "stores " * (4000 // 7) + "x" * (4000 % 7)
    assert len(longest) == 4000
    assert ask(client, auth(ADMIN), longest)["reply"]["text"]


# --- the page --------------------------------------------------------------------------------


def test_the_page_and_its_bundled_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Scripts only from this origin: no CDN, nothing inline.
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert '<script src="/static/vendor/chart.umd.min.js"' in page.text
    assert "https://" not in page.text
    chart = client.get("/static/vendor/chart.umd.min.js")
    assert chart.status_code == 200 and chart.text.startswith("/*!\n * Chart.js v4")
    for name in ("app.js", "style.css", "vendor/chart.js.LICENSE.md"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../main.py").status_code == 404


def test_today_of_the_demo_is_the_assistants_today(
    client: TestClient, auth: Callable[[str], dict[str, str]]
) -> None:
    # The other tests' "this month" relies on it.
    reply = ask(client, auth(ADMIN), SALES)["reply"]
    assert TODAY.strftime("%b %Y") in reply["text"]
