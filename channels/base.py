"""What every channel shares: the outbound interface, message splitting, and the turn runner.

A channel is one file in this package with
- an input side: a FastAPI router whose webhook verifies the provider's signature or secret
  first, parses the request into an `InboundMessage` (with the provider's message id), hands it
  to the `TurnRunner` and answers 2xx at once;
- an output side: an `OutboundChannel` whose only required method is `send_text`; buttons,
  tables and charts fall back to text (`Reply.as_text()`), split under the medium's limit.

The `TurnRunner` processes turns in the background: in process by default, or through the
Redis-backed queue when `REDIS_URL` is set (see `channels.queue`). A redelivered webhook is a
duplicate turn (the assistant deduplicates on the provider's message id with a database
unique constraint): it never produces a second order, and it sends nothing unless the first
turn's reply was never delivered (`channels.delivery`), so the person gets exactly one reply.
While the database is unavailable a turn is kept and tried again with a growing pause for up
to `DATABASE_RETRY_SECONDS`; only then does the person hear that it is temporarily
unavailable. Exceptions are logged, never leaked to the provider.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine, bindparam, func
from sqlalchemy.dialects.postgresql import insert

from assistant.messages import InboundMessage, Reply
from assistant.turn import UNAVAILABLE, TurnResult
from channels.delivery import Deliveries
from tools.db import is_connection_error
from tools.models import ChannelWindow

log = logging.getLogger(__name__)

# How long a webhook turn is kept and retried while the database is unavailable (inside the
# queue job's timeout), and the pauses between tries.
DATABASE_RETRY_SECONDS = 240.0
FIRST_RETRY_PAUSE = 0.5
LONGEST_RETRY_PAUSE = 10.0


class ChannelConfigError(RuntimeError):
    """A channel is enabled without the secrets it needs (the app refuses to start)."""


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into parts of at most `limit` characters, at paragraph, line, sentence or
    word boundaries (in that order of preference); never loses or reorders characters."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for pattern in (r"\n\n", r"\n", r"(?<=[.!?])\s", r"\s"):
            matches = [m.end() for m in re.finditer(pattern, window)]
            if matches and matches[-1] > limit // 3:
                cut = matches[-1]
                break
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


class OutboundChannel(abc.ABC):
    """The sending side of a channel."""

    name: str = "channel"
    max_length: int = 4000

    @abc.abstractmethod
    async def send_text(self, recipient: str, text: str) -> None:
        """Send one plain-text message (at most `max_length` characters)."""

    async def send_reply(self, recipient: str, reply: Reply) -> None:
        """Send a whole reply; channels with buttons or rich elements override this."""
        for part in split_text(reply.as_text(), self.max_length):
            await self.send_text(recipient, part)


TurnHandler = Callable[[InboundMessage], Any]


def _unavailable(result: Any) -> bool:
    return getattr(result, "intent", None) == "unavailable"


class TurnRunner:
    """Runs turns of webhook channels in the background and sends the replies.

    `handle` is the assistant's `handle` (blocking; run in a worker thread). `channels` maps a
    channel name to its `OutboundChannel`. `deliveries` records which replies went out (on
    the turns' database), so a redelivery resends a reply whose send failed; without it a
    redelivery never sends. `submit` returns at once; `drain` waits for the in-process turns
    (used at shutdown and by tests).
    """

    def __init__(
        self,
        handle: TurnHandler,
        channels: dict[str, OutboundChannel],
        *,
        max_concurrent: int = 8,
        deliveries: Deliveries | None = None,
        retry_seconds: float = DATABASE_RETRY_SECONDS,
    ) -> None:
        self.handle = handle
        self.channels = channels
        self.deliveries = deliveries
        self.retry_seconds = retry_seconds
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrent)
        # The turns' threads: the standard library's executor hands a turn to a thread for
        # about half the CPU of anyio's `to_thread` (its queue and cancel scopes), measured.
        self._threads = ThreadPoolExecutor(max_concurrent, thread_name_prefix="turn")
        self.errors = 0

    async def submit(self, message: InboundMessage) -> None:
        """Queue `message` for processing and return immediately."""
        task = asyncio.create_task(self._guarded(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def process(self, message: InboundMessage) -> Any:
        """Run the turn and send its reply once (see the module docstring).

        A tracked turn's audit row is written with the delivery state "sending" (in the
        turn's own transaction, `InboundMessage.with_delivery_tracked`); "sent" or "failed"
        is recorded after the send.
        """
        if self.deliveries is not None and message.message_id:
            message = message.with_delivery_tracked()
        result = await self._run_turn(message)
        channel = self.channels.get(message.channel)
        if channel is None:
            raise ChannelConfigError(f"no outbound channel for {message.channel}")
        tracked = message.delivery_tracked and not _unavailable(result)
        if getattr(result, "duplicate", False):
            if not tracked or not await self._delivery("claim_resend", message):
                log.info(
                    "duplicate %s message %s: no reply sent", message.channel, message.message_id
                )
                return result
            log.warning(
                "%s message %s redelivered after its reply was not sent: sending it now",
                message.channel,
                message.message_id,
            )
        try:
            await channel.send_reply(message.sender, result.reply)
        except Exception:
            if tracked:
                await self._delivery("failed", message)
            raise
        if tracked:
            assert self.deliveries is not None
            # Recorded with the replies sent meanwhile by other turns (one statement).
            await self.deliveries.record_sent(message)
        return result

    async def _run_turn(self, message: InboundMessage) -> Any:
        """The turn's result; while the database is unavailable, the turn is tried again."""
        deadline = time.monotonic() + self.retry_seconds
        pause = FIRST_RETRY_PAUSE
        while True:
            try:
                result = await asyncio.get_running_loop().run_in_executor(
                    self._threads, contextvars.copy_context().run, self.handle, message
                )
            except Exception as error:
                if not is_connection_error(error):
                    raise
                result = TurnResult(
                    turn_id="",
                    reply=Reply(text=UNAVAILABLE, intent="unavailable"),
                    intent="unavailable",
                )
            if not _unavailable(result):
                return result
            if time.monotonic() + pause > deadline:
                log.error(
                    "%s message %s: the database stayed unavailable; the sender is told so",
                    message.channel,
                    message.message_id,
                )
                return result
            log.warning(
                "%s message %s kept: the database is unavailable, trying again in %.1f s",
                message.channel,
                message.message_id,
                pause,
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_RETRY_PAUSE)

    async def _delivery(self, step: str, message: InboundMessage) -> bool:
        """Record a delivery step; a failure to record is logged (the send still counts)."""
        assert self.deliveries is not None
        try:
            return bool(await anyio.to_thread.run_sync(getattr(self.deliveries, step), message))
        except Exception:
            log.warning(
                "%s message %s: could not record delivery step %s",
                message.channel,
                message.message_id,
                step,
                exc_info=True,
            )
            return False

    async def _guarded(self, message: InboundMessage) -> None:
        async with self._slots:
            try:
                await self.process(message)
            except Exception:
                self.errors += 1
                log.exception("turn for %s message %s failed", message.channel, message.message_id)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every submitted turn has finished."""
        if self._tasks:
            await asyncio.wait_for(
                asyncio.gather(*list(self._tasks), return_exceptions=True), timeout
            )


async def call_with_retry(
    send: Callable[[], Awaitable[Any]],
    *,
    attempts: int = 3,
    retry_after: Callable[[Exception], float | None],
) -> Any:
    """Call `send`, waiting and retrying when `retry_after(error)` says how long to wait."""
    for attempt in range(attempts):
        try:
            return await send()
        except Exception as error:
            wait = retry_after(error)
            if wait is None or attempt == attempts - 1:
                raise
            await asyncio.sleep(min(wait, 30.0))
    return None


# --- WhatsApp's 24-hour window -----------------------------------------------------------------

WHATSAPP = "whatsapp"


def phone_digits(value: str) -> str:
    """A phone number or WhatsApp address as its digits only (how windows are keyed)."""
    return re.sub(r"\D", "", value)


_NEW_WINDOW = insert(ChannelWindow).values(
    channel=bindparam("channel"), address=bindparam("address"), last_inbound_at=bindparam("at")
)
# Written once (the statement compiled once); a later message moves the window, an earlier one
# (a redelivery, messages out of order) leaves it.
_RECORD_WINDOW = _NEW_WINDOW.on_conflict_do_update(
    index_elements=[ChannelWindow.channel, ChannelWindow.address],
    set_={
        "last_inbound_at": func.greatest(
            ChannelWindow.last_inbound_at, _NEW_WINDOW.excluded.last_inbound_at
        )
    },
)


def record_whatsapp_window(engine: Engine, message: InboundMessage) -> None:
    """Note that the sender of a WhatsApp message (either provider) wrote to us at
    `message.received_at`: for 24 hours from then free text may be sent to them. One statement
    committed on its own.

    It is written when the turn runs, before its reply is sent, not while the webhook waits
    for its acknowledgement: the reply to the message is what needs the window, and the
    acknowledgement stays as cheap as any other channel's. A turn put off while the database
    is unavailable records it when it runs.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            _RECORD_WINDOW,
            {
                "channel": WHATSAPP,
                "address": phone_digits(message.sender),
                "at": message.received_at,
            },
        )
