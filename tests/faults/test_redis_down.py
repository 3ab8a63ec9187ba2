"""Redis stops while the app runs with `REDIS_URL`: the app keeps answering.

Sessions, rate limits and the webhook queue live in a Redis server of the test's own, which is
killed mid-conversation. The web chat goes on answering (follow-ups keep their context from
the in-process copy of the session), a signed SMS webhook is acknowledged and answered in
process, and the log and `mangalm_degraded{component="redis"}` say that Redis is missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.auth import create_access_token
from api.main import create_app
from tests.channels.twilio_support import (
    REP_PHONE,
    FakeTwilio,
    Shop,
    build_shop,
    drain,
    fake_twilio,
    inbound_sms,
    post_signed,
    twilio_settings,
)
from tests.faults.support import PrivateRedis
from tools.db import make_engine

DEGRADED_LINE = 'mangalm_degraded{component="redis"}'


@pytest.fixture(scope="module")
def shop_db(create_database: Callable[..., str]) -> Iterator[tuple[str, Engine, Shop]]:
    url = create_database(migrate=True)
    engine = make_engine(url)
    yield url, engine, build_shop(engine)
    engine.dispose()


@pytest.fixture()
def fake() -> Iterator[FakeTwilio]:
    yield from fake_twilio()


@pytest.fixture()
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.kill()


def _degraded(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(DEGRADED_LINE):
            return float(line.split()[-1])
    raise AssertionError("no redis degradation metric")


def _chat(client: TestClient, headers: dict[str, str], text: str) -> Any:
    response = client.post(
        "/api/chat", json={"text": text, "message_id": uuid.uuid4().hex}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_app_keeps_answering_when_redis_stops(
    shop_db: tuple[str, Engine, Shop],
    fake: FakeTwilio,
    private_redis: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, _engine, shop = shop_db
    settings = twilio_settings(url, fake, redis_url=private_redis.url)
    with TestClient(create_app(settings)) as client:
        token = create_access_token(shop.rep, settings).token
        headers = {"Authorization": f"Bearer {token}"}
        first = _chat(client, headers, "how much does Sharma General Store owe?")
        assert "Sharma General Store" in first["answer"]
        # The session is shared through Redis while it runs.
        keys = redis.Redis.from_url(private_redis.url).keys("mangalm:session:*")
        assert keys, "the session was not kept in Redis"
        assert _degraded(client) == 0

        private_redis.kill()
        follow_up = _chat(client, headers, "and what did they order last time?")
        assert follow_up["intent"] not in ("unavailable", "rate_limited")
        assert "Sharma General Store" in follow_up["answer"]
        assert _degraded(client) == 1
        assert "Redis unavailable for sessions" in caplog.text
        assert "rate limits fall back to in-process counters" in caplog.text

        # A webhook turn cannot be queued in Redis: it is acknowledged and answered here.
        question = inbound_sms("how much does Sharma General Store owe?")
        acknowledged = post_signed(client, "/twilio/sms", question)
        assert acknowledged.status_code == 200
        drain(client)
        [reply] = fake.to(REP_PHONE)
        assert "Sharma General Store" in reply
        assert "running webhook turns in this process" in caplog.text
        assert _degraded(client) == 1
