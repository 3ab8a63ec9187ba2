"""One assistant turn, from an `InboundMessage` to a `Reply`.

Contract of `Assistant.handle(message)`:

1. Deduplicate: a message whose (channel, message id) was seen before is not processed again;
   the earlier answer is returned with `duplicate=True` (a channel must not send it twice).
   A claim whose turn never finished (it lost the database, or its process died) is taken
   over by the next delivery of the message (`claim_turn`).
2. Identify the user (authenticated id, e-mail, phone number or Telegram id). An unknown
   sender gets only an explanation of how to link their account: never any data.
3. Load the session, plan, and run the planned tool calls with the user's permissions (every
   tool enforces the data scope itself). At most `max_steps` tool calls run in one turn
   (`TooManySteps` otherwise).
4. Check that every number in the reply appears in a tool result of this turn (or in the
   user's own message). A reply that fails the check is never sent: the turn answers with
   a plain statement that it could not produce a reliable answer.
5. Write the audit row (`conversation_turns`) and save the session.

A database outage gives a clear "temporarily unavailable" reply (intent `unavailable`)
instead of an exception; webhook channels keep such a turn and try it again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, overload

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import DBAPIError, NoResultFound, OperationalError
from sqlalchemy.orm import Session

from assistant.grounding import UngroundedNumber, check_grounded
from assistant.memory import MemorySessionStore, SessionState, SessionStore
from assistant.messages import InboundMessage, Reply
from assistant.ratelimit import RATE_LIMITED_REPLY, RateLimiter
from tools.context import Actor, ToolContext
from tools.db import DirectStatement, is_connection_error
from tools.models import ConversationTurn, User
from tools.observability import TURN_SECONDS, TURNS, UNAVAILABLE_REPLIES, span, turn_scope
from tools.registry import ToolResult, run_tool

log = logging.getLogger(__name__)

DEFAULT_MAX_STEPS = 6
# Seconds after which an unanswered claim of a message id counts as abandoned (its process
# died): longer than any turn may run, a queued turn's job timeout included.
CLAIM_LEASE_SECONDS = 600


class TooManySteps(RuntimeError):
    """A planner tried to run more tool calls in one turn than allowed."""


ToolRunner = Callable[[str, dict[str, Any]], ToolResult]


@dataclass
class PlannerOutcome:
    """What a planner produced for one turn."""

    reply: Reply
    intent: str | None = None
    confidence: float | None = None


class Planner(Protocol):
    """Turns a message into tool calls (through `run`) and a reply."""

    name: str

    def respond(
        self,
        ctx: ToolContext,
        text: str,
        state: SessionState,
        run: ToolRunner,
        *,
        button: str | None = None,
    ) -> PlannerOutcome: ...


@dataclass
class TurnResult:
    """The outcome of a turn, as `mangalm ask --json` and the channels report it."""

    turn_id: str
    reply: Reply
    intent: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    duplicate: bool = False
    user_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.reply.as_text(),
            "intent": self.intent,
            "tool_calls": self.tool_calls,
            "citations": [c.model_dump() for c in self.reply.citations],
            "latency_ms": round(self.latency_ms, 1),
            "reply": self.reply.model_dump(mode="json"),
            "turn_id": self.turn_id,
            "duplicate": self.duplicate,
        }


UNKNOWN_SENDER = (
    "Hello! This number is not linked to a Mangalm account yet. Sign in to the web app, open "
    "'Link a phone', and send the code shown there to this chat."
)
UNAVAILABLE = "Sorry, the sales database is temporarily unavailable. Please try again in a minute."
UNRELIABLE = (
    "Sorry, I could not put together a reliable answer to that. Please rephrase, or ask about "
    "one store, product or period at a time."
)


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


SenderKind = Literal["id", "telegram", "phone", "email"]


def sender_key(message: InboundMessage) -> tuple[SenderKind, int | str] | None:
    """How `message`'s sender is found among the users (authenticated id, Telegram id, the
    last ten digits of a phone number, or e-mail, per channel) and the value to look for;
    None when the sender cannot be anyone."""
    if message.user_id is not None:
        return "id", message.user_id
    sender = message.sender.strip()
    if message.channel == "telegram":
        if not sender.lstrip("-").isdigit():
            return None
        return "telegram", int(sender)
    if message.channel in ("whatsapp", "sms", "voice"):
        digits = _digits(sender.removeprefix("whatsapp:"))[-10:]
        if len(digits) < 7:
            return None
        return "phone", digits
    return "email", sender.lower()


# The statements of a turn's bookkeeping are built once, with bound parameters: SQLAlchemy
# then reuses their compiled form without rebuilding them (or their cache keys) on each turn.
_SENDER_CONDITIONS: dict[SenderKind, ColumnElement[bool]] = {
    "id": User.id == bindparam("sender_key", type_=Integer()),
    "telegram": User.telegram_id == bindparam("sender_key", type_=BigInteger()),
    "phone": User.phone_key == bindparam("sender_key", type_=String()),
    "email": User.email == bindparam("sender_key", type_=String()),
}
_IDENTIFY = {
    kind: select(User).where(User.is_active.is_(True), condition).limit(1)
    for kind, condition in _SENDER_CONDITIONS.items()
}
_ACTOR_COLUMNS = (User.id, User.email, User.name, User.role, User.manager_id)
_CLAIM = (
    insert(ConversationTurn)
    .values(
        turn_id=bindparam("turn_id", type_=ConversationTurn.turn_id.type),
        channel=bindparam("channel", type_=String()),
        sender=bindparam("sender", type_=String()),
        message_id=bindparam("message_id", type_=String()),
        text=bindparam("text", type_=Text()),
    )
    .on_conflict_do_nothing(constraint="uq_conversation_turns_channel_message")
    .returning(ConversationTurn.id)
)


def _claim_identifying(kind: SenderKind) -> Select[Any]:
    """The claim and the sender's actor columns in one statement: a data-modifying WITH runs
    to completion whatever the outer query reads, and the outer join keeps the claim's row
    when no user matches.

    The claimed row names its sender's user from the start: the audit row's later update
    then leaves `user_id` as it is, so it neither checks the user's row again (the foreign
    key's check locks it, and turns of one rep in parallel contended for that lock) nor
    touches the index on it."""
    sender = (
        select(*_ACTOR_COLUMNS)
        .where(User.is_active.is_(True), _SENDER_CONDITIONS[kind])
        .limit(1)
        .cte("sender")
    )
    claim = _CLAIM.values(user_id=select(sender.c.id).scalar_subquery()).cte("claim")
    claimed = select(claim.c.id).scalar_subquery().label("claimed")
    return (
        select(claimed, *sender.c)
        .select_from(select(literal(1).label("one")).subquery("one"))
        .outerjoin(sender, true())
    )


_CLAIM_IDENTIFYING = {
    kind: DirectStatement(_claim_identifying(kind)) for kind in _SENDER_CONDITIONS
}
_CLAIM_DIRECT = DirectStatement(_CLAIM)


def identify(session: Session, message: InboundMessage) -> User | None:
    """The active user who sent `message`, or None."""
    key = sender_key(message)
    if key is None:
        return None
    return session.scalars(_IDENTIFY[key[0]], {"sender_key": key[1]}).first()


class Assistant:
    """The turn loop (see the module docstring)."""

    def __init__(
        self,
        *,
        engine: Engine,
        planner: Planner,
        sessions: SessionStore | None = None,
        today: dt.date | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.engine = engine
        self.planner = planner
        self.sessions = sessions or MemorySessionStore()
        self.today = today
        self.max_steps = max_steps
        self.limiter = limiter

    def handle(self, message: InboundMessage) -> TurnResult:
        started = time.perf_counter()
        turn_id = str(uuid.uuid4())
        with turn_scope(turn_id), span("turn", channel=message.channel):
            try:
                result = self._handle(message, turn_id, started)
            except (OperationalError, DBAPIError) as error:
                if not is_connection_error(error):
                    raise
                log.warning("database unavailable: %s", error.__class__.__name__)
                # The turn may have claimed its message id before the database went away: a
                # retry of the same message may take that claim over (nothing else was kept).
                _abandoned_claims.add(message, turn_id)
                UNAVAILABLE_REPLIES.labels("database").inc()
                result = TurnResult(
                    turn_id=turn_id,
                    reply=Reply(text=UNAVAILABLE, intent="unavailable"),
                    intent="unavailable",
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
        if not result.duplicate:
            TURNS.labels(message.channel, result.intent or "none").inc()
            TURN_SECONDS.labels(message.channel).observe(result.latency_ms / 1000)
        return result

    def _handle(self, message: InboundMessage, turn_id: str, started: float) -> TurnResult:
        # One connection for the whole turn, the claim (committed on its own) and the turn's
        # work: the pool checks a connection out, and pings it, once. The turn runs in
        # autocommit until it writes: its reads need no transaction (read tools take a
        # read-only one of their own), a write tool opens one (`tools.registry.call_tool`)
        # that commits with the audit row, and otherwise the audit row is one statement
        # committed on its own. Two round trips (BEGIN, COMMIT) fewer per turn.
        with (
            self._connection() as connection,
            Session(bind=connection, expire_on_commit=False) as session,
        ):
            if message.message_id:
                claimed, user = claim_turn(session, message, turn_id, identify_sender=True)
                if not claimed:
                    return self._duplicate(session, message, started)
            else:
                found = identify(session, message)
                user = Actor.from_user(found) if found is not None else None
            if user is None:
                reply = Reply(text=UNKNOWN_SENDER, intent="unknown_sender")
                self._audit(session, message, turn_id, None, reply, [], started)
                session.commit()
                return TurnResult(turn_id, reply, "unknown_sender", [], _ms(started))
            if self.limiter is not None and not self.limiter.allow(user.id, message.channel):
                reply = Reply(text=RATE_LIMITED_REPLY, intent="rate_limited")
                self._audit(session, message, turn_id, user.id, reply, [], started)
                session.commit()
                return TurnResult(turn_id, reply, "rate_limited", [], _ms(started), user_id=user.id)
            actor = user
            ctx = ToolContext(
                session=session,
                actor=actor,
                today=self.today or dt.date.today(),
                turn_id=turn_id,
                channel=message.channel,
            )
            key = f"{user.id}:{message.channel}"
            state = self.sessions.load(key)
            calls: list[ToolResult] = []

            def run(name: str, args: dict[str, Any]) -> ToolResult:
                if len(calls) >= self.max_steps:
                    raise TooManySteps(f"more than {self.max_steps} tool calls in one turn")
                result = run_tool(ctx, name, args)
                calls.append(result)
                if not result.ok:
                    log.info("turn %s: tool %s answered %s", turn_id, name, result.error)
                return result

            try:
                outcome = self.planner.respond(
                    ctx, message.text, state, run, button=message.button_payload
                )
            except TooManySteps as error:
                log.error("turn %s: %s", turn_id, error)
                outcome = PlannerOutcome(Reply(text=UNRELIABLE), intent=state.last_intent)
            reply = outcome.reply
            try:
                check_grounded(
                    _reply_text(reply),
                    [c.result for c in calls if c.ok] + [c.error for c in calls],
                    message.text,
                )
            except UngroundedNumber as error:
                log.error("turn %s: reply rejected by the number check: %s", turn_id, error)
                reply = Reply(text=UNRELIABLE, intent=outcome.intent)
            state.last_intent = outcome.intent
            state.remember_turn(message.text, reply.text)
            tool_calls = [c.to_dict() for c in calls]
            self._audit(
                session,
                message,
                turn_id,
                user.id,
                reply,
                tool_calls,
                started,
                intent=outcome.intent,
            )
            session.commit()
            self.sessions.save(key, state)
            return TurnResult(
                turn_id, reply, outcome.intent, tool_calls, _ms(started), user_id=user.id
            )

    def _connection(self) -> contextlib.AbstractContextManager[Connection]:
        # `engine` may be a connection in a transaction of the caller's (the evaluation runs
        # turns inside one and rolls them back): turns then run on it, inside that transaction.
        if isinstance(self.engine, Connection):
            return contextlib.nullcontext(self.engine)
        # (The pool sets the connection's default isolation level again when it comes back.)
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _duplicate(self, session: Session, message: InboundMessage, started: float) -> TurnResult:
        row = session.scalars(
            select(ConversationTurn).where(
                ConversationTurn.channel == message.channel,
                ConversationTurn.message_id == message.message_id,
            )
        ).one()
        # The structured reply (buttons included) when it was kept; else its plain text.
        if row.reply is not None:
            reply = Reply.model_validate(row.reply)
        else:
            reply = Reply(text=row.answer or "", intent=row.intent)
        return TurnResult(
            str(row.turn_id),
            reply,
            row.intent,
            row.tool_calls or [],
            _ms(started),
            duplicate=True,
            user_id=row.user_id,
        )

    def _audit(
        self,
        session: Session,
        message: InboundMessage,
        turn_id: str,
        user_id: int | None,
        reply: Reply,
        tool_calls: list[dict[str, Any]],
        started: float,
        *,
        intent: str | None = None,
    ) -> None:
        values = {
            "user_id": user_id,
            "intent": intent or reply.intent,
            "tool_calls": tool_calls,
            "answer": reply.as_text(),
            "reply": reply.model_dump(mode="json"),
            "button_payload": message.button_payload,
            "latency_ms": _ms(started),
        }
        write_turn(session, message, turn_id, values)


class _AbandonedClaims:
    """Turn ids of this process that may have claimed a message id before losing the
    database (each try of a kept turn adds one)."""

    def __init__(self, limit: int = 10_000, per_message: int = 50) -> None:
        self.limit = limit
        self.per_message = per_message
        self._ids: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()

    def add(self, message: InboundMessage, turn_id: str) -> None:
        if not message.message_id:
            return
        with self._lock:
            ids = self._ids.setdefault((message.channel, message.message_id), [])
            ids.append(turn_id)
            del ids[: -self.per_message]
            while len(self._ids) > self.limit:
                self._ids.pop(next(iter(self._ids)))

    def get(self, message: InboundMessage) -> list[str]:
        with self._lock:
            return list(self._ids.get((message.channel, message.message_id or ""), []))

    def discard(self, message: InboundMessage) -> None:
        with self._lock:
            self._ids.pop((message.channel, message.message_id or ""), None)


_abandoned_claims = _AbandonedClaims()


@overload
def claim_turn(session: Session, message: InboundMessage, turn_id: str) -> bool: ...


@overload
def claim_turn(
    session: Session, message: InboundMessage, turn_id: str, *, identify_sender: Literal[True]
) -> tuple[bool, Actor | None]: ...


def claim_turn(
    session: Session, message: InboundMessage, turn_id: str, *, identify_sender: bool = False
) -> bool | tuple[bool, Actor | None]:
    """Claim `message`'s (channel, message id) for `turn_id` and commit; False when another
    turn has it (a redelivery: the caller answers with the earlier turn).

    An unanswered claim is taken over when its turn is known to have died with the database
    (in this process) or is older than `CLAIM_LEASE_SECONDS` (a crashed process): only a
    finished turn's audit row carries an answer, and a turn's writes commit with that row, so
    nothing of the dead turn was kept.

    The claim is one statement committed on its own (autocommit: no BEGIN and COMMIT round
    trips) on the session's connection; the session's next transaction is at the default
    isolation level again. With `identify_sender` the same statement reads the sender
    (`identify`): the result is `(claimed, actor)`, the actor None for an unknown sender.
    """
    bind = session.get_bind()
    # On its own unless the session runs inside a transaction of the caller's; a connection
    # already in autocommit (a turn's) stays so.
    autocommit = not (isinstance(bind, Connection) and bind.in_transaction())
    was_autocommit = (
        isinstance(bind, Connection)
        and bind.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    )
    connection = session.connection(
        execution_options={"isolation_level": "AUTOCOMMIT"} if autocommit else None
    )
    params = {
        "turn_id": turn_id,
        "channel": message.channel,
        "sender": message.sender[:100],
        "message_id": message.message_id,
        "text": message.text,
    }
    user: Actor | None = None
    key = sender_key(message) if identify_sender else None
    if key is None:
        rows, _ = _CLAIM_DIRECT.run(connection, params)
        claimed = rows[0][0] if rows else None
    else:
        rows, _ = _CLAIM_IDENTIFYING[key[0]].run(connection, {**params, "sender_key": key[1]})
        # (the claim's id, then the sender's `_ACTOR_COLUMNS`)
        claimed, user_id, email, name, role, manager_id = rows[0]
        if user_id is not None:
            user = Actor(id=user_id, email=email, name=name, role=role, manager_id=manager_id)
    if claimed is None:
        dead = _abandoned_claims.get(message)
        stale = ConversationTurn.created_at < func.now() - dt.timedelta(seconds=CLAIM_LEASE_SECONDS)
        claimed = connection.execute(
            update(ConversationTurn)
            .where(
                ConversationTurn.channel == message.channel,
                ConversationTurn.message_id == message.message_id,
                ConversationTurn.answer.is_(None),
                or_(stale, ConversationTurn.turn_id.in_([uuid.UUID(i) for i in dead])),
            )
            .values(turn_id=uuid.UUID(turn_id), created_at=func.now())
            .returning(ConversationTurn.id)
        ).scalar()
        if claimed is not None:
            log.warning("message %s: took over the claim of an unfinished turn", message.message_id)
    session.commit()
    if autocommit and not was_autocommit and not connection.closed:
        # (Bound to an engine, the connection went back to the pool.)
        connection.execution_options(isolation_level=connection.default_isolation_level)
    if claimed is None:
        return (False, None) if identify_sender else False
    _abandoned_claims.discard(message)
    return (True, user) if identify_sender else True


AUDIT_FIELDS = (
    "user_id",
    "intent",
    "tool_calls",
    "answer",
    "reply",
    "button_payload",
    "latency_ms",
)
"""What a turn's audit row records besides the message (`write_turn`'s `values`)."""

_AUDIT_VALUES: dict[str, Any] = {
    "user_id": bindparam("user_id", type_=Integer()),
    "intent": bindparam("intent", type_=String()),
    "tool_calls": bindparam("tool_calls", type_=JSONB(none_as_null=True)),
    "answer": bindparam("answer", type_=Text()),
    "reply": bindparam("reply", type_=JSONB(none_as_null=True)),
    "button_payload": bindparam("button_payload", type_=String()),
    "latency_ms": bindparam("latency_ms", type_=Float()),
}
_AUDIT = (
    update(ConversationTurn)
    .where(
        ConversationTurn.channel == bindparam("claimed_channel", type_=String()),
        ConversationTurn.message_id == bindparam("claimed_message_id", type_=String()),
    )
    .values(**_AUDIT_VALUES)
    .execution_options(synchronize_session=False)
)
# The reply of a tracked turn is stored as being sent (see `write_turn`).
_AUDIT_SENDING = _AUDIT.values(
    reply=_AUDIT_VALUES["reply"].op("||")(
        func.jsonb_build_object(
            "delivery", func.jsonb_build_object("state", "sending", "at", func.now())
        )
    )
)
_AUDIT_DIRECT = DirectStatement(_AUDIT)
_AUDIT_SENDING_DIRECT = DirectStatement(_AUDIT_SENDING)
_AUDIT_NEW = insert(ConversationTurn).values(
    turn_id=bindparam("turn_id", type_=ConversationTurn.turn_id.type),
    channel=bindparam("channel", type_=String()),
    sender=bindparam("sender", type_=String()),
    text=bindparam("text", type_=Text()),
    **_AUDIT_VALUES,
)


def write_turn(
    session: Session, message: InboundMessage, turn_id: str, values: dict[str, Any]
) -> None:
    """Fill in the audit row of a turn: the row claimed for its message id, or a new one
    (plain statements: the row is never loaded into the session). `values` holds some of
    `AUDIT_FIELDS` (the others are left empty).

    For a webhook turn whose delivery is tracked (`InboundMessage.delivery_tracked`), the
    stored reply already says it is being sent, in the same statement: a crash between this
    commit and the send leaves a reply that a redelivery sends (`channels.delivery`).
    """
    unknown = set(values) - set(AUDIT_FIELDS)
    if unknown:
        raise ValueError(f"not audit fields: {', '.join(sorted(unknown))}")
    params = {name: values.get(name) for name in AUDIT_FIELDS}
    connection = session.connection()
    if message.message_id:
        sending = message.delivery_tracked and values.get("reply") is not None
        _, updated = (_AUDIT_SENDING_DIRECT if sending else _AUDIT_DIRECT).run(
            connection,
            {
                **params,
                "claimed_channel": message.channel,
                "claimed_message_id": message.message_id,
            },
        )
        if updated != 1:
            raise NoResultFound(f"no audit row claimed for message {message.message_id}")
    else:
        connection.execute(
            _AUDIT_NEW,
            {
                **params,
                "turn_id": turn_id,
                "channel": message.channel,
                "sender": message.sender[:100],
                "text": message.text,
            },
        )


def _reply_text(reply: Reply) -> str:
    parts = [reply.text]
    if reply.table:
        parts.extend(" ".join(str(cell) for cell in row) for row in reply.table.rows)
    return "\n".join(parts)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
