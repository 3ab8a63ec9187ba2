"""Conversation memory: what the last turns were about, and any write awaiting confirmation.

Sessions live in Redis (with a TTL) when `REDIS_URL` is set, so any API process can continue a
conversation; otherwise in process. When Redis stops answering, the store degrades to the
in-process copy and says so in the log and the `mangalm_degraded{component="redis"}` metric
instead of failing the turn.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from pydantic import BaseModel, Field

from tools.observability import DEGRADED

log = logging.getLogger(__name__)

SESSION_TTL_SECONDS = 60 * 60 * 12


class PendingAction(BaseModel):
    """A write the user has been asked to confirm."""

    tool: str
    args: dict[str, Any]
    summary: str
    expires_at: float


class SessionState(BaseModel):
    """What the assistant remembers between turns of one user on one channel."""

    store: dict[str, Any] | None = Field(default=None, description="last store: id, code, name")
    product: dict[str, Any] | None = None
    order: dict[str, Any] | None = None
    last_intent: str | None = None
    pending: PendingAction | None = None
    clarify: dict[str, Any] | None = Field(
        default=None, description="what a question back to the user was about"
    )
    history: list[dict[str, str]] = Field(default_factory=list)

    def remember_turn(self, text: str, answer: str, keep: int = 6) -> None:
        self.history = [*self.history, {"user": text, "assistant": answer}][-keep:]


class SessionStore(Protocol):
    def load(self, key: str) -> SessionState: ...

    def save(self, key: str, state: SessionState) -> None: ...

    def clear(self, key: str) -> None: ...


class MemorySessionStore:
    """In-process sessions with a TTL."""

    def __init__(self, ttl: int = SESSION_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._data: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> SessionState:
        with self._lock:
            item = self._data.get(key)
            if item is None or item[0] < time.time():
                self._data.pop(key, None)
                return SessionState()
            return SessionState.model_validate_json(item[1])

    def save(self, key: str, state: SessionState) -> None:
        with self._lock:
            self._data[key] = (time.time() + self.ttl, state.model_dump_json())

    def clear(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


class RedisSessionStore:
    """Sessions in Redis with a TTL; falls back to memory while Redis is unavailable."""

    def __init__(self, url: str, ttl: int = SESSION_TTL_SECONDS) -> None:
        import redis

        self.ttl = ttl
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.fallback = MemorySessionStore(ttl)
        self.degraded = False

    def _key(self, key: str) -> str:
        return f"mangalm:session:{key}"

    def _failed(self, error: Exception) -> None:
        if not self.degraded:
            log.warning("Redis unavailable for sessions, using in-process memory: %s", error)
        self.degraded = True
        DEGRADED.labels("redis").set(1)

    def _answered(self) -> None:
        if self.degraded:
            log.info("Redis answers again: sessions are shared again")
        self.degraded = False
        DEGRADED.labels("redis").set(0)

    def load(self, key: str) -> SessionState:
        try:
            raw = self.client.get(self._key(key))
        except Exception as error:  # redis.RedisError and socket errors
            self._failed(error)
            return self.fallback.load(key)
        self._answered()
        if raw is None:
            return self.fallback.load(key)
        return SessionState.model_validate_json(raw)

    def save(self, key: str, state: SessionState) -> None:
        self.fallback.save(key, state)
        try:
            self.client.set(self._key(key), state.model_dump_json(), ex=self.ttl)
            self._answered()
        except Exception as error:
            self._failed(error)

    def clear(self, key: str) -> None:
        self.fallback.clear(key)
        try:
            self.client.delete(self._key(key))
        except Exception as error:
            self._failed(error)


def make_session_store(redis_url: str | None) -> SessionStore:
    """Redis-backed when a URL is given, in-process otherwise."""
    if redis_url:
        return RedisSessionStore(redis_url)
    return MemorySessionStore()
