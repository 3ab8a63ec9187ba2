"""The web chat: the page's API (ask, stream, history, quoted communications) and the page.

Every route is authenticated (bearer token from `POST /api/auth/token`, or an API key) and acts
as the authenticated user: the assistant keys its session by user and channel ("web"), and the
tools scope the data to that user.

- `POST /api/chat` runs one turn and answers the turn JSON (`answer`, `intent`, `tool_calls`,
  `citations`, `latency_ms`, `reply` with table, chart, buttons, citations and notice).
- `POST /api/chat/stream` runs the same turn and answers Server-Sent Events: `status`
  (`{"state": "thinking"}`), several `delta` (`{"text": ...}`: the answer text in order), one
  `reply` (the turn JSON), then `done`; `error` (`{"message": ...}`) replaces `reply` when the
  turn failed. Comment lines keep the connection alive while the turn runs. The text streams
  once the turn is complete: the assistant checks every number of a reply against the tool
  results before it may be shown, so no unchecked partial answer ever reaches the screen.
- `GET /api/chat/history` gives the user's own previous web turns, oldest first, with the
  structured replies, so the page redraws tables and charts after a reload.
- `GET /api/communications/{id}` gives one quoted communication, only when the user may see
  its store; otherwise 404, exactly as for an id that does not exist.

The client gives each message an id (`message_id`, e.g. a UUID). A second submission with the
same id is not processed again: it answers the reply of the first (`duplicate: true`). Ids are
kept per user, so one user's id can never reach another user's turn.

The page (`GET /`, files under `api/static/`) renders every text from the model or the user
with `textContent`, never as HTML: the HTML escaping of this channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from api.deps import (
    UNAUTHORIZED,
    AssistantDep,
    CurrentActor,
    CurrentUser,
    DatabaseDep,
    SessionDep,
)
from assistant.messages import Citation, InboundMessage, Reply
from tools.context import store_scope
from tools.models import Communication, ConversationTurn, Store, User

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parents[1] / "api" / "static"

MAX_TEXT = 4000
# How long a repeated submission waits for the first one's reply before answering without it.
DUPLICATE_WAIT_SECONDS = 30.0
# A comment line this often keeps proxies from closing a stream while a slow turn runs.
KEEPALIVE_SECONDS = 10.0
# Words per `delta` event.
DELTA_WORDS = 4
POLITE_ERROR = "Sorry, something went wrong while answering. Please try again."
STILL_WORKING = "Your earlier message is still being answered. Reload the page in a moment."
# Communication ids are 32-bit: a larger id cannot exist, and must not reach the database.
MAX_ID = 2**31 - 1

router = APIRouter(prefix="/api", tags=["web chat"])
page_router = APIRouter(include_in_schema=False)


# --- schemas -----------------------------------------------------------------------------------


class ChatRequest(BaseModel):
    """One message from the page: typed text, or a pressed button's payload."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "text": "sales by region this month vs last month",
                    "message_id": "6f1c2d4e-8a9b-4c3d-9e8f-7a6b5c4d3e2f",
                },
                {"text": "", "button_payload": "confirm:yes", "message_id": "b7e1c9d0-0001"},
            ]
        }
    )

    text: str = Field(default="", max_length=MAX_TEXT, description="What the person typed.")
    button_payload: str | None = Field(
        default=None,
        max_length=200,
        description="The payload of a pressed button (then `text` may be empty).",
    )
    message_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="A client-generated id (e.g. a UUID): a repeated id is processed once.",
    )

    @model_validator(mode="after")
    def _something_to_say(self) -> ChatRequest:
        if not self.text.strip() and not self.button_payload:
            raise ValueError("text or button_payload is required")
        return self


class TurnRead(BaseModel):
    """The outcome of one turn (the same JSON as `mangalm ask --json`, with the reply)."""

    answer: str = Field(description="The reply as plain text.")
    intent: str | None
    tool_calls: list[dict[str, Any]]
    citations: list[Citation]
    latency_ms: float
    reply: Reply
    turn_id: str
    duplicate: bool = Field(description="True when this message id was answered before.")


class HistoryTurn(BaseModel):
    """One earlier web turn of the user."""

    turn_id: str
    text: str = Field(description="What the person typed (empty for a pressed button).")
    button: str | None = Field(default=None, description="The label of the pressed button.")
    reply: Reply
    created_at: str


class ChatHistory(BaseModel):
    """The user's previous web turns, oldest first."""

    turns: list[HistoryTurn]


class CommunicationRead(BaseModel):
    """A quoted communication: what a store said or was told."""

    id: int
    text: str
    store: str
    store_code: str | None
    date: str = Field(description="When it happened (ISO 8601).")
    author: str | None
    channel: str
    direction: str
    kind: str = Field(description="note, message, call or complaint.")


# --- running a turn ----------------------------------------------------------------------------


def _inbound(user: User, body: ChatRequest) -> InboundMessage:
    message_id = body.message_id or uuid.uuid4().hex
    return InboundMessage(
        channel="web",
        sender=user.email,
        text=body.text,
        user_id=user.id,
        button_payload=body.button_payload,
        # Per user: another user sending the same id must not collide with (or read) this turn.
        message_id=f"{user.id}:{message_id}",
    )


class TurnService:
    """Runs web turns on the app's assistant and keeps their structured replies."""

    def __init__(self, assistant: Any, database: Any) -> None:
        self.assistant = assistant
        self.database = database

    def run(self, message: InboundMessage) -> dict[str, Any]:
        """Run the turn (blocking) and return the turn JSON."""
        result = self.assistant.handle(message)
        if result.duplicate:
            return self._replayed(message, result)
        self._keep_reply(result.turn_id, result.reply, message.button_payload)
        data: dict[str, Any] = result.to_json()
        return data

    def _keep_reply(self, turn_id: str, reply: Reply, button_payload: str | None) -> None:
        try:
            with self.database.session() as session:
                session.execute(
                    update(ConversationTurn)
                    .where(ConversationTurn.turn_id == uuid.UUID(turn_id))
                    .values(reply=reply.model_dump(mode="json"), button_payload=button_payload)
                )
                session.commit()
        except DBAPIError:
            # The answer itself is already recorded; only the redraw after a reload suffers.
            log.warning("turn %s: could not keep the structured reply", turn_id, exc_info=True)

    def _replayed(self, message: InboundMessage, result: Any) -> dict[str, Any]:
        """The first submission's reply, waiting for it while that turn is still running."""
        deadline = time.monotonic() + DUPLICATE_WAIT_SECONDS
        pause = 0.05
        while True:
            with self.database.session() as session:
                row = session.scalars(
                    select(ConversationTurn).where(
                        ConversationTurn.channel == message.channel,
                        ConversationTurn.message_id == message.message_id,
                    )
                ).first()
            if row is not None and row.reply is not None:
                reply = Reply.model_validate(row.reply)
                break
            if time.monotonic() > deadline:
                answer = row.answer if row is not None else None
                reply = Reply(text=answer or STILL_WORKING)
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        result.reply = reply
        data: dict[str, Any] = result.to_json()
        return data


def _chunks(text: str, words: int = DELTA_WORDS) -> list[str]:
    """`text` in pieces of a few words; joined they give back `text` exactly."""
    pieces = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    return ["".join(pieces[i : i + words]) for i in range(0, len(pieces), words)]


def _event(name: str, data: Any) -> bytes:
    # JSON never contains a raw newline, so each event is one `data:` line.
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


# Turns of streams whose client went away keep running to the end (the write is done once and
# the reply kept); holding them here stops the event loop from dropping them half way.
_running: set[asyncio.Future[Any]] = set()


async def _stream(run: Callable[[], dict[str, Any]]) -> AsyncIterator[bytes]:
    yield _event("status", {"state": "thinking"})
    turn = asyncio.ensure_future(anyio.to_thread.run_sync(run))
    _running.add(turn)
    turn.add_done_callback(_running.discard)
    while not turn.done():
        done, _ = await asyncio.wait({turn}, timeout=KEEPALIVE_SECONDS)
        if not done:
            yield b": still thinking\n\n"
    try:
        data = turn.result()
    except Exception:
        log.exception("web turn failed")
        yield _event("error", {"message": POLITE_ERROR})
        yield _event("done", {})
        return
    for piece in _chunks(data["reply"]["text"]):
        yield _event("delta", {"text": piece})
    yield _event("reply", data)
    yield _event("done", {"turn_id": data["turn_id"]})


# One event of the stream; `data` is JSON (see the module docstring for each event's data).
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["status", "delta", "reply", "error", "done"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
    "required": ["event", "data"],
}


class EventStreamResponse(StreamingResponse):
    """Server-Sent Events (documented as `text/event-stream`)."""

    media_type = "text/event-stream"


# --- routes ------------------------------------------------------------------------------------


@router.post(
    "/chat",
    response_model=TurnRead,
    summary="Ask the assistant (one turn)",
    responses=UNAUTHORIZED,
)
async def chat(
    body: ChatRequest, user: CurrentUser, assistant: AssistantDep, database: DatabaseDep
) -> dict[str, Any]:
    """Run one turn as the logged-in user and answer the turn with its structured reply."""
    service = TurnService(assistant, database)
    return await anyio.to_thread.run_sync(service.run, _inbound(user, body))


@router.post(
    "/chat/stream",
    response_class=EventStreamResponse,
    summary="Ask the assistant, streaming the answer (Server-Sent Events)",
    responses={
        **UNAUTHORIZED,
        status.HTTP_200_OK: {
            "description": "Events: `status`, `delta` (several), `reply`, `done`; or `error`.",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
        },
    },
)
async def chat_stream(
    body: ChatRequest, user: CurrentUser, assistant: AssistantDep, database: DatabaseDep
) -> EventStreamResponse:
    """Run one turn as the logged-in user; the answer streams as Server-Sent Events."""
    service = TurnService(assistant, database)
    message = _inbound(user, body)
    return EventStreamResponse(
        _stream(lambda: service.run(message)),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _label_of(payload: str | None, previous: dict[str, Any] | None) -> str | None:
    """The label of the button with `payload` in the previous reply (the payload if gone)."""
    if payload is None:
        return None
    for button in (previous or {}).get("buttons") or []:
        if button.get("payload") == payload:
            return str(button.get("label"))
    return payload


@router.get(
    "/chat/history",
    response_model=ChatHistory,
    summary="The logged-in user's previous web chat turns",
    responses=UNAUTHORIZED,
)
def history(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200, description="How many turns, newest kept.")] = 50,
) -> ChatHistory:
    """The user's own previous web turns, oldest first, with their structured replies."""
    # One more than asked: the turn before the first shown names the first's pressed button.
    rows = session.scalars(
        select(ConversationTurn)
        .where(
            ConversationTurn.user_id == user.id,
            ConversationTurn.channel == "web",
            ConversationTurn.answer.is_not(None),
        )
        .order_by(ConversationTurn.created_at.desc(), ConversationTurn.id.desc())
        .limit(limit + 1)
    ).all()
    rows = list(reversed(rows))
    turns = []
    for index, row in enumerate(rows):
        if index == 0 and len(rows) > limit:
            continue
        previous = rows[index - 1].reply if index > 0 else None
        # Turns recorded without a structured reply are redrawn from their plain text.
        reply = row.reply if row.reply is not None else {"text": row.answer or ""}
        turns.append(
            HistoryTurn(
                turn_id=str(row.turn_id),
                text=row.text,
                button=_label_of(row.button_payload, previous),
                reply=Reply.model_validate(reply),
                created_at=row.created_at.isoformat(),
            )
        )
    return ChatHistory(turns=turns)


@router.get(
    "/communications/{communication_id}",
    response_model=CommunicationRead,
    summary="One quoted communication (a citation)",
    responses={
        **UNAUTHORIZED,
        status.HTTP_404_NOT_FOUND: {
            "description": "No such communication, or its store is not the user's to see.",
            "content": {"application/json": {"example": {"detail": "Communication not found"}}},
        },
    },
)
def communication(
    communication_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
    actor: CurrentActor,
    session: SessionDep,
) -> CommunicationRead:
    """The communication a citation quotes, if the user may see its store (404 otherwise)."""
    row = session.execute(
        select(Communication, Store.name, Store.code, User.name)
        .join(Store, Store.id == Communication.store_id)
        .outerjoin(User, User.id == Communication.author_id)
        .where(Communication.id == communication_id, store_scope(actor))
    ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Communication not found")
    item, store_name, store_code, author_user = row
    return CommunicationRead(
        id=item.id,
        text=item.text,
        store=store_name,
        store_code=store_code,
        date=item.occurred_at.isoformat(),
        author=item.author_name or author_user,
        channel=item.channel,
        direction=item.direction,
        kind=item.kind,
    )


# Only this origin's scripts, styles and connections; no framing (the page holds a token).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@page_router.get("/")
def page() -> FileResponse:
    """The web chat page."""
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)
