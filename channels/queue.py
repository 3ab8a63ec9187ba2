"""Background processing of webhook turns: in process by default, through Redis when
`REDIS_URL` is set.

A webhook verifies its request, parses it into an `InboundMessage` and calls
`await app.state.turns.submit(message, via=ROUTE)`, then answers 2xx. `via` names the outbound
route the reply goes back on ("telegram", "whatsapp-meta", "sms", "whatsapp-twilio", ...): a
channel name alone is not enough, since WhatsApp arrives through two providers.

- In process (`LocalTurnQueue`): the turn runs in a worker thread of the web process and the
  reply is sent from there (`channels.base.TurnRunner`).
- Redis (`RedisTurnQueue`, on the `saq` job queue): the web process only enqueues; a worker
  process (`mangalm worker`, `run_worker`) runs the turns and sends the replies. Each job's key
  is the route plus the provider's message id, so a redelivered webhook does not even make a
  second job while the first is known to Redis; past that, the assistant's unique constraint on
  (channel, message id) still makes the redelivery a duplicate that sends nothing.

Every turn goes through `ChannelHandler`: a message with nothing to read (a voice note, photo,
document or sticker arrives as empty text) gets `UNSUPPORTED_MEDIA`; a message from an unknown
sender that carries a link code is answered by `channels.linking`; everything else goes to the
assistant. All three deduplicate on the provider's message id.

Outbound channels register a factory under their route (`register_outbound`), called with the
settings and the engine; it returns None when the channel is not configured. A channel object
may have `async start()` and `async aclose()`, called when the queue starts and closes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import importlib
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Engine

from assistant.messages import InboundMessage, Reply
from assistant.turn import TurnResult
from channels.base import (
    WHATSAPP,
    ChannelConfigError,
    OutboundChannel,
    TurnRunner,
    record_whatsapp_window,
)
from channels.delivery import Deliveries
from channels.linking import answer_turn, is_unknown_sender, redeem_in_chat, wants_linking
from tools.observability import DEGRADED
from tools.settings import Settings

log = logging.getLogger(__name__)

QUEUE_NAME = "mangalm-turns"
# Seconds a turn job may run (an LLM planner with retries included) before the worker gives up.
JOB_TIMEOUT = 300
# Seconds a stopping worker gives running turns to finish (a container stop waits about 10).
SHUTDOWN_GRACE_SECONDS = 8
# How long Redis remembers a finished job's key (and so refuses the same key again).
JOB_TTL = 24 * 3600

UNSUPPORTED_MEDIA = (
    "I can read text messages only. Please type your question; voice notes, photos, "
    "documents, stickers and locations are not supported."
)

# Modules that register outbound channels when imported (a missing one is skipped).
CHANNEL_MODULES = (
    "channels.telegram",
    "channels.meta_whatsapp",
    "channels.twilio_messaging",
)

OutboundFactory = Callable[[Settings, Engine], OutboundChannel | None]
_FACTORIES: dict[str, OutboundFactory] = {}


def register_outbound(route: str, factory: OutboundFactory) -> None:
    """Make `factory(settings, engine)` the builder of the outbound channel for `route`."""
    _FACTORIES[route] = factory


def build_outbound(settings: Settings, engine: Engine) -> dict[str, OutboundChannel]:
    """The configured outbound channels by route (import `CHANNEL_MODULES` first)."""
    for name in CHANNEL_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    channels: dict[str, OutboundChannel] = {}
    for route, factory in _FACTORIES.items():
        channel = factory(settings, engine)
        if channel is not None:
            channels[route] = channel
    return channels


async def open_channels(channels: dict[str, OutboundChannel]) -> None:
    """Call `start()` on the channels that have one."""
    for channel in channels.values():
        start = getattr(channel, "start", None)
        if start is not None:
            await start()


async def close_channels(channels: dict[str, OutboundChannel]) -> None:
    """Call `aclose()` on the channels that have one (errors are logged)."""
    for route, channel in channels.items():
        close = getattr(channel, "aclose", None)
        if close is None:
            continue
        try:
            await close()
        except Exception:
            log.exception("closing the %s channel failed", route)


# --- one turn ----------------------------------------------------------------------------------


class ChannelHandler:
    """The turn handler of webhook channels: WhatsApp's 24-hour window, media, linking, then
    the assistant (blocking)."""

    def __init__(self, assistant: Any, settings: Settings) -> None:
        self.assistant = assistant
        self.settings = settings
        self.engine: Engine = assistant.engine

    def __call__(self, message: InboundMessage) -> TurnResult:
        if message.channel == WHATSAPP:
            record_whatsapp_window(self.engine, message)
        if not message.text.strip() and not message.button_payload:
            return answer_turn(
                self.engine,
                message,
                lambda _session: (Reply(text=UNSUPPORTED_MEDIA, intent="unsupported_media"), None),
            )
        code = wants_linking(message)
        if code is not None and is_unknown_sender(self.engine, message):
            return redeem_in_chat(self.engine, self.settings, message, code)
        result: TurnResult = self.assistant.handle(message)
        return result


TurnHandler = Callable[[InboundMessage], TurnResult]


class TurnQueue(abc.ABC):
    """Where webhooks put turns."""

    @abc.abstractmethod
    async def submit(self, message: InboundMessage, *, via: str) -> None:
        """Queue the turn; its reply goes out on the outbound channel of route `via`."""

    async def start(self) -> None:
        """Get ready to accept turns."""
        return None

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for the turns this process runs itself (none for a Redis queue)."""
        return None

    async def close(self) -> None:
        """Finish (or hand over) what is queued and release resources."""
        return None


class LocalTurnQueue(TurnQueue):
    """Runs each turn in this process, at most `max_concurrent` at a time."""

    def __init__(
        self,
        handle: TurnHandler,
        outbound: dict[str, OutboundChannel],
        *,
        max_concurrent: int = 8,
        deliveries: Deliveries | None = None,
    ) -> None:
        self.outbound = outbound
        self._runners = {
            route: TurnRunner(handle, {channel.name: channel}, deliveries=deliveries)
            for route, channel in outbound.items()
        }
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors = 0

    async def submit(self, message: InboundMessage, *, via: str) -> None:
        if via not in self._runners:
            raise ChannelConfigError(f"no outbound channel is configured for {via}")
        task = asyncio.create_task(self._run(message, via))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, message: InboundMessage, via: str) -> None:
        async with self._slots:
            try:
                await self._runners[via].process(message)
            except Exception:
                self.errors += 1
                log.exception("turn for %s message %s failed", via, message.message_id)

    async def drain(self, timeout: float = 30.0) -> None:
        while self._tasks:
            await asyncio.wait_for(
                asyncio.gather(*list(self._tasks), return_exceptions=True), timeout
            )

    async def close(self) -> None:
        try:
            await self.drain()
        finally:
            await close_channels(self.outbound)


class QueueUnavailable(RuntimeError):
    """The shared (Redis) queue cannot be reached."""


def job_key(message: InboundMessage, via: str) -> str | None:
    """The queue key of a turn: route and provider message id (None without an id)."""
    return f"{via}:{message.message_id}" if message.message_id else None


class RedisTurnQueue(TurnQueue):
    """Enqueues turns on the Redis queue read by `mangalm worker`."""

    def __init__(self, redis_url: str, *, name: str = QUEUE_NAME) -> None:
        from saq import Queue

        self.queue = Queue.from_url(redis_url, name=name)

    async def start(self) -> None:
        from redis.exceptions import RedisError

        try:
            await self.queue.connect()
        except (RedisError, OSError) as error:
            raise QueueUnavailable(f"Redis is unavailable: {error}") from error

    async def submit(self, message: InboundMessage, *, via: str) -> None:
        from redis.exceptions import RedisError

        extra: dict[str, Any] = {}
        key = job_key(message, via)
        if key is not None:
            extra["key"] = key
        try:
            job = await self.queue.enqueue(
                "process_turn",
                message=message.model_dump(mode="json"),
                via=via,
                timeout=JOB_TIMEOUT,
                ttl=JOB_TTL,
                retries=1,
                **extra,
            )
        except (RedisError, OSError) as error:
            raise QueueUnavailable(f"Redis is unavailable: {error}") from error
        if job is None:
            log.info("%s message %s is already queued: not queued again", via, message.message_id)

    async def close(self) -> None:
        from redis.exceptions import RedisError

        try:
            await self.queue.disconnect()
        except (RedisError, OSError) as error:
            # Nothing is lost: the jobs are in Redis (if it comes back) or ran in process.
            log.warning("turn queue: could not disconnect from Redis: %s", error)


# --- the app's side ----------------------------------------------------------------------------


class ChannelRuntime:
    """The app's turn queue (`app.state.turns`): local or Redis, per the settings.

    `engine` and `assistant` are called once the app starts (the embedded database and the
    planner are made on first use). `run()` is entered by the app's lifespan.

    When the Redis queue cannot be reached (at start or on a submit), turns run in this
    process instead, as without `REDIS_URL`: the webhook is still acknowledged and answered,
    and the log and the `mangalm_degraded{component="redis"}` metric say so. Each submit tries
    Redis first, so the queue is used again as soon as it answers.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Callable[[], Engine],
        assistant: Callable[[], Any],
        queue_name: str = QUEUE_NAME,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._assistant = assistant
        self.queue_name = queue_name
        self.queue: TurnQueue | None = None
        self._fallback: LocalTurnQueue | None = None
        self._fallback_lock = asyncio.Lock()
        self._handler: ChannelHandler | None = None
        self._lock = threading.Lock()

    def handle(self, message: InboundMessage) -> TurnResult:
        """Run one turn here (blocking): what the local queue calls in a worker thread."""
        if self._handler is None:
            with self._lock:
                if self._handler is None:
                    self._handler = ChannelHandler(self._assistant(), self.settings)
        return self._handler(message)

    async def _local_queue(self) -> LocalTurnQueue:
        engine = self._engine()
        outbound = build_outbound(self.settings, engine)
        await open_channels(outbound)
        return LocalTurnQueue(
            self.handle,
            outbound,
            max_concurrent=self.settings.turns_per_process,
            deliveries=Deliveries(engine),
        )

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[ChannelRuntime]:
        queue: TurnQueue
        if self.settings.redis_url:
            queue = RedisTurnQueue(self.settings.redis_url, name=self.queue_name)
            try:
                await queue.start()
            except QueueUnavailable as error:
                self._degraded(error)
        else:
            queue = await self._local_queue()
            await queue.start()
        self.queue = queue
        try:
            yield self
        finally:
            self.queue = None
            try:
                await queue.close()
            finally:
                fallback, self._fallback = self._fallback, None
                if fallback is not None:
                    await fallback.close()

    def _degraded(self, error: Exception) -> None:
        log.warning("turn queue: %s; running webhook turns in this process", error)
        DEGRADED.labels("redis").set(1)

    async def submit(self, message: InboundMessage, *, via: str) -> None:
        """Queue a turn (see `TurnQueue.submit`); in process while Redis is unavailable."""
        if self.queue is None:
            raise RuntimeError("the turn queue is not running (the app has not started)")
        try:
            await self.queue.submit(message, via=via)
        except QueueUnavailable as error:
            self._degraded(error)
            async with self._fallback_lock:
                if self._fallback is None:
                    self._fallback = await self._local_queue()
            await self._fallback.submit(message, via=via)
        else:
            if isinstance(self.queue, RedisTurnQueue):
                DEGRADED.labels("redis").set(0)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for turns running in this process."""
        if self.queue is not None:
            await self.queue.drain(timeout)
        if self._fallback is not None:
            await self._fallback.drain(timeout)


# --- the worker --------------------------------------------------------------------------------


class WorkerRuntime:
    """What a worker process holds: the turn handler and the outbound channels."""

    def __init__(
        self,
        handle: TurnHandler,
        outbound: dict[str, OutboundChannel],
        *,
        deliveries: Deliveries | None = None,
    ) -> None:
        self.outbound = outbound
        self.runners = {
            route: TurnRunner(handle, {channel.name: channel}, deliveries=deliveries)
            for route, channel in outbound.items()
        }

    async def process(self, message: InboundMessage, via: str) -> TurnResult:
        runner = self.runners.get(via)
        if runner is None:
            raise ChannelConfigError(f"no outbound channel is configured for {via}")
        result: TurnResult = await runner.process(message)
        return result


async def process_turn(ctx: Any, *, message: dict[str, Any], via: str) -> dict[str, Any]:
    """The queue job: run one turn and send its reply (nothing for a duplicate)."""
    runtime: WorkerRuntime = ctx["mangalm"]
    inbound = InboundMessage.model_validate(message)
    result = await runtime.process(inbound, via)
    return {"turn_id": result.turn_id, "intent": result.intent, "duplicate": result.duplicate}


def make_worker(
    settings: Settings,
    *,
    engine: Engine | None = None,
    burst: bool = False,
    concurrency: int = 8,
    queue_name: str = QUEUE_NAME,
) -> Any:
    """A `saq.Worker` for the turn queue at `REDIS_URL` (`burst`: stop once it is empty)."""
    from saq import Queue, Worker

    from assistant.factory import build_assistant, warm_up
    from tools.db import database_url, make_engine

    if not settings.redis_url:
        raise ChannelConfigError("REDIS_URL must be set to run a worker")
    queue = Queue.from_url(settings.redis_url, name=queue_name)
    owned: list[Engine] = []

    async def startup(ctx: Any) -> None:
        used = engine
        if used is None:
            used = await asyncio.to_thread(make_engine, database_url(settings))
            owned.append(used)
        assistant = build_assistant(settings, used)
        try:
            await asyncio.to_thread(warm_up, assistant)
        except Exception as error:  # the database may be down at start; turns will wait
            log.warning("worker warm-up skipped: %s", error.__class__.__name__)
        outbound = build_outbound(settings, used)
        await open_channels(outbound)
        ctx["mangalm"] = WorkerRuntime(
            ChannelHandler(assistant, settings), outbound, deliveries=Deliveries(used)
        )
        log.info("worker ready: routes %s", ", ".join(sorted(outbound)) or "none")

    async def shutdown(ctx: Any) -> None:
        runtime: WorkerRuntime | None = ctx.get("mangalm")
        if runtime is not None:
            await close_channels(runtime.outbound)
        for made in owned:
            made.dispose()

    return Worker(
        queue,
        functions=[("process_turn", process_turn)],
        concurrency=concurrency,
        startup=startup,
        shutdown=shutdown,
        burst=burst,
        dequeue_timeout=1.0 if burst else 0.0,
        # At shutdown, running turns get this long to finish. saq waits the whole period while
        # any task (its idle pollers included) is alive, so a burst run, which stops only once
        # every turn is done, uses none.
        shutdown_grace_period_s=None if burst else SHUTDOWN_GRACE_SECONDS,
    )


async def run_worker(worker: Any) -> None:
    """Connect the worker's queue and process jobs until stopped (or empty, in burst mode)."""
    await worker.queue.connect()
    try:
        await worker.start()
    finally:
        await worker.queue.disconnect()
