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
unique constraint) and sends nothing, so it can never produce a second reply or order.
Exceptions are logged, never leaked to the provider.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread

from assistant.messages import InboundMessage, Reply

log = logging.getLogger(__name__)


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


class TurnRunner:
    """Runs turns of webhook channels in the background and sends the replies.

    `handle` is the assistant's `handle` (blocking; run in a worker thread). `channels` maps a
    channel name to its `OutboundChannel`. `submit` returns at once; `drain` waits for the
    in-process turns (used at shutdown and by tests).
    """

    def __init__(
        self,
        handle: TurnHandler,
        channels: dict[str, OutboundChannel],
        *,
        max_concurrent: int = 8,
    ) -> None:
        self.handle = handle
        self.channels = channels
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrent)
        self.errors = 0

    async def submit(self, message: InboundMessage) -> None:
        """Queue `message` for processing and return immediately."""
        task = asyncio.create_task(self._guarded(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def process(self, message: InboundMessage) -> Any:
        """Run the turn and send its reply (unless it is a redelivered duplicate)."""
        result = await anyio.to_thread.run_sync(self.handle, message)
        if getattr(result, "duplicate", False):
            log.info("duplicate %s message %s: no reply sent", message.channel, message.message_id)
            return result
        channel = self.channels.get(message.channel)
        if channel is None:
            raise ChannelConfigError(f"no outbound channel for {message.channel}")
        await channel.send_reply(message.sender, result.reply)
        return result

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
