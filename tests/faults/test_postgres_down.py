"""PostgreSQL stops in the middle of a conversation and comes back.

The app runs on a PostgreSQL cluster of this module's own (the shared test server is never
stopped). While it is down, the web chat answers 503 with a plain "temporarily unavailable",
and signed Twilio SMS and WhatsApp webhooks are still acknowledged: their turns are kept, run
once the database is back, and are answered once. A redelivery of a webhook changes nothing.
A turn cut off by the outage half way (after it claimed its message id, before it committed)
is run again from the start: its order is placed once and confirmed once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

import assistant.turn
from api.auth import create_access_token
from api.main import DATABASE_UNAVAILABLE, create_app
from tests.channels.support import wait_for
from tests.channels.twilio_support import (
    REP_PHONE,
    FakeTwilio,
    Shop,
    build_shop,
    drain,
    fake_twilio,
    inbound_sms,
    placed_orders,
    post_signed,
    twilio_settings,
)
from tests.faults.support import PrivatePostgres, private_postgres
from tools.db import make_engine
from tools.models import ConversationTurn, User


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def engine(pg: PrivatePostgres) -> Iterator[Engine]:
    made = make_engine(pg.url)
    yield made
    made.dispose()


@pytest.fixture(scope="module")
def shop(engine: Engine) -> Shop:
    return build_shop(engine)


@pytest.fixture()
def fake() -> Iterator[FakeTwilio]:
    yield from fake_twilio()


@pytest.fixture()
def client(pg: PrivatePostgres, fake: FakeTwilio, shop: Shop) -> Iterator[TestClient]:
    with TestClient(create_app(twilio_settings(pg.url, fake))) as test_client:
        yield test_client


@pytest.fixture()
def restart(pg: PrivatePostgres) -> Iterator[Callable[[float], None]]:
    """`restart(delay)`: start the stopped server again `delay` seconds from now (in the
    background); the test waits for it at the end, and the server is up after every test."""
    timers: list[threading.Timer] = []

    def schedule(delay: float) -> None:
        timer = threading.Timer(delay, pg.start)
        timers.append(timer)
        timer.start()

    yield schedule
    for timer in timers:
        timer.join()
    pg.start()


def _rows(engine: Engine, message_id: str) -> list[ConversationTurn]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(ConversationTurn).where(ConversationTurn.message_id == message_id)
            )
        )


def _turn_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(ConversationTurn)) or 0)


def _chat(client: TestClient, headers: dict[str, str], text: str) -> Any:
    return client.post(
        "/api/chat", json={"text": text, "message_id": uuid.uuid4().hex}, headers=headers
    )


def _bearer(rep: User, client: TestClient) -> dict[str, str]:
    token = create_access_token(rep, client.app.state.settings).token  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def test_outage_mid_conversation_keeps_webhook_turns_and_answers_them_once(
    client: TestClient,
    fake: FakeTwilio,
    pg: PrivatePostgres,
    engine: Engine,
    shop: Shop,
    restart: Callable[[float], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = _bearer(shop.rep, client)
    # The conversation before the outage, on both channels.
    before = _chat(client, headers, "how much does Sharma General Store owe?")
    assert before.status_code == 200, before.text
    assert post_signed(
        client, "/twilio/sms", inbound_sms("sales of Sharma General Store")
    ).is_success
    drain(client)
    assert len(fake.to(REP_PHONE)) == 1

    pg.stop()
    down = _chat(client, headers, "and what did they order last time?")
    assert down.status_code == 503
    assert down.json() == {"detail": DATABASE_UNAVAILABLE}
    assert "temporarily unavailable" in DATABASE_UNAVAILABLE
    assert int(down.headers["Retry-After"]) > 0
    readiness = client.get("/readyz")
    assert readiness.status_code == 503 and readiness.json()["status"] == "unavailable"

    question = inbound_sms("how much does Sharma General Store owe?")
    message_id = dict(question)["MessageSid"]
    acknowledged = post_signed(client, "/twilio/sms", question)
    assert acknowledged.status_code == 200
    assert acknowledged.text.strip().endswith("<Response />")
    # WhatsApp through Twilio notes the sender's 24-hour window first: that note is skipped,
    # the message is not refused (Twilio would not deliver it again).
    on_whatsapp = inbound_sms("how much does Sharma General Store owe?", whatsapp=True)
    assert post_signed(client, "/twilio/whatsapp", on_whatsapp).status_code == 200
    # The turns are tried against the stopped server and kept.
    wait_for(lambda: caplog.text.count("kept: the database is unavailable") >= 2)
    assert len(fake.to(REP_PHONE)) == 1  # nothing sent while the database is down
    assert fake.to(f"whatsapp:{REP_PHONE}") == []

    restart(0.0)
    drain(client)
    replies = fake.to(REP_PHONE)
    assert len(replies) == 2, replies
    assert "unavailable" not in replies[1]
    [whatsapp_reply] = fake.to(f"whatsapp:{REP_PHONE}")
    assert "Sharma General Store" in whatsapp_reply
    [row] = _rows(engine, message_id)
    assert row.answer is not None and row.intent not in (None, "unavailable")
    assert row.user_id == shop.rep.id
    assert row.reply is not None and row.reply["delivery"]["state"] == "sent"

    # The web chat answers again, and the same webhook delivered again is not a new turn.
    assert _chat(client, headers, "how much does Sharma General Store owe?").status_code == 200
    turns = _turn_count(engine)
    assert post_signed(client, "/twilio/sms", question).status_code == 200
    drain(client)
    assert len(fake.to(REP_PHONE)) == 2
    assert len(_rows(engine, message_id)) == 1
    assert _turn_count(engine) == turns


def test_a_turn_cut_off_by_the_outage_runs_again_and_places_one_order(
    client: TestClient,
    fake: FakeTwilio,
    pg: PrivatePostgres,
    engine: Engine,
    shop: Shop,
    restart: Callable[[float], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orders = placed_orders(engine, shop.sharma)
    assert post_signed(
        client, "/twilio/sms", inbound_sms("book 10 cases of Parle-G for Sharma")
    ).is_success
    drain(client)
    [draft] = fake.to(REP_PHONE)
    assert draft.rstrip().endswith("Reply YES or NO.")

    # The server goes down after the confirmation ran (its order written in the turn's
    # transaction) and before the turn committed.
    checked = assistant.turn.check_grounded
    cut = threading.Event()

    def check_then_fail(*args: Any, **kwargs: Any) -> None:
        checked(*args, **kwargs)
        if not cut.is_set():
            cut.set()
            pg.stop()
            restart(0.3)

    monkeypatch.setattr(assistant.turn, "check_grounded", check_then_fail)
    yes = inbound_sms("YES")
    assert post_signed(client, "/twilio/sms", yes).status_code == 200
    drain(client)

    assert cut.is_set()
    replies = fake.to(REP_PHONE)
    assert len(replies) == 2, replies
    assert "placed" in replies[1].lower()
    assert placed_orders(engine, shop.sharma) == orders + 1
    [row] = _rows(engine, dict(yes)["MessageSid"])
    assert "placed" in (row.answer or "").lower()
    # Delivered again: still one order, one reply.
    assert post_signed(client, "/twilio/sms", yes).status_code == 200
    drain(client)
    assert len(fake.to(REP_PHONE)) == 2
    assert placed_orders(engine, shop.sharma) == orders + 1
