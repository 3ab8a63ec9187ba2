"""WhatsApp through Meta's Cloud API: webhook in, Graph API out, and the 24-hour window.

Input side.
- `GET /whatsapp/meta/webhook` answers Meta's subscription handshake: `hub.mode=subscribe`
  with `hub.verify_token` equal to `META_VERIFY_TOKEN` gets `hub.challenge` back; anything
  else gets 403.
- `POST /whatsapp/meta/webhook` first checks `X-Hub-Signature-256` (`sha256=` + HMAC-SHA256 of
  the raw body keyed with `META_APP_SECRET`, compared in constant time; 403 when missing or
  wrong, nothing processed). It then reads each message for our `META_PHONE_NUMBER_ID`: text,
  interactive button and list replies (the button id is the payload), template quick-reply
  buttons, and media (voice, image, document, ... arrive as empty text, answered with "I can
  read text messages only"). Delivery statuses, reactions and group messages are ignored. The
  sender's last inbound time is recorded (the 24-hour window), each message is submitted to
  the turn queue on the "whatsapp-meta" route with Meta's message id, and the answer is 200.

Output side (`MetaWhatsAppOutbound`): `POST {base}/{version}/{phone_number_id}/messages` with
the access token. Within 24 hours of the person's last message: text split under 4096
characters, and buttons as interactive reply buttons (at most 3, titles up to 20 characters;
4 to 10 become a list). Outside the window only the approved template `META_TEMPLATE_NAME` is
sent, never free text (Meta would refuse it, and it would be spam).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from assistant.messages import InboundMessage, Reply
from channels.base import (
    WHATSAPP,
    ChannelConfigError,
    OutboundChannel,
    call_with_retry,
    phone_digits,
    split_text,
)
from channels.queue import register_outbound
from tools.models import ChannelWindow
from tools.settings import Settings

log = logging.getLogger(__name__)

ROUTE = "whatsapp-meta"
WINDOW_CHANNEL = WHATSAPP
WINDOW = dt.timedelta(hours=24)
SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_TEXT = 4096
MAX_INTERACTIVE_BODY = 1024
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_LIST_ROWS = 10
MAX_ROW_TITLE = 24
MAX_REPLY_ID = 256
IGNORED_TYPES = {"reaction", "system", "ephemeral", "request_welcome"}

Submit = Callable[[InboundMessage], Awaitable[None]]


def check_settings(settings: Settings) -> None:
    """Refuse a half-configured Meta WhatsApp channel, naming the missing settings.

    The channel is enabled as soon as any of its four settings is set; it then needs all four
    (without the app secret no webhook can be verified, without the verify token Meta cannot
    subscribe, without the token and number id no reply can be sent).
    """
    values = {
        "META_ACCESS_TOKEN": settings.meta_access_token,
        "META_PHONE_NUMBER_ID": settings.meta_phone_number_id,
        "META_APP_SECRET": settings.meta_app_secret,
        "META_VERIFY_TOKEN": settings.meta_verify_token,
    }

    def present(value: Any) -> bool:
        if value is None:
            return False
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        return bool(text.strip())

    given = [name for name, value in values.items() if present(value)]
    missing = [name for name, value in values.items() if not present(value)]
    if given and missing:
        raise ChannelConfigError(
            f"WhatsApp (Meta Cloud API) is enabled by {', '.join(given)} but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"
        )


def enabled(settings: Settings) -> bool:
    return settings.meta_access_token is not None and bool(settings.meta_phone_number_id)


def signature(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` value Meta sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode(), signature(body, secret).encode())


# --- the 24-hour window ------------------------------------------------------------------------


def window_open(
    session: Session,
    address: str,
    now: dt.datetime | None = None,
    *,
    channel: str = WINDOW_CHANNEL,
) -> bool:
    """Whether `address` wrote to us within the last 24 hours (free text allowed)."""
    now = now or dt.datetime.now(dt.UTC)
    last = session.scalar(
        select(ChannelWindow.last_inbound_at).where(
            ChannelWindow.channel == channel, ChannelWindow.address == phone_digits(address)
        )
    )
    return last is not None and now - last < WINDOW


# --- sending -----------------------------------------------------------------------------------


class GraphApiError(RuntimeError):
    """The Graph API refused a message."""


def _retry_after(error: Exception) -> float | None:
    if isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 429:
        try:
            return float(error.response.headers.get("Retry-After", "1"))
        except ValueError:
            return 1.0
    return None


def _plain(reply: Reply) -> str:
    """The reply as text, without the "Reply 'Yes' or 'No'" line (buttons are real here)."""
    return reply.model_copy(update={"buttons": []}).as_text()


class MetaWhatsAppOutbound(OutboundChannel):
    """Sends through the Graph API, keeping to the 24-hour window."""

    name = "whatsapp"
    max_length = MAX_TEXT

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        client: httpx.AsyncClient | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if settings.meta_access_token is None or not settings.meta_phone_number_id:
            raise ChannelConfigError("META_ACCESS_TOKEN and META_PHONE_NUMBER_ID must be set")
        self.engine = engine
        self.url = (
            f"{settings.meta_graph_base_url}/{settings.meta_graph_version}/"
            f"{settings.meta_phone_number_id}/messages"
        )
        self.template_name = settings.meta_template_name
        self.template_language = settings.meta_template_language
        self._token = settings.meta_access_token.get_secret_value()
        self._client = client
        self._owns_client = client is None
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(15.0, connect=5.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            )
        return self._client

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def in_window(self, recipient: str) -> bool:
        def check() -> bool:
            with Session(self.engine) as session:
                return window_open(session, recipient, self._now())

        return await anyio.to_thread.run_sync(check)

    async def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one message to the Graph API (429 waited out and retried)."""
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", **payload}

        async def send() -> dict[str, Any]:
            response = await self.client.post(
                self.url, json=body, headers={"Authorization": f"Bearer {self._token}"}
            )
            if response.status_code == 429:
                response.raise_for_status()
            if response.is_error:
                raise GraphApiError(
                    f"Graph API answered {response.status_code}: {response.text[:300]}"
                )
            data: dict[str, Any] = response.json()
            return data

        result: dict[str, Any] = await call_with_retry(send, retry_after=_retry_after)
        return result

    async def send_template(self, recipient: str) -> None:
        """The approved template: the only thing allowed outside the 24-hour window."""
        await self.post(
            {
                "to": phone_digits(recipient),
                "type": "template",
                "template": {
                    "name": self.template_name,
                    "language": {"code": self.template_language},
                },
            }
        )

    async def _text(self, recipient: str, text: str) -> None:
        await self.post(
            {
                "to": phone_digits(recipient),
                "type": "text",
                "text": {"body": text, "preview_url": False},
            }
        )

    async def send_text(self, recipient: str, text: str) -> None:
        if not await self.in_window(recipient):
            log.info("WhatsApp window closed for a recipient: template sent instead of text")
            await self.send_template(recipient)
            return
        for part in split_text(text, MAX_TEXT):
            await self._text(recipient, part)

    async def send_reply(self, recipient: str, reply: Reply) -> None:
        if not await self.in_window(recipient):
            log.info("WhatsApp window closed for a recipient: template sent instead of a reply")
            await self.send_template(recipient)
            return
        parts = split_text(_plain(reply), MAX_TEXT) or ["…"]
        buttons = [b for b in reply.buttons if b.payload][:MAX_LIST_ROWS]
        if not buttons:
            for part in parts:
                await self._text(recipient, part)
            return
        # The buttons ride on the last part, whose body may hold only 1024 characters.
        last = split_text(parts.pop(), MAX_INTERACTIVE_BODY)
        body = last.pop()
        for part in [*parts, *last]:
            await self._text(recipient, part)
        await self.post({"to": phone_digits(recipient), **interactive(body, reply)})


def interactive(body: str, reply: Reply) -> dict[str, Any]:
    """Reply buttons (up to 3) or a list (up to 10) for the reply's buttons."""
    buttons = [b for b in reply.buttons if b.payload][:MAX_LIST_ROWS]
    if len(buttons) <= MAX_BUTTONS:
        action: dict[str, Any] = {
            "buttons": [
                {
                    "type": "reply",
                    "reply": {
                        "id": b.payload[:MAX_REPLY_ID],
                        "title": b.label[:MAX_BUTTON_TITLE],
                    },
                }
                for b in buttons
            ]
        }
        kind = "button"
    else:
        action = {
            "button": "Choose",
            "sections": [
                {
                    "title": "Options",
                    "rows": [
                        {"id": b.payload[:MAX_REPLY_ID], "title": b.label[:MAX_ROW_TITLE]}
                        for b in buttons
                    ],
                }
            ],
        }
        kind = "list"
    return {
        "type": "interactive",
        "interactive": {"type": kind, "body": {"text": body}, "action": action},
    }


def _outbound_from_settings(settings: Settings, engine: Engine) -> OutboundChannel | None:
    return MetaWhatsAppOutbound(settings, engine) if enabled(settings) else None


register_outbound(ROUTE, _outbound_from_settings)


# --- receiving ---------------------------------------------------------------------------------


def _timestamp(value: Any, now: dt.datetime) -> dt.datetime:
    """When Meta says the message was sent (never in the future; now if unreadable)."""
    try:
        sent = dt.datetime.fromtimestamp(int(value), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return now
    return min(sent, now)


def parse_message(item: dict[str, Any]) -> InboundMessage | None:
    """One entry of `value.messages` as an `InboundMessage`, or None when it is not a turn."""
    sender = str(item.get("from") or "")
    message_id = item.get("id")
    kind = item.get("type")
    if not sender.isdigit() or not message_id or item.get("group_id") or kind in IGNORED_TYPES:
        return None
    text = ""
    payload: str | None = None
    if kind == "text":
        text = str((item.get("text") or {}).get("body") or "")
    elif kind == "interactive":
        interactive_part = item.get("interactive") or {}
        choice = interactive_part.get(str(interactive_part.get("type"))) or {}
        if interactive_part.get("type") in ("button_reply", "list_reply"):
            payload = str(choice.get("id") or "") or None
            text = str(choice.get("title") or payload or "")
    elif kind == "button":
        button = item.get("button") or {}
        payload = str(button.get("payload") or "") or None
        text = str(button.get("text") or payload or "")
    # Every other type (voice, audio, image, video, document, sticker, location, contacts,
    # unsupported) is answered as media: empty text.
    return InboundMessage(
        channel="whatsapp",
        sender=sender,
        text=text[:4000],
        message_id=str(message_id),
        button_payload=payload,
    )


def parse_payload(data: Any, phone_number_id: str | None) -> list[tuple[InboundMessage, Any]]:
    """The turns in a webhook body for our number: (message, Meta's timestamp) pairs."""
    found: list[tuple[InboundMessage, Any]] = []
    if not isinstance(data, dict) or data.get("object") != "whatsapp_business_account":
        return found
    for entry in data.get("entry") or []:
        for change in (entry or {}).get("changes") or []:
            if not isinstance(change, dict) or change.get("field") != "messages":
                continue
            value = change.get("value") or {}
            number = str((value.get("metadata") or {}).get("phone_number_id") or "")
            if phone_number_id and number != phone_number_id:
                log.info("WhatsApp message for another phone number id ignored")
                continue
            for item in value.get("messages") or []:
                if isinstance(item, dict):
                    message = parse_message(item)
                    if message is not None:
                        found.append((message, item.get("timestamp")))
    return found


class MetaWebhook:
    """The webhook side of one app."""

    def __init__(self, settings: Settings, submit: Submit) -> None:
        check_settings(settings)
        assert settings.meta_app_secret is not None and settings.meta_verify_token is not None
        self.app_secret = settings.meta_app_secret.get_secret_value()
        self.verify_token = settings.meta_verify_token.get_secret_value()
        self.phone_number_id = settings.meta_phone_number_id
        self.submit = submit

    def handshake(self, mode: str | None, token: str | None, challenge: str | None) -> str | None:
        """The challenge to echo for a valid subscription request, else None."""
        if mode != "subscribe" or token is None or challenge is None:
            return None
        if not hmac.compare_digest(token.encode(), self.verify_token.encode()):
            return None
        return challenge

    async def receive(self, data: Any) -> int:
        """Submit the turns; returns how many. Each message is stamped with when Meta says it
        was sent: its turn records the sender's 24-hour window from then
        (`channels.base.record_whatsapp_window`)."""
        turns = parse_payload(data, self.phone_number_id)
        if not turns:
            return 0
        now = dt.datetime.now(dt.UTC)
        stamped = [
            message.model_copy(update={"received_at": _timestamp(stamp, now)})
            for message, stamp in turns
        ]
        await asyncio.gather(*(self.submit(message) for message in stamped))
        return len(stamped)


router = APIRouter(tags=["channels"])


def _hook(request: Request) -> MetaWebhook:
    hook: MetaWebhook | None = getattr(request.app.state, "meta_whatsapp", None)
    if hook is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "WhatsApp (Meta) is not enabled")
    return hook


@router.get("/whatsapp/meta/webhook", include_in_schema=False)
async def meta_handshake(request: Request) -> Response:
    """Meta's subscription check: echo `hub.challenge` when `hub.verify_token` is ours."""
    hook = _hook(request)
    params = request.query_params
    challenge = hook.handshake(
        params.get("hub.mode"), params.get("hub.verify_token"), params.get("hub.challenge")
    )
    if challenge is None:
        log.warning("Meta webhook handshake with a wrong verify token refused")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    return Response(content=challenge, media_type="text/plain")


@router.post("/whatsapp/meta/webhook", include_in_schema=False)
async def meta_webhook(request: Request) -> Response:
    """Meta's events: verified by signature over the raw body, acknowledged at once."""
    hook = _hook(request)
    body = await request.body()
    if not verify_signature(body, request.headers.get(SIGNATURE_HEADER), hook.app_secret):
        log.warning("Meta webhook with a missing or wrong signature refused")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    try:
        data = json.loads(body)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The body must be JSON") from None
    await hook.receive(data)
    return Response(status_code=status.HTTP_200_OK)
