"""Voice through Twilio: a phone call is a conversation of spoken turns, rendered as TwiML.

- `POST /voice` (the number's "a call comes in" webhook) greets the caller inside
  `<Gather input="speech">`, whose action is `/voice/turn?n=1`.
- `POST /voice/turn?n=N` takes `SpeechResult` to the assistant as turn N of the call (message
  id `CallSid:N`, so a retried webhook is the same turn and never a second order) and speaks the
  answer with `<Say>` in short sentences (tables summarised to their first rows, money as
  "18,400 rupees", dates as "14 November"), then gathers again for turn N+1.
- The answer is awaited for `VOICE_ANSWER_WAIT_SECONDS` (4 s by default). If it is not ready,
  the call hears a short filler and is `<Redirect>`ed to `/voice/wait?n=N&w=1`, which waits
  again and picks the finished answer up. Every response leaves well inside Twilio's 15-second
  limit, so the caller never hears Twilio's application error.
- Silence (no `SpeechResult`) reprompts once, then says goodbye; "bye" ends the call with
  `<Hangup/>`. Confirmations are spoken: the assistant takes "yes" / "no" when a write waits.
- A caller whose number is not linked to an account is asked for a link code instead:
  `<Gather input="dtmf speech" numDigits="6">` with action `/voice/link?a=1`. The code is keyed
  in (`Digits`) or said (`SpeechResult`: "one two three four five six", "123 456", "double
  five", Hindi digit words; `channels.linking.spoken_code`) and redeemed with
  `channels.linking.redeem_code` under the same throttling and audit as a chat's "link
  123456", as message `CallSid:linkA` (a retried webhook gets the first answer, never a second
  redemption). Linked: the caller hears so and the assistant's gather starts at turn 1. A wrong,
  used or expired code (or no six digits heard) gets one more try, then a goodbye; too many
  wrong codes from the number, or a number linked to another account, end the call with why.
  A caller whose number is withheld cannot link it.

TwiML is built with twilio's `VoiceResponse`, which escapes `&`, `<` and `>` in answers. Every
webhook is verified with twilio's `RequestValidator` against the public URL (403 otherwise).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.datastructures import ImmutableMultiDict
from twilio.twiml.voice_response import Gather, VoiceResponse

from assistant.messages import InboundMessage, Reply
from assistant.turn import TurnResult
from channels.linking import (
    LINK_CODE_MINUTES,
    LinkOutcome,
    answer_turn,
    is_unknown_sender,
    parse_keyed_code,
    redeem_code,
    spoken_code,
)
from channels.twilio_messaging import TWIML_CONTENT_TYPE, public_endpoint, verified_form
from tools.settings import Settings

log = logging.getLogger(__name__)

GREETING = (
    "Hello, this is the Mangalm sales assistant. Ask me about a store, an order, dues, or "
    "whom to call today."
)
REPROMPT = "Sorry, I did not hear anything. What would you like to know?"
SILENT_GOODBYE = "I still cannot hear you, so I will hang up now. Goodbye."
GOODBYE = "Thank you. Goodbye."
FILLER = "One moment, I am looking that up."
STILL_WORKING = "Still working on it."
TOO_SLOW = "Sorry, that is taking too long. Please ask again in a moment."
FAILED = "Sorry, something went wrong with that question. Please try again."
ANYTHING_ELSE = "Anything else?"

# Linking a phone by voice.
HELLO = "Hello, this is the Mangalm sales assistant."
NOT_LINKED = "This phone number is not linked to a Mangalm account yet."
LINK_INTRO = f"{HELLO} {NOT_LINKED}"
LINK_HOW = (
    "Sign in to the Mangalm web app, open Link a phone, and key in or say the six digit code "
    "shown there."
)
LINK_SILENCE = "I did not hear a code. Please key in or say the six digit code from the web app."
LINK_SILENT_GOODBYE = "I still did not hear a code, so I will hang up now. Goodbye."
LINK_UNCLEAR = "Sorry, I did not catch six digits."
LINK_AGAIN = "Please key in or say the six digit code again."
LINK_GIVE_UP = "Please ask the web app for a new code and call again. Goodbye."
LINK_WRONG = "That code is not valid."
LINK_USED = "That code has already been used."
LINK_EXPIRED = f"That code has expired. Codes last {LINK_CODE_MINUTES} minutes."
LINK_THROTTLED = (
    "Too many wrong codes have been tried from this number. Please wait an hour and call "
    "again with a new code. Goodbye."
)
LINK_TAKEN = (
    "This number is already linked to another Mangalm account. Please ask an administrator to "
    "move it. Goodbye."
)
LINKED = "Thank you. This phone is now linked to {name}'s Mangalm account."
LINKED_UNNAMED = "Thank you. This phone is now linked to your Mangalm account."
ALREADY_LINKED = "This phone is linked to your Mangalm account."
LINKED_NEXT = "What would you like to know?"
LINK_FAILED = "Sorry, I could not check that code just now. Please call again in a minute. Goodbye."
WITHHELD = (
    "I cannot see the number you are calling from, so it cannot be linked. Please call from a "
    "phone that shows its number. Goodbye."
)
# Tries at a code in one call (wrong, used or expired codes and unreadable input together).
LINK_TRIES = 2
# What Twilio puts in `From` when the caller withholds their number: the words ANONYMOUS,
# RESTRICTED, BLOCKED and UNAVAILABLE spelled on a keypad.
WITHHELD_NUMBERS = {"+266696687", "+7378742833", "+2562533", "+86282452253"}

# How long a caller is kept waiting for one answer (in fillers and redirects) before giving up.
ANSWER_BUDGET_SECONDS = 24.0
MAX_SENTENCES = 10
TABLE_ROWS_SPOKEN = 3
SENTENCE_CHARS = 160
TASK_TTL_SECONDS = 600

BYE = re.compile(
    r"\b(bye|goodbye|good bye|bye bye|hang up|that's all|that is all|nothing else)\b", re.I
)


# --------------------------------------------------------------------------- speech


def is_goodbye(speech: str) -> bool:
    """Whether the caller is ending the call ("bye", "thank you bye", "that's all")."""
    words = re.findall(r"[\w']+", speech.lower())
    return bool(words) and len(words) <= 6 and BYE.search(" ".join(words)) is not None


def _money(match: re.Match[str]) -> str:
    raw = match.group(1).replace(",", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return match.group(0)
    amount = f"{int(value):,}" if value == value.to_integral_value() else f"{value:,.2f}"
    return f"{amount} {'rupee' if abs(value) == 1 else 'rupees'}"


def _date(match: re.Match[str], today: dt.date) -> str:
    try:
        day = dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return match.group(0)
    spoken = f"{day.day} {day.strftime('%B')}"
    return spoken if day.year == today.year else f"{spoken} {day.year}"


def speakable(text: str, *, today: dt.date, currency: str = "Rs") -> str:
    """`text` as it should be read aloud: money in rupees, dates as "14 November", no markup."""
    symbols = sorted({re.escape(currency), "Rs", "INR", "₹"}, key=len, reverse=True)
    money = re.compile(r"(?:" + "|".join(symbols) + r")\.?\s?(-?\d+(?:,\d+)*(?:\.\d+)?)")
    text = money.sub(_money, text)
    text = re.sub(r"\b(\d{4})-(\d{2})-(\d{2})(?:T[\d:.+Z-]*)?\b", lambda m: _date(m, today), text)
    text = re.sub(r"(\d)\s?%", r"\1 percent", text)
    text = re.sub(r"[*_`#|]+", " ", text)
    text = re.sub(r"^\s*[-•]\s+", "", text, flags=re.M)
    return re.sub(r"[ \t]+", " ", text).strip()


def _short(sentence: str) -> list[str]:
    """Split a long sentence at semicolons or commas so each `<Say>` stays short."""
    if len(sentence) <= SENTENCE_CHARS:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for chunk in re.split(r"(?<=[;,])\s+", sentence):
        if current and len(current) + len(chunk) + 1 > SENTENCE_CHARS:
            pieces.append(current)
            current = chunk
        else:
            current = f"{current} {chunk}".strip()
    if current:
        pieces.append(current)
    return pieces


def sentences(text: str) -> list[str]:
    """Short sentences of `text`, in order."""
    out: list[str] = []
    for part in re.split(r"(?<=[.!?])\s+|\n+", text):
        part = part.strip()
        if part:
            out.extend(_short(part))
    return out


def _table_sentences(reply: Reply) -> list[str]:
    table = reply.table
    if table is None or not table.rows:
        return []
    rows = table.rows[:TABLE_ROWS_SPOKEN]
    out = []
    if len(table.rows) > len(rows):
        out.append(f"Here are the first {len(rows)} of {len(table.rows)}.")
    for row in rows:
        first = str(row[0]) if row else ""
        details = ", ".join(
            f"{column} {value}"
            for column, value in zip(table.columns[1:], row[1:], strict=False)
            if value not in (None, "")
        )
        out.append(f"{first}: {details}." if details else f"{first}.")
    return out


def speech_for(reply: Reply, *, today: dt.date, currency: str = "Rs") -> list[str]:
    """What to say for a reply: its text, the first rows of its table, and the choices."""
    parts = sentences(reply.text) + _table_sentences(reply)
    if reply.buttons:
        labels = [b.label.lower() for b in reply.buttons]
        parts.append("Say " + " or ".join(labels) + ".")
    spoken = [speakable(p, today=today, currency=currency) for p in parts]
    spoken = [s for s in spoken if s]
    if len(spoken) > MAX_SENTENCES:
        # Keep the question (the choices) at the end audible.
        tail = spoken[-1:] if reply.buttons else []
        spoken = spoken[: MAX_SENTENCES - len(tail)] + tail
    return spoken or ["I have no answer to that."]


# --------------------------------------------------------------------------- call state


@dataclass
class PendingTurn:
    task: asyncio.Task[Any]
    started: float


class TwilioVoice:
    """The voice channel of one app: turns running in the background, keyed `CallSid:N`."""

    def __init__(self, settings: Settings, assistant: Callable[[], Any]) -> None:
        self.settings = settings
        self._assistant = assistant
        self.turns: dict[str, PendingTurn] = {}

    @property
    def enabled(self) -> bool:
        return self.settings.twilio_auth_token is not None

    @property
    def engine(self) -> Engine:
        """The database of the app's assistant (callers are looked up and linked there)."""
        engine: Engine = self._assistant().engine
        return engine

    def start(self, message: InboundMessage) -> asyncio.Task[Any]:
        """Start the turn of `message` unless it is already running (a retried webhook)."""
        key = message.message_id or ""
        pending = self.turns.get(key)
        if pending is None:
            assistant = self._assistant()
            task = asyncio.create_task(anyio.to_thread.run_sync(assistant.handle, message))
            pending = PendingTurn(task, time.monotonic())
            self.turns[key] = pending
        self._expire()
        return pending.task

    async def wait(self, task: asyncio.Task[Any], seconds: float) -> Any | None:
        """The turn's result, or None when it is not ready within `seconds`."""
        try:
            return await asyncio.wait_for(asyncio.shield(task), seconds)
        except TimeoutError:
            return None

    def forget(self, key: str) -> None:
        self.turns.pop(key, None)

    def _expire(self) -> None:
        # A call that hung up mid-wait never collects its answer.
        cutoff = time.monotonic() - TASK_TTL_SECONDS
        for key in [k for k, p in self.turns.items() if p.started < cutoff and p.task.done()]:
            self.turns.pop(key, None)

    async def aclose(self) -> None:
        tasks = [p.task for p in self.turns.values() if not p.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=30.0)


def twilio_voice(app: FastAPI) -> TwilioVoice:
    """The app's voice state, made on first use."""
    state: TwilioVoice | None = getattr(app.state, "twilio_voice", None)
    if state is None:
        state = TwilioVoice(app.state.settings, app.state.assistant.get)
        app.state.twilio_voice = state
    return state


# --------------------------------------------------------------------------- TwiML


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), media_type=TWIML_CONTENT_TYPE)


def _gather(voice: TwilioVoice, turn: int, silences: int = 0) -> Gather:
    settings = voice.settings
    return Gather(
        input="speech",
        action=public_endpoint(settings, "/voice/turn", n=turn, s=silences),
        method="POST",
        speech_timeout="auto",
        language=settings.voice_language,
        action_on_empty_result=True,
    )


def _code_gather(voice: TwilioVoice, attempt: int, silences: int) -> Gather:
    settings = voice.settings
    return Gather(
        input="dtmf speech",
        num_digits=6,
        action=public_endpoint(settings, "/voice/link", a=attempt, s=silences),
        method="POST",
        # Time to find the code in the web app; a short pause ends a spoken code.
        timeout=10,
        speech_timeout=2,
        language=settings.voice_language,
        # Google's class token biases recognition towards digit sequences.
        hints="$OOV_CLASS_DIGIT_SEQUENCE",
        action_on_empty_result=True,
    )


def _say(target: VoiceResponse | Gather, voice: TwilioVoice, text: str) -> None:
    target.say(text, language=voice.settings.voice_language)


def ask(voice: TwilioVoice, lines: list[str], turn: int, silences: int = 0) -> Response:
    """Say `lines` (the caller may interrupt) and listen for turn `turn`."""
    response = VoiceResponse()
    gather = _gather(voice, turn, silences)
    for line in lines:
        _say(gather, voice, line)
    response.append(gather)
    return _twiml(response)


def ask_code(voice: TwilioVoice, lines: list[str], attempt: int, silences: int = 0) -> Response:
    """Say `lines` and listen for a link code, keyed or spoken (try `attempt` of the call)."""
    response = VoiceResponse()
    gather = _code_gather(voice, attempt, silences)
    for line in lines:
        _say(gather, voice, line)
    response.append(gather)
    return _twiml(response)


def hang_up(voice: TwilioVoice, lines: list[str]) -> Response:
    response = VoiceResponse()
    for line in lines:
        _say(response, voice, line)
    response.hangup()
    return _twiml(response)


def hold(voice: TwilioVoice, text: str, turn: int, waits: int, speech: str) -> Response:
    """A short filler, then come back to `/voice/wait` for the answer of turn `turn`."""
    response = VoiceResponse()
    _say(response, voice, text)
    # The question travels with the redirect so any app process can resume the turn.
    response.redirect(
        public_endpoint(voice.settings, "/voice/wait", n=turn, w=waits, q=speech[:500]),
        method="POST",
    )
    return _twiml(response)


def answer(voice: TwilioVoice, result: Any, turn: int) -> Response:
    """Speak a finished turn and listen for the next one."""
    reply: Reply = result.reply
    today = dt.date.today()
    lines = speech_for(reply, today=today, currency=voice.settings.currency)
    if result.intent == "unknown_sender":
        # The number was unlinked during the call (or its first check failed): ask for a code.
        return ask_code(voice, [NOT_LINKED, LINK_HOW], 1)
    if not reply.buttons:
        lines.append(ANYTHING_ELSE)
    return ask(voice, lines, turn + 1)


def _ready(result: Any | None) -> bool:
    # A duplicate of a turn still running in another process has no answer yet.
    return result is not None and not (result.duplicate and not result.reply.text.strip())


# --------------------------------------------------------------------------- routes

router = APIRouter(prefix="/voice", tags=["channels"], include_in_schema=False)


async def _verified(request: Request) -> tuple[TwilioVoice, ImmutableMultiDict[str, str]]:
    voice = twilio_voice(request.app)
    if not voice.enabled:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Twilio voice is not configured.")
    form = await verified_form(request, voice.settings)
    return voice, form


def _query_int(request: Request, name: str, default: int) -> int:
    try:
        return max(int(request.query_params.get(name, default)), 0)
    except ValueError:
        return default


def _message(form: ImmutableMultiDict[str, str], speech: str, turn: int | str) -> InboundMessage:
    call = form.get("CallSid")
    caller = form.get("From") or form.get("Caller")
    if not call or not caller:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "CallSid and From are required.")
    return InboundMessage(
        channel="voice", sender=caller, text=speech[:4000], message_id=f"{call}:{turn}"
    )


def withheld(caller: str) -> bool:
    """Whether `caller` (Twilio's `From`) is not a phone number that could be linked."""
    number = caller.strip()
    return number in WITHHELD_NUMBERS or len(re.sub(r"\D", "", number)) < 7


async def _unknown_caller(voice: TwilioVoice, message: InboundMessage) -> bool:
    return bool(await anyio.to_thread.run_sync(is_unknown_sender, voice.engine, message))


@router.post("")
async def incoming_call(request: Request) -> Response:
    """A call comes in: greet and listen, or ask an unknown caller for a link code."""
    voice, form = await _verified(request)
    log.info("voice call %s started", form.get("CallSid"))
    try:
        unknown = await _unknown_caller(voice, _message(form, "", 0))
    except HTTPException:
        raise
    except Exception:
        # The turn itself finds out again (and asks for a code if the caller is unknown).
        log.exception("voice call %s: could not look the caller up", form.get("CallSid"))
        unknown = False
    if unknown and withheld(form.get("From") or form.get("Caller") or ""):
        return hang_up(voice, [HELLO, WITHHELD])
    if unknown:
        return ask_code(voice, [LINK_INTRO, LINK_HOW], 1)
    return ask(voice, [GREETING], 1)


async def _collect(voice: TwilioVoice, message: InboundMessage, turn: int, waits: int) -> Response:
    task = voice.start(message)
    try:
        result = await voice.wait(task, voice.settings.voice_answer_wait_seconds)
    except Exception:
        log.exception("voice turn %s failed", message.message_id)
        voice.forget(message.message_id or "")
        return ask(voice, [FAILED], turn + 1)
    if _ready(result):
        voice.forget(message.message_id or "")
        return answer(voice, result, turn)
    if result is not None:
        # Answered elsewhere but not finished: look again on the next wait.
        voice.forget(message.message_id or "")
    wait = voice.settings.voice_answer_wait_seconds
    if waits >= math.ceil(ANSWER_BUDGET_SECONDS / wait):
        log.warning("voice turn %s: no answer in time", message.message_id)
        return ask(voice, [TOO_SLOW], turn + 1)
    return hold(voice, FILLER if waits == 0 else STILL_WORKING, turn, waits + 1, message.text)


@router.post("/turn")
async def voice_turn(request: Request) -> Response:
    """One spoken turn: answer it (or hold with a filler), or reprompt on silence."""
    voice, form = await _verified(request)
    turn = max(_query_int(request, "n", 1), 1)
    silences = _query_int(request, "s", 0)
    speech = (form.get("SpeechResult") or "").strip()
    if not speech:
        if silences >= 1:
            return hang_up(voice, [SILENT_GOODBYE])
        return ask(voice, [REPROMPT], turn, silences + 1)
    if is_goodbye(speech):
        return hang_up(voice, [GOODBYE])
    return await _collect(voice, _message(form, speech, turn), turn, 0)


@router.post("/wait")
async def voice_wait(request: Request) -> Response:
    """Come back for the answer of a slow turn."""
    voice, form = await _verified(request)
    turn = max(_query_int(request, "n", 1), 1)
    waits = _query_int(request, "w", 1)
    speech = (request.query_params.get("q") or "").strip()
    if not speech:
        return ask(voice, [TOO_SLOW], turn + 1)
    return await _collect(voice, _message(form, speech, turn), turn, waits)


# --------------------------------------------------------------------------- linking


def _link_words(outcome: LinkOutcome, attempt: int) -> str:
    """What the caller hears for a redeemed code (stored as the turn's answer)."""
    if outcome.status == "linked":
        return LINKED.format(name=outcome.user_name) if outcome.user_name else LINKED_UNNAMED
    if outcome.status == "throttled":
        return LINK_THROTTLED
    if outcome.status == "taken":
        return LINK_TAKEN
    reason = {"used": LINK_USED, "expired": LINK_EXPIRED}.get(outcome.status, LINK_WRONG)
    return f"{reason} {LINK_AGAIN if attempt < LINK_TRIES else LINK_GIVE_UP}"


def redeem_by_voice(
    engine: Engine, settings: Settings, message: InboundMessage, code: str, attempt: int
) -> TurnResult | None:
    """Redeem `code` for the caller as one audited, deduplicated turn (None: already linked).

    The same `redeem_code` as a chat's "link 123456", so the same throttling and the same
    link-attempt rows; a retried webhook (same message id) gets the first answer back.
    """
    if not is_unknown_sender(engine, message):
        return None

    def decide(session: Session) -> tuple[Reply, int | None]:
        outcome = redeem_code(session, settings, channel="voice", address=message.sender, code=code)
        log.info("link code from a voice caller: %s", outcome.status)
        reply = Reply(text=_link_words(outcome, attempt), intent=f"link_{outcome.status}")
        return reply, outcome.user_id

    return answer_turn(engine, message, decide)


def _after_redeeming(voice: TwilioVoice, result: TurnResult, attempt: int) -> Response:
    lines = sentences(result.reply.text)
    if result.intent == "link_linked":
        return ask(voice, [*lines, LINKED_NEXT], 1)
    if result.intent in ("link_wrong", "link_used", "link_expired") and attempt < LINK_TRIES:
        return ask_code(voice, lines, attempt + 1)
    if not lines:
        # A retried webhook whose first delivery is still being answered (or died half way).
        return hang_up(voice, [LINK_FAILED])
    return hang_up(voice, lines)


@router.post("/link")
async def voice_link(request: Request) -> Response:
    """A link code keyed in or said by an unknown caller: redeem it, or ask again."""
    voice, form = await _verified(request)
    attempt = max(_query_int(request, "a", 1), 1)
    silences = _query_int(request, "s", 0)
    keyed = (form.get("Digits") or "").strip()
    speech = (form.get("SpeechResult") or "").strip()
    caller = _message(form, "", 0).sender  # 400 without CallSid and From
    if withheld(caller):
        return hang_up(voice, [WITHHELD])
    if not keyed and not speech:
        if silences >= 1:
            return hang_up(voice, [LINK_SILENT_GOODBYE])
        return ask_code(voice, [LINK_SILENCE], attempt, silences + 1)
    if not keyed and is_goodbye(speech):
        return hang_up(voice, [GOODBYE])
    code = parse_keyed_code(keyed) if keyed else spoken_code(speech)
    if code is None:
        if attempt >= LINK_TRIES:
            return hang_up(voice, [LINK_UNCLEAR, LINK_GIVE_UP])
        return ask_code(voice, [LINK_UNCLEAR, LINK_AGAIN], attempt + 1)
    message = _message(form, f"link {code}", f"link{attempt}")
    try:
        result = await anyio.to_thread.run_sync(
            redeem_by_voice, voice.engine, voice.settings, message, code, attempt
        )
    except Exception:
        log.exception("voice link code for call %s failed", form.get("CallSid"))
        return hang_up(voice, [LINK_FAILED])
    if result is None:
        return ask(voice, [ALREADY_LINKED, LINKED_NEXT], 1)
    return _after_redeeming(voice, result, attempt)
