"""Sessions: in process, in Redis with a TTL, and surviving a Redis outage."""

from __future__ import annotations

import socket
import uuid

import pytest

from assistant.memory import (
    MemorySessionStore,
    RedisSessionStore,
    SessionState,
    make_session_store,
)


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def test_memory_store_round_trip_and_ttl() -> None:
    store = MemorySessionStore(ttl=60)
    state = SessionState(store={"id": 7, "name": "Sharma General Store"})
    state.remember_turn("hi", "hello")
    store.save("u1:web", state)
    loaded = store.load("u1:web")
    assert loaded.store == {"id": 7, "name": "Sharma General Store"}
    assert loaded.history == [{"user": "hi", "assistant": "hello"}]
    expired = MemorySessionStore(ttl=-1)
    expired.save("k", state)
    assert expired.load("k").store is None


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_redis_store_shares_sessions_between_processes() -> None:
    key = f"test:{uuid.uuid4().hex}"
    first = make_session_store("redis://127.0.0.1:6379/0")
    second = make_session_store("redis://127.0.0.1:6379/0")
    assert isinstance(first, RedisSessionStore)
    first.save(key, SessionState(last_intent="outstanding"))
    assert second.load(key).last_intent == "outstanding"
    ttl = first.client.ttl(f"mangalm:session:{key}")
    assert 0 < ttl <= first.ttl
    first.clear(key)
    assert second.load(key).last_intent is None


def test_redis_outage_degrades_to_memory() -> None:
    store = RedisSessionStore("redis://127.0.0.1:1/0")
    store.save("k", SessionState(last_intent="call_list"))
    assert store.degraded
    assert store.load("k").last_intent == "call_list"
