"""The turn queue: in process, and through Redis with a real worker (burst mode).

Whichever way a turn runs, a webhook delivered five times gives one reply and one write, a
message with nothing to read gets the text-only answer, and a turn for a route with no
outbound channel is refused rather than lost silently.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from assistant.factory import build_assistant
from assistant.messages import InboundMessage, Reply
from assistant.turn import TurnResult
from channels import queue as turn_queue
from channels.base import ChannelConfigError
from channels.queue import (
    UNSUPPORTED_MEDIA,
    ChannelHandler,
    LocalTurnQueue,
    RedisTurnQueue,
    make_worker,
    run_worker,
)
from tests.channels.support import (
    DRAFT_TEXT,
    REP_TELEGRAM_ID,
    SECRET,
    Recorder,
    World,
    build_world,
    count_orders,
)
from tests.factories import TODAY
from tools.settings import Settings, load_settings

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="module")
def world(create_database: Callable[..., str]) -> World:
    return build_world(create_database)


def _settings(world: World, **extra: Any) -> Settings:
    return load_settings(
        database_url=world.url,
        secret_key=SECRET,
        environment="test",
        rate_limit_per_user="1000/minute",
        **extra,
    )


def _message(text: str, message_id: str, **extra: Any) -> InboundMessage:
    return InboundMessage(
        channel="telegram",
        sender=str(REP_TELEGRAM_ID),
        text=text,
        message_id=message_id,
        **extra,
    )


def _five_times(queue: Any, message: InboundMessage, via: str) -> Any:
    return asyncio.gather(*(queue.submit(message, via=via) for _ in range(5)))


def test_local_queue_five_deliveries_one_reply_one_order(world: World) -> None:
    settings = _settings(world)
    handler = ChannelHandler(build_assistant(settings, world.engine, today=TODAY), settings)
    recorder = Recorder("telegram")
    queue = LocalTurnQueue(handler, {"telegram": recorder})
    run_id = uuid.uuid4().hex
    before = count_orders(world.engine, world.store_id)

    async def scenario() -> None:
        await _five_times(queue, _message(DRAFT_TEXT, f"{run_id}-1"), "telegram")
        await queue.drain()
        assert len(recorder.sent) == 1
        assert "Shall I place it?" in recorder.sent[0][1]
        await _five_times(
            queue, _message("Yes", f"{run_id}-2", button_payload="confirm:yes"), "telegram"
        )
        await queue.drain()

    asyncio.run(scenario())
    assert len(recorder.sent) == 2
    assert recorder.sent[1][0] == str(REP_TELEGRAM_ID)
    assert "placed" in recorder.sent[1][1]
    assert count_orders(world.engine, world.store_id) == before + 1
    assert queue.errors == 0


def test_media_message_gets_the_text_only_answer_once(world: World) -> None:
    settings = _settings(world)
    handler = ChannelHandler(build_assistant(settings, world.engine, today=TODAY), settings)
    recorder = Recorder("telegram")
    queue = LocalTurnQueue(handler, {"telegram": recorder})

    async def scenario() -> None:
        await _five_times(queue, _message("", f"media-{uuid.uuid4().hex}"), "telegram")
        await queue.drain()

    asyncio.run(scenario())
    assert recorder.sent == [(str(REP_TELEGRAM_ID), UNSUPPORTED_MEDIA)]


def test_turn_for_an_unconfigured_route_is_refused(world: World) -> None:
    queue = LocalTurnQueue(lambda message: None, {"telegram": Recorder()})  # type: ignore[arg-type,return-value]

    async def scenario() -> None:
        with pytest.raises(ChannelConfigError, match="whatsapp-meta"):
            await queue.submit(_message("hi", "x"), via="whatsapp-meta")

    asyncio.run(scenario())


def test_local_queue_runs_as_many_turns_at_once_as_the_setting_allows(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(world, turns_per_process=2)
    recorder = Recorder("telegram")
    monkeypatch.setattr(turn_queue, "build_outbound", lambda *_: {"telegram": recorder})
    lock = threading.Lock()
    running = peak = 0

    def handle(message: InboundMessage) -> TurnResult:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.1)
        with lock:
            running -= 1
        return TurnResult(turn_id="", reply=Reply(text="ok", intent="help"), intent="help")

    runtime = turn_queue.ChannelRuntime(
        settings, engine=lambda: world.engine, assistant=lambda: None
    )
    runtime.handle = handle  # type: ignore[method-assign]
    run_id = uuid.uuid4().hex

    async def scenario() -> None:
        queue = await runtime._local_queue()
        for i in range(6):
            await queue.submit(_message("hi", f"{run_id}-{i}"), via="telegram")
        await queue.drain()

    asyncio.run(scenario())
    assert peak == 2
    assert len(recorder.sent) == 6


# --- Redis -------------------------------------------------------------------------------------


@pytest.fixture()
def redis_recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """A recording outbound channel registered as route "test-recorder" for the worker."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.fail("Redis is not answering on 127.0.0.1:6379")
    for key in client.scan_iter("mangalm:session:*"):
        client.delete(key)
    recorder = Recorder("telegram")
    monkeypatch.setitem(turn_queue._FACTORIES, "test-recorder", lambda settings, engine: recorder)
    yield recorder
    client.close()


def test_redis_queue_worker_sends_one_reply_and_places_one_order(
    world: World, redis_recorder: Recorder
) -> None:
    settings = _settings(world, redis_url=REDIS_URL)
    name = f"test-turns-{uuid.uuid4().hex[:8]}"
    producer = RedisTurnQueue(REDIS_URL, name=name)
    run_id = uuid.uuid4().hex
    before = count_orders(world.engine, world.store_id)

    async def burst() -> None:
        await run_worker(make_worker(settings, burst=True, queue_name=name))

    async def scenario() -> None:
        await producer.start()
        try:
            await _five_times(producer, _message(DRAFT_TEXT, f"{run_id}-1"), "test-recorder")
            # The webhook side only enqueued: one job for five deliveries, nothing sent yet.
            assert await producer.queue.count("queued") == 1
            assert redis_recorder.sent == []
            await burst()
            assert len(redis_recorder.sent) == 1
            await _five_times(
                producer,
                _message("Yes", f"{run_id}-2", button_payload="confirm:yes"),
                "test-recorder",
            )
            await burst()
        finally:
            await producer.close()

    asyncio.run(scenario())
    assert [r for r, _ in redis_recorder.sent] == [str(REP_TELEGRAM_ID)] * 2
    assert "Shall I place it?" in redis_recorder.sent[0][1]
    assert "placed" in redis_recorder.sent[1][1]
    assert count_orders(world.engine, world.store_id) == before + 1


def test_worker_needs_redis(world: World) -> None:
    with pytest.raises(ChannelConfigError, match="REDIS_URL"):
        make_worker(_settings(world))
