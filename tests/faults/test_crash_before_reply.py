"""The process dies between "order confirmed" and "reply sent".

A confirmation ("YES" over Twilio SMS) places the order and commits; then the reply step
fails (an exception where the process would die), or the process is killed mid-send, or it
dies before the turn finished. After a restart (a new app on the same database), the provider
delivers the same message again: the order exists exactly once and the person gets exactly one
confirmation. Further redeliveries send nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from api.main import create_app
from assistant.turn import CLAIM_LEASE_SECONDS
from channels.delivery import SENDING_LEASE_SECONDS
from channels.twilio_messaging import TwilioMessagingChannel
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
from tools.db import make_engine
from tools.models import ConversationTurn


class Crash(RuntimeError):
    """Stands for the process dying at this point."""


@pytest.fixture(scope="module")
def shop_db(create_database: Callable[..., str]) -> Iterator[tuple[str, Engine, Shop]]:
    url = create_database(migrate=True)
    engine = make_engine(url)
    yield url, engine, build_shop(engine)
    engine.dispose()


@pytest.fixture()
def fake() -> Iterator[FakeTwilio]:
    yield from fake_twilio()


@pytest.fixture()
def start_app(
    shop_db: tuple[str, Engine, Shop], fake: FakeTwilio
) -> Iterator[Callable[[], TestClient]]:
    """`start_app()`: a fresh app process on the test database (entered; closed at the end)."""
    clients: list[TestClient] = []

    def start() -> TestClient:
        client = TestClient(create_app(twilio_settings(shop_db[0], fake)))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def _row(engine: Engine, message_id: str) -> ConversationTurn:
    with Session(engine) as session:
        [row] = session.scalars(
            select(ConversationTurn).where(ConversationTurn.message_id == message_id)
        ).all()
        return row


def _draft(client: TestClient, fake: FakeTwilio) -> None:
    before = len(fake.to(REP_PHONE))
    assert post_signed(
        client, "/twilio/sms", inbound_sms("book 10 cases of Parle-G for Sharma")
    ).is_success
    drain(client)
    replies = fake.to(REP_PHONE)
    assert len(replies) == before + 1
    assert replies[-1].rstrip().endswith("Reply YES or NO.")


def _crash_on_next_send(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the next reply fail as if the process died while sending it."""
    crashed: list[str] = []
    send = TwilioMessagingChannel.send_reply

    async def crash_once(self: TwilioMessagingChannel, recipient: str, reply: Any) -> None:
        if not crashed:
            crashed.append(reply.text)
            raise Crash("the process died before the reply went out")
        await send(self, recipient, reply)

    monkeypatch.setattr(TwilioMessagingChannel, "send_reply", crash_once)
    return crashed


def test_confirmation_redelivered_after_a_crash_places_one_order_and_confirms_once(
    start_app: Callable[[], TestClient],
    fake: FakeTwilio,
    shop_db: tuple[str, Engine, Shop],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _url, engine, shop = shop_db
    first = start_app()
    _draft(first, fake)
    orders = placed_orders(engine, shop.sharma)
    sent = len(fake.to(REP_PHONE))

    crashed = _crash_on_next_send(monkeypatch)
    yes = inbound_sms("YES")
    assert post_signed(first, "/twilio/sms", yes).status_code == 200
    drain(first)
    assert crashed and "placed" in crashed[0].lower()
    assert placed_orders(engine, shop.sharma) == orders + 1  # committed before the send
    assert len(fake.to(REP_PHONE)) == sent  # but nothing reached the person

    restarted = start_app()
    for _ in range(3):  # Twilio (or the queue) delivers the message again, more than once
        assert post_signed(restarted, "/twilio/sms", yes).status_code == 200
        drain(restarted)
    replies = fake.to(REP_PHONE)
    assert len(replies) == sent + 1, replies
    assert "placed" in replies[-1].lower()
    assert replies[-1].split("\n")[0] == crashed[0].split("\n")[0]
    assert placed_orders(engine, shop.sharma) == orders + 1
    row = _row(engine, dict(yes)["MessageSid"])
    assert row.reply is not None and row.reply["delivery"]["state"] == "sent"


def test_a_process_killed_while_sending_resends_once_the_send_is_overdue(
    start_app: Callable[[], TestClient], fake: FakeTwilio, shop_db: tuple[str, Engine, Shop]
) -> None:
    _url, engine, _shop = shop_db
    client = start_app()
    question = inbound_sms("how much does Sharma General Store owe?")
    message_id = dict(question)["MessageSid"]
    assert post_signed(client, "/twilio/sms", question).status_code == 200
    drain(client)
    [answer] = fake.to(REP_PHONE)

    # What a process killed during the send leaves: the turn done, its send begun long ago.
    def begun(seconds_ago: float) -> None:
        at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)
        with Session(engine) as session:
            row = session.scalars(
                select(ConversationTurn).where(ConversationTurn.message_id == message_id)
            ).one()
            row.reply = {
                **(row.reply or {}),
                "delivery": {"state": "sending", "at": at.isoformat()},
            }
            session.commit()

    begun(5)  # another process may still be sending it: nothing is sent twice
    assert post_signed(client, "/twilio/sms", question).status_code == 200
    drain(client)
    assert fake.to(REP_PHONE) == [answer]

    begun(SENDING_LEASE_SECONDS + 60)
    assert post_signed(client, "/twilio/sms", question).status_code == 200
    drain(client)
    assert fake.to(REP_PHONE) == [answer, answer]
    assert _row(engine, message_id).reply["delivery"]["state"] == "sent"  # type: ignore[index]


def test_a_turn_whose_process_died_before_it_finished_runs_on_redelivery(
    start_app: Callable[[], TestClient], fake: FakeTwilio, shop_db: tuple[str, Engine, Shop]
) -> None:
    _url, engine, _shop = shop_db
    question = inbound_sms("how much does Sharma General Store owe?")
    message_id = dict(question)["MessageSid"]
    # What a process that died mid-turn leaves: the message id claimed, nothing answered.
    with Session(engine) as session:
        session.add(
            ConversationTurn(
                turn_id=uuid.uuid4(),
                channel="sms",
                sender=REP_PHONE,
                message_id=message_id,
                text="how much does Sharma General Store owe?",
            )
        )
        session.commit()
    client = start_app()
    assert post_signed(client, "/twilio/sms", question).status_code == 200
    drain(client)
    assert fake.to(REP_PHONE) == []  # the claim may belong to a turn still running

    with Session(engine) as session:
        session.execute(
            update(ConversationTurn)
            .where(ConversationTurn.message_id == message_id)
            .values(
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=CLAIM_LEASE_SECONDS + 60)
            )
        )
        session.commit()
    for _ in range(2):
        assert post_signed(client, "/twilio/sms", question).status_code == 200
        drain(client)
    [reply] = fake.to(REP_PHONE)
    assert "Sharma General Store" in reply
    row = _row(engine, message_id)
    assert row.answer == reply and row.user_id is not None


def test_the_audit_row_says_sending_before_the_send_starts(
    start_app: Callable[[], TestClient],
    fake: FakeTwilio,
    shop_db: tuple[str, Engine, Shop],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process that dies after the turn committed but before the send leaves a reply
    marked as being sent (with the turn's own commit), so a late redelivery sends it."""
    _url, engine, _shop = shop_db
    seen: list[dict[str, Any] | None] = []
    send = TwilioMessagingChannel.send_reply
    question = inbound_sms("how much does Sharma General Store owe?")
    message_id = dict(question)["MessageSid"]

    async def look_first(self: TwilioMessagingChannel, recipient: str, reply: Any) -> None:
        seen.append(_row(engine, message_id).reply)
        raise Crash("the process died before the send began")

    monkeypatch.setattr(TwilioMessagingChannel, "send_reply", look_first)
    client = start_app()
    assert post_signed(client, "/twilio/sms", question).status_code == 200
    drain(client)
    [before_send] = seen
    assert before_send is not None and before_send["delivery"]["state"] == "sending"
    assert _row(engine, message_id).reply["delivery"]["state"] == "failed"  # type: ignore[index]

    monkeypatch.setattr(TwilioMessagingChannel, "send_reply", send)
    assert post_signed(client, "/twilio/sms", question).status_code == 200
    drain(client)
    [reply] = fake.to(REP_PHONE)
    assert "Sharma General Store" in reply
    assert _row(engine, message_id).reply["delivery"]["state"] == "sent"  # type: ignore[index]
