"""Linking a chat identity (phone number, Telegram id) to a Mangalm account.

A signed-in user asks for a one-time code (`POST /api/link-code`): six digits, valid for
`LINK_CODE_MINUTES`, stored only as an HMAC keyed with `SECRET_KEY`. They send the code from
the chat ("link 123456", "/start 123456" or just "123456"); the sender's phone number or
Telegram id is attached to their account and the chat confirms it. Until then an unknown
sender gets only the linking explanation, never any data (the assistant's own rule).

Guessing is throttled: a sender gets `MAX_FAILURES_PER_SENDER` wrong codes per hour, and all
senders together `MAX_FAILURES_GLOBAL` per ten minutes, after which codes are not checked.

`redeem_in_chat` is what the turn handler (`channels.queue.ChannelHandler`) calls for a message
from an unknown sender that carries a code; it deduplicates on the provider's message id like
any turn, so a redelivered "link 123456" gets no second answer. A phone call keys the code in or
says it: `spoken_code` reads "one two three four five six", "123 456", "double five" or Hindi
digit words as six digits, and the voice channel redeems it through the same `redeem_code`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel
from sqlalchemy import Engine, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from assistant.messages import InboundMessage, Reply
from assistant.turn import TurnResult, identify, write_turn
from tools.models import ConversationTurn, LinkAttempt, LinkCode, User
from tools.settings import Settings

log = logging.getLogger(__name__)

LINK_CODE_MINUTES = 10
MAX_FAILURES_PER_SENDER = 5
SENDER_WINDOW = dt.timedelta(hours=1)
MAX_FAILURES_GLOBAL = 300
GLOBAL_WINDOW = dt.timedelta(minutes=10)
LINKABLE_CHANNELS = ("telegram", "whatsapp", "sms", "voice")

# "123456", "123 456", "link 123456", "/link 123456", "/start 123456" (a Telegram deep link).
CODE_PATTERN = re.compile(r"^\s*(?:/?(?:link|start)\b[\s:]*)?(\d{3})[\s-]?(\d{3})\s*$", re.I)

LINKED = (
    "Done: this {what} is now linked to {name}'s Mangalm account. Ask me anything, e.g. "
    "'which stores should I call today?'"
)
WRONG_CODE = (
    "That code is not valid. Open 'Link a phone' in the Mangalm web app and send the 6-digit "
    "code shown there."
)
USED_CODE = "That code has already been used. Ask the web app for a new one."
EXPIRED_CODE = (
    "That code has expired (codes last {minutes} minutes). Ask the web app for a new one."
)
TOO_MANY = "Too many wrong codes. Please wait an hour and try again with a new code."
TAKEN = "This {what} is already linked to another Mangalm account. Ask an administrator to move it."


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_code(text: str) -> str | None:
    """The six-digit code in a linking message, or None."""
    match = CODE_PATTERN.match(text or "")
    return match.group(1) + match.group(2) if match else None


# Digit words a caller says, in English and Hindi (romanised and Devanagari); "oh" is zero.
DIGIT_WORDS = {
    **dict.fromkeys(("zero", "oh", "o", "nought", "shunya", "shoonya", "sunya"), "0"),
    **dict.fromkeys(("शून्य",), "0"),
    **dict.fromkeys(("one", "ek", "एक"), "1"),
    **dict.fromkeys(("two", "दो"), "2"),
    **dict.fromkeys(("three", "teen", "तीन"), "3"),
    **dict.fromkeys(("four", "char", "chaar", "चार"), "4"),
    **dict.fromkeys(("five", "panch", "paanch", "पांच", "पाँच"), "5"),
    **dict.fromkeys(("six", "chhah", "chhe", "chhai", "chah", "छह", "छः", "छै", "छे"), "6"),
    **dict.fromkeys(("seven", "saat", "सात"), "7"),
    **dict.fromkeys(("eight", "aath", "आठ"), "8"),
    **dict.fromkeys(("nine", "nau", "nao", "नौ"), "9"),
}
# Words that sound like digits but are ordinary words too ("for", Hindi "do" and "sat"): read
# as digits only when the plain reading does not give six digits.
SOUNDALIKE_DIGITS = {
    "to": "2",
    "too": "2",
    "do": "2",
    "tin": "3",
    "for": "4",
    "fore": "4",
    "won": "1",
    "ate": "8",
    "sat": "7",
    "che": "6",
}
TEENS = {
    word: str(10 + n)
    for n, word in enumerate(
        "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
TENS = {
    word: str(n + 2)
    for n, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}
REPEATS = {"double": 2, "triple": 3}
# "one hundred and five" is a number, not a digit sequence: too easy to misread, so refused.
MAGNITUDES = {"hundred", "thousand", "lakh", "lac", "million", "sau", "hazaar", "hazar"}
_TOKEN_SPLIT = re.compile(r"[\s.,;:!?'\"()\[\]/+*#\-\u2013\u2014\u0964\u0965]+")


def parse_keyed_code(digits: str) -> str | None:
    """The code keyed in on a phone's keypad (Twilio's `Digits`), or None unless six digits."""
    digits = (digits or "").strip()
    return digits if re.fullmatch(r"[0-9]{6}", digits) else None


def _read_digits(tokens: list[str], words: dict[str, str]) -> str | None:
    """The digits spoken in `tokens`, or None when something reads as a number, not digits."""
    out: list[str] = []
    repeat = 1
    tens: str | None = None  # "thirty" waiting for a unit: "thirty four" is 34
    for token in tokens:
        if token.isdecimal():
            value = "".join(str(unicodedata.digit(ch)) for ch in token)
        elif token in words:
            value = words[token]
        elif token in TEENS:
            value = TEENS[token]
        elif token in TENS:
            if tens is not None or repeat != 1:
                return None
            tens = TENS[token]
            continue
        elif token in REPEATS:
            if tens is not None or repeat != 1:
                return None
            repeat = REPEATS[token]
            continue
        elif token in MAGNITUDES or any(ch.isdigit() for ch in token):
            return None
        else:
            continue  # "my", "code", "is", "link", "please"
        if tens is not None:
            if len(value) != 1 or value == "0":
                return None
            value, tens = tens + value, None
        if repeat != 1:
            if len(value) != 1:
                return None
            value, repeat = value * repeat, 1
        out.append(value)
    if repeat != 1:
        return None
    if tens is not None:
        out.append(tens + "0")
    return "".join(out)


def spoken_code(speech: str) -> str | None:
    """The six-digit code in what a caller said, or None.

    Reads digits ("123 456", "1 2 3 4 5 6"), digit words ("one two three four five six", "oh"
    for zero, "double five"), pairs ("twelve thirty four fifty six") and Hindi digit words ("ek
    do teen", "एक दो तीन"); any other words around them are ignored.
    """
    tokens = [t for t in _TOKEN_SPLIT.split((speech or "").lower()) if t]
    for words in (DIGIT_WORDS, DIGIT_WORDS | SOUNDALIKE_DIGITS):
        digits = _read_digits(tokens, words)
        if digits is not None and len(digits) == 6:
            return digits
    return None


def hash_code(code: str, settings: Settings) -> str:
    """HMAC-SHA256 of the code keyed with SECRET_KEY (six digits are too few to hash bare)."""
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"link-code:{code}".encode(), hashlib.sha256).hexdigest()


# --- codes for signed-in users -----------------------------------------------------------------


class LinkCodeRead(BaseModel):
    """A new link code: shown once, to be sent from the chat app."""

    code: str
    expires_at: dt.datetime
    instructions: str


def create_link_code(
    session: Session, user: User, settings: Settings, *, now: dt.datetime | None = None
) -> LinkCodeRead:
    """A new code for `user` (replacing their earlier unused codes); the caller commits."""
    issued = now or _now()
    expires = issued + dt.timedelta(minutes=LINK_CODE_MINUTES)
    # Expired unused codes are worthless; removing them keeps the live-hash index free.
    session.execute(
        delete(LinkCode).where(
            LinkCode.used_at.is_(None),
            or_(LinkCode.user_id == user.id, LinkCode.expires_at <= issued),
        )
    )
    for _ in range(10):
        code = f"{secrets.randbelow(1_000_000):06d}"
        try:
            with session.begin_nested():
                session.add(
                    LinkCode(
                        user_id=user.id,
                        code_hash=hash_code(code, settings),
                        created_at=issued,
                        expires_at=expires,
                    )
                )
        except IntegrityError:
            continue  # another user holds this code right now: draw again
        return LinkCodeRead(
            code=code,
            expires_at=expires,
            instructions=(
                f"Send 'link {code}' to the Mangalm bot on Telegram or WhatsApp (or by SMS) "
                f"within {LINK_CODE_MINUTES} minutes."
            ),
        )
    raise RuntimeError("could not draw an unused link code")


# --- redeeming a code from a chat --------------------------------------------------------------


@dataclass(frozen=True)
class LinkOutcome:
    """What redeeming a code did; `text` is the answer for the chat."""

    status: Literal["linked", "wrong", "used", "expired", "throttled", "taken"]
    text: str
    user_id: int | None = None
    user_name: str | None = None


def _describe(channel: str) -> str:
    return "Telegram account" if channel == "telegram" else "number"


def _normalise_address(channel: str, address: str) -> str:
    address = address.strip().removeprefix("whatsapp:")
    if channel == "telegram":
        return address
    digits = re.sub(r"\D", "", address)
    return "+" + digits if digits else address


def _throttled(session: Session, channel: str, address: str, now: dt.datetime) -> bool:
    mine = session.scalar(
        select(func.count())
        .select_from(LinkAttempt)
        .where(
            LinkAttempt.channel == channel,
            LinkAttempt.address == address,
            LinkAttempt.succeeded.is_(False),
            LinkAttempt.created_at > now - SENDER_WINDOW,
        )
    )
    if (mine or 0) >= MAX_FAILURES_PER_SENDER:
        return True
    everyone = session.scalar(
        select(func.count())
        .select_from(LinkAttempt)
        .where(LinkAttempt.succeeded.is_(False), LinkAttempt.created_at > now - GLOBAL_WINDOW)
    )
    return (everyone or 0) >= MAX_FAILURES_GLOBAL


def redeem_code(
    session: Session,
    settings: Settings,
    *,
    channel: str,
    address: str,
    code: str,
    now: dt.datetime | None = None,
) -> LinkOutcome:
    """Attach `address` on `channel` to the user the code belongs to; the caller commits."""
    now = now or _now()
    address = _normalise_address(channel, address)
    what = _describe(channel)
    if _throttled(session, channel, address, now):
        log.warning("link code attempts throttled for a %s sender", channel)
        return LinkOutcome("throttled", TOO_MANY)
    row = session.scalars(
        select(LinkCode)
        .where(LinkCode.code_hash == hash_code(code, settings))
        .order_by(LinkCode.used_at.is_(None).desc(), LinkCode.created_at.desc())
        .limit(1)
        .with_for_update()
    ).first()
    outcome: LinkOutcome
    if row is None:
        outcome = LinkOutcome("wrong", WRONG_CODE)
    elif row.used_at is not None:
        outcome = LinkOutcome("used", USED_CODE)
    elif row.expires_at <= now:
        outcome = LinkOutcome("expired", EXPIRED_CODE.format(minutes=LINK_CODE_MINUTES))
    else:
        user = session.get(User, row.user_id, with_for_update=True)
        if user is None or not user.is_active:
            outcome = LinkOutcome("wrong", WRONG_CODE)
        else:
            try:
                with session.begin_nested():
                    if channel == "telegram":
                        user.telegram_id = int(address)
                    else:
                        user.phone = address
                    row.used_at = now
                    row.used_channel = channel
                    row.used_address = address
                    session.flush()
            except (IntegrityError, ValueError):
                outcome = LinkOutcome("taken", TAKEN.format(what=what))
            else:
                outcome = LinkOutcome(
                    "linked",
                    LINKED.format(what=what, name=user.name),
                    user_id=user.id,
                    user_name=user.name,
                )
    session.add(
        LinkAttempt(
            channel=channel, address=address, succeeded=outcome.status == "linked", created_at=now
        )
    )
    session.flush()
    return outcome


def wants_linking(message: InboundMessage) -> str | None:
    """The code in `message` when it could be a linking message (else None)."""
    if message.user_id is not None or message.channel not in LINKABLE_CHANNELS:
        return None
    return parse_code(message.text)


def claim_turn(session: Session, message: InboundMessage, turn_id: str) -> bool:
    """Record the turn for (channel, message id); False when it was seen before.

    Committed at once, like the assistant's own claim, so concurrent redeliveries race on the
    unique constraint and exactly one of them goes on.
    """
    if not message.message_id:
        return True
    claimed = session.execute(
        insert(ConversationTurn)
        .values(
            turn_id=turn_id,
            channel=message.channel,
            sender=message.sender[:100],
            message_id=message.message_id,
            text=message.text,
        )
        .on_conflict_do_nothing(constraint="uq_conversation_turns_channel_message")
        .returning(ConversationTurn.id)
    ).scalar()
    session.commit()
    return claimed is not None


def earlier_result(session: Session, message: InboundMessage) -> TurnResult:
    """The result of a turn already handled for this (channel, message id): a duplicate."""
    row = session.scalars(
        select(ConversationTurn).where(
            ConversationTurn.channel == message.channel,
            ConversationTurn.message_id == message.message_id,
        )
    ).one()
    return TurnResult(
        str(row.turn_id),
        Reply(text=row.answer or "", intent=row.intent),
        row.intent,
        duplicate=True,
        user_id=row.user_id,
    )


def answer_turn(
    engine: Engine,
    message: InboundMessage,
    decide: Callable[[Session], tuple[Reply, int | None]],
) -> TurnResult:
    """Answer a turn without the planner: claim it (dedup), `decide` the reply, audit, commit."""
    started = time.perf_counter()
    turn_id = str(uuid.uuid4())
    with Session(engine, expire_on_commit=False) as session:
        if not claim_turn(session, message, turn_id):
            return earlier_result(session, message)
        reply, user_id = decide(session)
        values: dict[str, Any] = {
            "user_id": user_id,
            "intent": reply.intent,
            "tool_calls": [],
            "answer": reply.as_text(),
            "reply": reply.model_dump(mode="json"),
            "latency_ms": (time.perf_counter() - started) * 1000,
        }
        write_turn(session, message, turn_id, values)
        session.commit()
        return TurnResult(
            turn_id,
            reply,
            reply.intent,
            latency_ms=(time.perf_counter() - started) * 1000,
            user_id=user_id,
        )


def is_unknown_sender(engine: Engine, message: InboundMessage) -> bool:
    """True when no active user has the sender's phone number or Telegram id."""
    with Session(engine) as session:
        return identify(session, message) is None


def redeem_in_chat(
    engine: Engine, settings: Settings, message: InboundMessage, code: str
) -> TurnResult:
    """Answer a linking message from an unknown sender (deduplicated and audited)."""

    def decide(session: Session) -> tuple[Reply, int | None]:
        outcome = redeem_code(
            session, settings, channel=message.channel, address=message.sender, code=code
        )
        log.info("link code from a %s sender: %s", message.channel, outcome.status)
        return Reply(text=outcome.text, intent=f"link_{outcome.status}"), outcome.user_id

    return answer_turn(engine, message, decide)


# --- the route ---------------------------------------------------------------------------------


def link_code_router(
    current_user: Callable[..., Any], session: Callable[..., Any], app_settings: Callable[..., Any]
) -> APIRouter:
    """`POST /api/link-code` for the signed-in user.

    The app passes its dependencies (the authenticated user, a request session, the settings)
    so this package does not import the API layer.
    """
    router = APIRouter(prefix="/api", tags=["linking"])

    @router.post(
        "/link-code",
        status_code=status.HTTP_201_CREATED,
        summary="A one-time code to link a phone number or Telegram account",
        responses={401: {"description": "Missing, invalid or expired credentials."}},
    )
    def new_link_code(
        # Plain defaults rather than Annotated: the dependencies are this factory's arguments,
        # which FastAPI could not resolve from postponed annotations.
        user: User = Depends(current_user),
        db: Session = Depends(session),
        settings: Settings = Depends(app_settings),
    ) -> LinkCodeRead:
        """Six digits, valid for ten minutes: send 'link CODE' to the bot from the phone or
        Telegram account to link. A new code replaces the previous unused one."""
        created = create_link_code(db, user, settings)
        db.commit()
        return created

    return router
