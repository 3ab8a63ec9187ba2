"""Telegram (python-telegram-bot): webhook mode inside the app, polling mode for local use.

Input side. `POST /telegram/webhook` first checks the `X-Telegram-Bot-Api-Secret-Token` header
against `TELEGRAM_WEBHOOK_SECRET` (403 otherwise, nothing processed), parses the body with
`Update.de_json`, drops an update id it has just seen, puts the update on the
`Application` (webhook mode: `updater(None)`, started and stopped by the app's lifespan) and
answers 200 at once. The application's handlers turn private-chat messages and inline-button
presses (callback queries, answered at once) into `InboundMessage`s with the update id as the
message id, and submit them to the app's turn queue on the "telegram" route. Voice notes,
photos, documents and the like arrive as empty text, which the turn handler answers with
"I can read text messages only". Group chats are ignored: answers hold a rep's data.

`mangalm telegram --polling` runs the same handlers with `getUpdates` instead of a webhook.

Output side. Replies are HTML (`parse_mode=HTML`) with the model's text escaped, tables as
`<pre>` blocks, buttons as an inline keyboard on the last part, split under 4096 characters.
Sends respect about one message per second per chat (short bursts allowed) and 30 per second
overall, and a 429 (`RetryAfter`) is waited out and retried.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hmac
import html
import logging
import re
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import Engine
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import InvalidToken, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from assistant.messages import InboundMessage, Reply, Table
from channels.base import ChannelConfigError, OutboundChannel, call_with_retry, split_text
from channels.queue import register_outbound
from tools.settings import Settings

log = logging.getLogger(__name__)

ROUTE = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_MESSAGE = 4096
MAX_CALLBACK_DATA = 64
MAX_TABLE_ROWS = 20
MAX_CELL = 24
ALLOWED_UPDATES = ["message", "callback_query"]
# Telegram's secret_token: 1-256 characters, A-Z, a-z, 0-9, _ and -.
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

Submit = Callable[[InboundMessage], Awaitable[None]]


def check_settings(settings: Settings) -> None:
    """Refuse a Telegram channel that could not verify its webhooks (names the setting)."""
    if settings.telegram_bot_token is None:
        return
    secret = settings.telegram_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise ChannelConfigError(
            "TELEGRAM_WEBHOOK_SECRET must be set when TELEGRAM_BOT_TOKEN is: without it the "
            "Telegram webhook cannot be verified"
        )
    if not SECRET_PATTERN.match(secret.get_secret_value()):
        raise ChannelConfigError(
            "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
        )


def api_base_url(settings: Settings) -> str:
    """The Bot API base python-telegram-bot appends the token to."""
    return f"{settings.telegram_api_base_url}/bot"


def make_bot(settings: Settings) -> Bot:
    if settings.telegram_bot_token is None:
        raise ChannelConfigError("TELEGRAM_BOT_TOKEN is not set")
    return Bot(settings.telegram_bot_token.get_secret_value(), base_url=api_base_url(settings))


# --- rendering ---------------------------------------------------------------------------------


def _escaped_chunks(text: str, raw_limit: int = MAX_MESSAGE) -> list[str]:
    """`text` HTML-escaped in pieces of at most MAX_MESSAGE characters each."""
    pieces: list[str] = []
    for chunk in split_text(text, raw_limit):
        escaped = html.escape(chunk, quote=False)
        if len(escaped) <= MAX_MESSAGE:
            pieces.append(escaped)
        else:  # escaping lengthened it ('&' -> '&amp;'): split the raw text finer
            smaller = max(1, raw_limit * MAX_MESSAGE // len(escaped) - 8)
            pieces.extend(_escaped_chunks(chunk, smaller))
    return pieces


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _table_blocks(table: Table) -> list[str]:
    """A table as `<pre>` blocks (monospace columns), each under the message limit."""
    rows = [[_cell(c) for c in table.columns]]
    rows += [[_cell(c) for c in row] for row in table.rows[:MAX_TABLE_ROWS]]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in rows
    ]
    if len(table.rows) > MAX_TABLE_ROWS:
        lines.append(f"... and {len(table.rows) - MAX_TABLE_ROWS} more")
    blocks: list[str] = []
    if table.title:
        blocks.append(f"<b>{html.escape(table.title, quote=False)}</b>")
    current: list[str] = []
    budget = MAX_MESSAGE - len("<pre></pre>")
    for line in lines:
        escaped = html.escape(line, quote=False)[:budget]
        if current and len("\n".join([*current, escaped])) > budget:
            blocks.append("<pre>" + "\n".join(current) + "</pre>")
            current = []
        current.append(escaped)
    if current:
        blocks.append("<pre>" + "\n".join(current) + "</pre>")
    return blocks


def render_html(reply: Reply) -> list[str]:
    """The reply as Telegram HTML messages, each at most 4096 characters."""
    blocks = _escaped_chunks(reply.text) if reply.text.strip() else []
    if reply.table and reply.table.rows:
        blocks += _table_blocks(reply.table)
    if reply.citations:
        sources = "; ".join(
            f"#{c.communication_id} ({' '.join(filter(None, [c.store, c.date]))})"
            for c in reply.citations
        )
        blocks += [f"<i>{chunk}</i>" for chunk in _escaped_chunks("Sources: " + sources, 3000)]
    if reply.notice:
        blocks += [f"<i>{chunk}</i>" for chunk in _escaped_chunks(reply.notice, 3000)]
    messages: list[str] = []
    for block in blocks:
        if messages and len(messages[-1]) + 2 + len(block) <= MAX_MESSAGE:
            messages[-1] += "\n\n" + block
        else:
            messages.append(block)
    return messages or ["…"]


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """The reply's buttons as an inline keyboard (payloads become callback data)."""
    buttons = [
        InlineKeyboardButton(b.label[:64], callback_data=b.payload)
        for b in reply.buttons
        if 0 < len(b.payload.encode()) <= MAX_CALLBACK_DATA
    ]
    if len(buttons) < len(reply.buttons):
        log.warning("buttons with callback data over 64 bytes were left out")
    if not buttons:
        return None
    if len(buttons) <= 3 and all(len(b.text) <= 12 for b in buttons):
        return InlineKeyboardMarkup([buttons])
    return InlineKeyboardMarkup([[b] for b in buttons])


# --- sending -----------------------------------------------------------------------------------


class _Bucket:
    """A token bucket that lends tokens ahead: `reserve` says how long to wait for one."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def reserve(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def idle(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class SendLimiter:
    """Telegram's send limits: about `per_chat` messages a second in one chat (bursts of
    `chat_burst`) and `overall` a second across all chats."""

    def __init__(
        self, *, per_chat: float = 1.0, chat_burst: float = 3.0, overall: float = 30.0
    ) -> None:
        self.per_chat = per_chat
        self.chat_burst = chat_burst
        self.overall = _Bucket(overall, overall)
        self.chats: dict[str, _Bucket] = {}

    async def wait(self, chat: str) -> None:
        now = time.monotonic()
        bucket = self.chats.get(chat)
        if bucket is None:
            if len(self.chats) > 10_000:  # forget chats that have been quiet long enough
                self.chats = {k: b for k, b in self.chats.items() if not b.idle(now)}
            bucket = self.chats[chat] = _Bucket(self.per_chat, self.chat_burst)
        delay = max(bucket.reserve(now), self.overall.reserve(now))
        if delay > 0:
            await asyncio.sleep(delay)


def retry_after_seconds(error: Exception) -> float | None:
    """How long Telegram asked us to wait (a 429), else None."""
    if not isinstance(error, RetryAfter):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class TelegramOutbound(OutboundChannel):
    """Sends replies through the Bot API (`send_message` with HTML)."""

    name = "telegram"
    max_length = MAX_MESSAGE

    def __init__(
        self, bot: Bot, *, limiter: SendLimiter | None = None, owns_bot: bool = True
    ) -> None:
        self.bot = bot
        self.limiter = limiter or SendLimiter()
        self.owns_bot = owns_bot

    async def start(self) -> None:
        if self.owns_bot:
            await self.bot.initialize()

    async def aclose(self) -> None:
        if self.owns_bot:
            await self.bot.shutdown()

    async def send_text(self, recipient: str, text: str) -> None:
        for part in _escaped_chunks(text):
            await self._send(recipient, part)

    async def send_reply(self, recipient: str, reply: Reply) -> None:
        parts = render_html(reply)
        markup = keyboard(reply)
        for index, part in enumerate(parts):
            await self._send(recipient, part, markup if index == len(parts) - 1 else None)

    async def _send(
        self, chat_id: str, html_text: str, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        await self.limiter.wait(chat_id)
        await call_with_retry(
            lambda: self.bot.send_message(
                chat_id=int(chat_id),
                text=html_text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                disable_web_page_preview=True,
            ),
            retry_after=retry_after_seconds,
        )


def _outbound_from_settings(settings: Settings, engine: Engine) -> OutboundChannel | None:
    if settings.telegram_bot_token is None:
        return None
    return TelegramOutbound(make_bot(settings))


register_outbound(ROUTE, _outbound_from_settings)


# --- receiving ---------------------------------------------------------------------------------


def _button_label(update: Update, data: str) -> str:
    query = update.callback_query
    # An old message (over 48 hours) comes back inaccessible, without its keyboard.
    markup = getattr(query.message, "reply_markup", None) if query else None
    if isinstance(markup, InlineKeyboardMarkup):
        for row in markup.inline_keyboard:
            for button in row:
                if button.callback_data == data:
                    return button.text
    return data


def inbound_from_update(update: Update) -> InboundMessage | None:
    """The `InboundMessage` of a private-chat message or button press, else None."""
    message_id = str(update.update_id)
    query = update.callback_query
    if query is not None:
        chat = query.message.chat if query.message else None
        if chat is None or chat.type != "private" or not query.data:
            return None
        data = str(query.data)
        return InboundMessage(
            channel="telegram",
            sender=str(chat.id),
            text=_button_label(update, data)[:4000],
            message_id=message_id,
            button_payload=data,
        )
    message = update.message
    if message is None or message.chat.type != "private":
        return None
    # Anything without text (voice, photo, document, sticker, location ...) arrives empty and
    # gets the "text messages only" answer.
    return InboundMessage(
        channel="telegram",
        sender=str(message.chat.id),
        text=(message.text or "")[:4000],
        message_id=message_id,
    )


def install_handlers(
    application: Application[Any, Any, Any, Any, Any, Any], submit: Submit
) -> None:
    """Handlers that answer button presses and submit every private turn."""

    async def on_update(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        inbound = inbound_from_update(update)
        if update.callback_query is not None:
            with contextlib.suppress(TelegramError):
                await update.callback_query.answer()
        if inbound is None:
            log.info("Telegram update %s ignored (not a private chat turn)", update.update_id)
            return
        await submit(inbound)

    application.add_handler(CallbackQueryHandler(on_update))
    application.add_handler(MessageHandler(filters.UpdateType.MESSAGE, on_update))


def build_application(
    settings: Settings,
    submit: Submit,
    *,
    webhook: bool,
    post_init: Callable[[Any], Coroutine[Any, Any, None]] | None = None,
    post_shutdown: Callable[[Any], Coroutine[Any, Any, None]] | None = None,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The python-telegram-bot application with our handlers (no updater for webhooks)."""
    if settings.telegram_bot_token is None:
        raise ChannelConfigError("TELEGRAM_BOT_TOKEN is not set")
    builder = (
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(api_base_url(settings))
        .concurrent_updates(64)
    )
    if webhook:
        builder = builder.updater(None)
    if post_init is not None:
        builder = builder.post_init(post_init)
    if post_shutdown is not None:
        builder = builder.post_shutdown(post_shutdown)
    application = builder.build()
    install_handlers(application, submit)
    return application


class TelegramWebhook:
    """The webhook side of one app: the `Application`, the secret and recent update ids."""

    def __init__(self, settings: Settings, submit: Submit) -> None:
        check_settings(settings)
        assert settings.telegram_webhook_secret is not None
        self.settings = settings
        self.secret = settings.telegram_webhook_secret.get_secret_value().encode()
        self.application = build_application(settings, submit, webhook=True)
        self._recent: collections.OrderedDict[int, None] = collections.OrderedDict()

    def verify(self, header: str | None) -> bool:
        return header is not None and hmac.compare_digest(header.encode(), self.secret)

    def seen(self, update_id: int) -> bool:
        """Remember `update_id`; True if it was seen recently (a redelivery in this process)."""
        if update_id in self._recent:
            return True
        self._recent[update_id] = None
        if len(self._recent) > 10_000:
            self._recent.popitem(last=False)
        return False

    async def receive(self, data: dict[str, Any]) -> None:
        update = Update.de_json(data, self.application.bot)
        if self.seen(update.update_id):
            log.info("Telegram update %s redelivered: ignored", update.update_id)
            return
        await self.application.update_queue.put(update)

    async def drain(self) -> None:
        """Wait until every received update has been handled (tests, shutdown)."""
        await self.application.update_queue.join()

    async def register(self) -> None:
        """Point Telegram at this app's webhook (only with a public https address)."""
        base = self.settings.public_base_url.rstrip("/")
        if not base.startswith("https://"):
            log.warning(
                "PUBLIC_BASE_URL is not https: the Telegram webhook was not registered "
                "(use `mangalm telegram --polling` locally)"
            )
            return
        try:
            await self.application.bot.set_webhook(
                url=f"{base}/telegram/webhook",
                secret_token=self.secret.decode(),
                allowed_updates=ALLOWED_UPDATES,
            )
        except TelegramError as error:
            log.error("registering the Telegram webhook failed: %s", error)

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        try:
            await self.application.initialize()
        except InvalidToken as error:
            raise ChannelConfigError(
                f"TELEGRAM_BOT_TOKEN was refused by Telegram: {error}"
            ) from None
        await self.register()
        await self.application.start()
        try:
            yield
        finally:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.drain(), 10)
            await self.application.stop()
            await self.application.shutdown()


router = APIRouter(tags=["channels"])


@router.post("/telegram/webhook", include_in_schema=False)
async def telegram_webhook(request: Request) -> Response:
    """Telegram's updates: verified by the secret header, acknowledged at once."""
    hook: TelegramWebhook | None = getattr(request.app.state, "telegram", None)
    if hook is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Telegram is not enabled")
    if not hook.verify(request.headers.get(SECRET_HEADER)):
        log.warning("Telegram webhook with a missing or wrong secret token refused")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    try:
        data = await request.json()
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The body must be JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Not a Telegram update")
    try:
        await hook.receive(data)
    except (TelegramError, KeyError, TypeError, ValueError) as error:
        # A malformed update is logged and acknowledged: Telegram would only redeliver it.
        log.error("Telegram update %s could not be read: %s", data.get("update_id"), error)
    return Response(status_code=status.HTTP_200_OK)


# --- polling (local use) -----------------------------------------------------------------------


def run_polling(settings: Settings) -> None:
    """Answer Telegram with getUpdates until interrupted (no public address needed)."""
    from assistant.factory import build_assistant
    from channels.queue import ChannelRuntime
    from tools.db import database_url, make_engine

    if settings.telegram_bot_token is None:
        raise ChannelConfigError("TELEGRAM_BOT_TOKEN must be set to run the Telegram bot")
    engine = make_engine(database_url(settings))
    runtime = ChannelRuntime(
        settings, engine=lambda: engine, assistant=lambda: build_assistant(settings, engine)
    )
    stack = contextlib.AsyncExitStack()

    async def submit(message: InboundMessage) -> None:
        await runtime.submit(message, via=ROUTE)

    async def started(_: Any) -> None:
        await stack.enter_async_context(runtime.run())

    async def stopped(_: Any) -> None:
        await stack.aclose()

    application = build_application(
        settings, submit, webhook=False, post_init=started, post_shutdown=stopped
    )
    try:
        application.run_polling(allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False)
    finally:
        engine.dispose()
