"""The turn loop with a scripted planner: identity, dedup, number check, step limit, audit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from assistant.memory import MemorySessionStore, SessionState
from assistant.messages import InboundMessage, Reply
from assistant.turn import UNKNOWN_SENDER, UNRELIABLE, Assistant, PlannerOutcome, ToolRunner
from tools.context import ToolContext
from tools.models import ConversationTurn, User
from tools.registry import tool


class Figure(BaseModel):
    value: float


@tool(name="test_turn_figure", category="test")
def _figure(ctx: ToolContext, *, value: float) -> Figure:
    """Return a figure.

    Args:
        value: The figure.
    """
    return Figure(value=value)


class Scripted:
    """A planner that follows a script: call these tools, then say this."""

    name = "scripted"

    def __init__(self, calls: list[dict[str, Any]], answer: Callable[[list[Any]], str]) -> None:
        self.calls = calls
        self.answer = answer
        self.invocations = 0
        self.lock = threading.Lock()

    def respond(
        self,
        ctx: ToolContext,
        text: str,
        state: SessionState,
        run: ToolRunner,
        *,
        button: str | None = None,
    ) -> PlannerOutcome:
        with self.lock:
            self.invocations += 1
        results = [run("test_turn_figure", args).result for args in self.calls]
        state.store = {"id": 1, "name": "remembered"}
        return PlannerOutcome(Reply(text=self.answer(results)), intent="scripted", confidence=1)


@pytest.fixture()
def engine(create_database: Callable[..., str]):
    engine = create_engine(create_database(migrate=True))
    with Session(engine) as session:
        session.add(
            User(
                email="rep@example.com",
                name="Rep",
                role="rep",
                phone="+91 98765 43210",
                telegram_id=5550001,
            )
        )
        session.commit()
    yield engine
    engine.dispose()


def _ask(assistant: Assistant, **fields: Any):
    values = {"channel": "cli", "sender": "rep@example.com", "text": "how much?"} | fields
    return assistant.handle(InboundMessage(**values))


def test_answer_from_tool_result_is_audited(engine) -> None:
    planner = Scripted([{"value": 18400}], lambda r: f"Rs {r[0]['value']:,.0f} outstanding.")
    assistant = Assistant(engine=engine, planner=planner)
    result = _ask(assistant)
    assert result.reply.text == "Rs 18,400 outstanding."
    assert result.tool_calls == [
        {"name": "test_turn_figure", "args": {"value": 18400}, "result": {"value": 18400.0}}
    ]
    with Session(engine) as session:
        row = session.query(ConversationTurn).one()
        assert row.intent == "scripted" and row.answer == "Rs 18,400 outstanding."
        assert row.tool_calls[0]["name"] == "test_turn_figure"


def test_invented_number_is_never_sent(engine) -> None:
    planner = Scripted([{"value": 18400}], lambda r: "Rs 19,000 outstanding.")
    result = _ask(Assistant(engine=engine, planner=planner))
    assert result.reply.text == UNRELIABLE


def test_step_limit(engine) -> None:
    planner = Scripted([{"value": n} for n in range(10)], lambda r: "done")
    result = _ask(Assistant(engine=engine, planner=planner, max_steps=3))
    assert result.reply.text == UNRELIABLE
    assert len(result.tool_calls) == 3


# A webhook message (with the provider's id) is claimed and its sender read in one statement;
# a message without an id is only identified: both find the same people.
WITH_AND_WITHOUT_ID = pytest.mark.parametrize("message_id", [None, "SM-sender-1"])


@WITH_AND_WITHOUT_ID
@pytest.mark.parametrize(
    ("channel", "sender"),
    [
        ("whatsapp", "whatsapp:+919876543210"),
        ("sms", "+919876543210"),
        ("telegram", "5550001"),
        ("cli", "Rep@Example.com"),
    ],
)
def test_senders_are_matched_by_phone_or_telegram_id(
    engine, channel: str, sender: str, message_id: str | None
) -> None:
    planner = Scripted([], lambda r: "hello")
    result = _ask(
        Assistant(engine=engine, planner=planner),
        channel=channel,
        sender=sender,
        message_id=message_id,
    )
    assert result.reply.text == "hello" and result.user_id is not None


@WITH_AND_WITHOUT_ID
@pytest.mark.parametrize(
    ("channel", "sender"), [("sms", "+15550000000"), ("sms", "12345"), ("telegram", "@rep")]
)
def test_unknown_sender_gets_no_data(
    engine, channel: str, sender: str, message_id: str | None
) -> None:
    planner = Scripted([{"value": 1}], lambda r: "secret")
    result = _ask(
        Assistant(engine=engine, planner=planner),
        channel=channel,
        sender=sender,
        message_id=message_id,
    )
    assert result.reply.text == UNKNOWN_SENDER
    assert planner.invocations == 0
    with Session(engine) as session:
        row = session.query(ConversationTurn).one()
        assert row.user_id is None and row.answer == UNKNOWN_SENDER


@WITH_AND_WITHOUT_ID
def test_a_deactivated_user_is_an_unknown_sender(engine, message_id: str | None) -> None:
    with Session(engine) as session:
        session.query(User).update({User.is_active: False})
        session.commit()
    planner = Scripted([{"value": 1}], lambda r: "secret")
    result = _ask(
        Assistant(engine=engine, planner=planner),
        channel="sms",
        sender="+919876543210",
        message_id=message_id,
    )
    assert result.reply.text == UNKNOWN_SENDER and planner.invocations == 0


def test_redelivered_message_is_processed_once(engine) -> None:
    planner = Scripted([{"value": 5}], lambda r: f"{r[0]['value']:.0f} cases.")
    assistant = Assistant(engine=engine, planner=planner)
    results: list[Any] = []

    def deliver() -> None:
        results.append(_ask(assistant, channel="sms", sender="+919876543210", message_id="SM1"))

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert planner.invocations == 1
    assert sum(not r.duplicate for r in results) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM conversation_turns")).scalar() == 1


def test_session_is_kept_between_turns(engine) -> None:
    sessions = MemorySessionStore()
    assistant = Assistant(engine=engine, planner=Scripted([], lambda r: "ok"), sessions=sessions)
    result = _ask(assistant)
    state = sessions.load(f"{result.user_id}:cli")
    assert state.store == {"id": 1, "name": "remembered"}
    assert state.history[-1] == {"user": "how much?", "assistant": "ok"}


def test_rate_limit_answers_politely_and_skips_the_planner(engine) -> None:
    from assistant.ratelimit import RATE_LIMITED_REPLY, RateLimiter

    planner = Scripted([], lambda r: "ok")
    limiter = RateLimiter(per_user="2/minute", per_channel="100/minute")
    assistant = Assistant(engine=engine, planner=planner, limiter=limiter)
    replies = [_ask(assistant).reply.text for _ in range(3)]
    assert replies == ["ok", "ok", RATE_LIMITED_REPLY]
    assert planner.invocations == 2


def test_rate_limits_survive_a_redis_outage(engine) -> None:
    from assistant.ratelimit import RateLimiter

    limiter = RateLimiter(
        per_user="1/minute", per_channel="100/minute", redis_url="redis://127.0.0.1:1/0"
    )
    assistant = Assistant(engine=engine, planner=Scripted([], lambda r: "ok"), limiter=limiter)
    assert _ask(assistant).reply.text == "ok"
    assert _ask(assistant).reply.intent == "rate_limited"


def test_database_outage_gives_a_clear_reply() -> None:
    from assistant.turn import UNAVAILABLE

    dead = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    result = _ask(Assistant(engine=dead, planner=Scripted([], lambda r: "ok")))
    assert result.reply.text == UNAVAILABLE and result.intent == "unavailable"


@pytest.mark.parametrize("ping_after", [5.0, 0.0], ids=["just-used", "idle"])
def test_a_turn_after_the_server_dropped_the_pooled_connection_is_answered(
    create_database: Callable[..., str], monkeypatch: pytest.MonkeyPatch, ping_after: float
) -> None:
    """A pooled connection the server closed (a restart, an administrator) is replaced when
    the pool hands it out, whether it was used a moment ago or sat idle: the person gets the
    answer, not "temporarily unavailable"."""
    import tools.db
    from tools.db import make_engine

    monkeypatch.setattr(tools.db, "PING_AFTER_SECONDS", ping_after)
    url = create_database(migrate=True)
    engine = make_engine(url, pool_size=1, max_overflow=0)
    admin = create_engine(url, poolclass=NullPool)
    try:
        with Session(engine) as session:
            session.add(User(email="rep@example.com", name="Rep", role="rep"))
            session.commit()
        assistant = Assistant(engine=engine, planner=Scripted([], lambda r: "ok"))
        assert _ask(assistant).reply.text == "ok"
        with engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(200):
                gone = not connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar()
                if gone:
                    break
                time.sleep(0.01)
        result = _ask(assistant, text="again?")
        assert result.reply.text == "ok" and result.intent == "scripted"
    finally:
        engine.dispose()
        admin.dispose()


def test_statements_stay_prepared_across_read_tools(create_database: Callable[..., str]) -> None:
    """Each read tool ends by rolling back its read-only savepoint: the statements the turns
    prepared on the connection stay prepared (reused, not prepared again every turn), and a
    savepoint rollback that fails is still an error."""
    from sqlalchemy.exc import DBAPIError

    from tools.db import make_engine

    url = create_database(migrate=True)
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with Session(engine) as session:
            session.add(User(email="rep@example.com", name="Rep", role="rep"))
            session.commit()
        assistant = Assistant(engine=engine, planner=Scripted([{"value": 7}], lambda r: "7"))

        def claim_statements() -> list[str]:
            # (Committed: a rolled-back transaction makes psycopg deallocate them.)
            with engine.begin() as connection:
                return list(
                    connection.execute(
                        text(
                            "SELECT name FROM pg_prepared_statements "
                            "WHERE statement LIKE '%claim AS%INSERT INTO conversation_turns%'"
                        )
                    ).scalars()
                )

        for i in range(8):
            assert _ask(assistant, message_id=f"SM-a{i}").reply.text == "7"
        prepared = claim_statements()
        assert len(prepared) == 1
        for i in range(8):
            assert _ask(assistant, message_id=f"SM-b{i}").reply.text == "7"
        assert claim_statements() == prepared
        with pytest.raises(DBAPIError, match="savepoint"), engine.begin() as connection:
            connection.exec_driver_sql("ROLLBACK TO SAVEPOINT never_made")
    finally:
        engine.dispose()


@tool(name="test_turn_note", category="test", writes=True)
def _note(ctx: ToolContext, *, note: str) -> int:
    """Keep a note (a write tool).

    Args:
        note: The note.
    """
    ctx.session.execute(text("INSERT INTO turn_notes (note) VALUES (:note)"), {"note": note})
    return 1


class WritesThenReads:
    """A planner that writes a note, reads a figure, then answers or fails."""

    name = "writes-then-reads"

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def respond(
        self,
        ctx: ToolContext,
        text: str,
        state: SessionState,
        run: ToolRunner,
        *,
        button: str | None = None,
    ) -> PlannerOutcome:
        assert run("test_turn_note", {"note": text}).ok
        assert run("test_turn_figure", {"value": 3}).ok
        if self.fail:
            raise RuntimeError("the planner failed after writing")
        return PlannerOutcome(Reply(text="Noted."), intent="note", confidence=1)


def test_a_turns_writes_commit_with_its_audit_row_or_not_at_all(engine) -> None:
    """A turn reads without a transaction until it writes; its writes then commit together
    with its audit row, and a turn that fails after writing keeps nothing."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE turn_notes (note text)"))
    answered = _ask(
        Assistant(engine=engine, planner=WritesThenReads(fail=False)),
        channel="sms",
        sender="+919876543210",
        message_id="SM-note-1",
        text="kept",
    )
    assert answered.reply.text == "Noted."
    with pytest.raises(RuntimeError):
        _ask(
            Assistant(engine=engine, planner=WritesThenReads(fail=True)),
            channel="sms",
            sender="+919876543210",
            message_id="SM-note-2",
            text="dropped",
        )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT note FROM turn_notes")).scalars().all() == ["kept"]
        audited = conn.execute(
            text(
                "SELECT t.message_id, t.answer, u.email FROM conversation_turns t "
                "LEFT JOIN users u ON u.id = t.user_id ORDER BY t.id"
            )
        ).all()
    # The failed turn's claim stays (unanswered, so a redelivery takes it over), and says
    # who sent the message.
    assert [tuple(row) for row in audited] == [
        ("SM-note-1", "Noted.", "rep@example.com"),
        ("SM-note-2", None, "rep@example.com"),
    ]
