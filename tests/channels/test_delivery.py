"""Recording that replies went out: every reply's "sent" is kept, several in one statement."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from assistant.messages import InboundMessage
from channels.delivery import Deliveries
from tools.models import ConversationTurn


@pytest.fixture(scope="module")
def engine(create_database: Callable[..., str]) -> Iterator[Engine]:
    made = create_engine(create_database(migrate=True))
    yield made
    made.dispose()


def _sending(engine: Engine, count: int) -> list[InboundMessage]:
    """`count` answered SMS turns whose replies are being sent."""
    messages = []
    with Session(engine) as session:
        for i in range(count):
            message = InboundMessage(
                channel="sms", sender="+919800000001", text=f"q{i}", message_id=uuid.uuid4().hex
            )
            session.add(
                ConversationTurn(
                    turn_id=uuid.uuid4(),
                    channel="sms",
                    sender=message.sender,
                    message_id=message.message_id,
                    text=message.text,
                    answer="ok",
                    reply={"text": "ok", "delivery": {"state": "sending", "at": "2026-01-01"}},
                )
            )
            messages.append(message)
        session.commit()
    return messages


def _states(engine: Engine, messages: list[InboundMessage]) -> list[str]:
    with Session(engine) as session:
        rows = session.scalars(
            select(ConversationTurn).where(
                ConversationTurn.message_id.in_([m.message_id for m in messages])
            )
        ).all()
    return [row.reply["delivery"]["state"] for row in rows]  # type: ignore[index]


def test_replies_sent_together_are_recorded_in_one_statement(engine: Engine) -> None:
    messages = _sending(engine, 6)
    deliveries = Deliveries(engine)

    async def send_all() -> list[bool]:
        return await asyncio.gather(*(deliveries.record_sent(m) for m in messages))

    assert asyncio.run(send_all()) == [True] * 6
    assert _states(engine, messages) == ["sent"] * 6
    # Each statement stamps its rows with its own transaction's time (`now()`): fewer times
    # than replies means replies were recorded together.
    with Session(engine) as session:
        stamps = session.scalars(
            select(ConversationTurn.reply["delivery"]["at"].astext.distinct()).where(
                ConversationTurn.message_id.in_([m.message_id for m in messages])
            )
        ).all()
    assert 1 <= len(stamps) < len(messages)


def test_one_reply_is_recorded_at_once_and_later_ones_too(engine: Engine) -> None:
    first, second = _sending(engine, 2)
    deliveries = Deliveries(engine)

    async def one_after_another() -> list[bool]:
        return [await deliveries.record_sent(first), await deliveries.record_sent(second)]

    assert asyncio.run(one_after_another()) == [True, True]
    # A later event loop (the next app start) records through the same object.
    (third,) = _sending(engine, 1)
    assert asyncio.run(deliveries.record_sent(third)) is True
    assert _states(engine, [first, second, third]) == ["sent"] * 3


def test_a_record_that_cannot_be_written_is_reported_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    deliveries = Deliveries(dead)
    messages = [
        InboundMessage(channel="sms", sender="+91980", text="q", message_id=f"SM{i}")
        for i in range(3)
    ]

    async def send_all() -> list[bool]:
        return await asyncio.gather(*(deliveries.record_sent(m) for m in messages))

    assert asyncio.run(send_all()) == [False] * 3
    assert "could not record" in caplog.text
    dead.dispose()
