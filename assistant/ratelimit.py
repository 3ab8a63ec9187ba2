"""Rate limits per user and per channel (moving windows; limits written as the `limits`
library parses them, "30/minute").

Counters live in Redis when `REDIS_URL` is set (the `limits` library's moving window), so every
API process shares them; otherwise in process (`LocalMovingWindow`). If Redis stops answering,
limits fall back to in-process counters (logged, and the `mangalm_degraded{component="redis"}`
metric is set) rather than refusing or failing turns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from tools.observability import DEGRADED, RATE_LIMITED

log = logging.getLogger(__name__)

RATE_LIMITED_REPLY = (
    "You're sending messages faster than I can answer. Please wait a minute and try again."
)


class LocalMovingWindow:
    """Moving-window limits kept in this process: per key, the times of its hits within the
    window, oldest first. A hit is allowed while fewer than the limit's amount fall within
    the window, as `limits`' moving window decides it.

    Not `limits`' own `MemoryStorage`: to expire entries it starts a timer thread 10 ms after
    any hit that finds none running, and copies each key's list of entries when it fires. A
    web process answering a hundred messages a second started a thread for nearly every turn
    (about 3% of its CPU, measured with py-spy). Here a key's old hits are dropped when the
    key is hit again, and keys idle for a whole window are dropped every `SWEEP_EVERY` hits.
    """

    SWEEP_EVERY = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, tuple[float, deque[float]]] = {}
        self._lock = threading.Lock()
        self._since_sweep = 0

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Record a hit of `identifiers` against `item`; False (nothing recorded) when over."""
        key = item.key_for(*identifiers)
        window = float(item.get_expiry())
        now = self._clock()
        with self._lock:
            entry = self._hits.get(key)
            if entry is None:
                entry = self._hits[key] = (window, deque())
            hits = entry[1]
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= item.amount:
                return False
            hits.append(now)
            self._since_sweep += 1
            if self._since_sweep >= self.SWEEP_EVERY:
                self._sweep(now)
            return True

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        idle = [
            k for k, (window, hits) in self._hits.items() if not hits or hits[-1] <= now - window
        ]
        for key in idle:
            del self._hits[key]

    def keys(self) -> int:
        """How many keys are kept (for tests)."""
        with self._lock:
            return len(self._hits)


class RateLimiter:
    """`allow(user_id, channel)` is False once the user or the channel is over its limit."""

    def __init__(self, *, per_user: str, per_channel: str, redis_url: str | None = None) -> None:
        self.per_user: RateLimitItem = parse(per_user)
        self.per_channel: RateLimitItem = parse(per_channel)
        self.memory = LocalMovingWindow()
        self.shared = None
        if redis_url:
            storage = storage_from_string(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self.shared = MovingWindowRateLimiter(storage)

    def _hit(self, item: RateLimitItem, *keys: str) -> bool:
        if self.shared is not None:
            try:
                allowed = self.shared.hit(item, *keys)
                DEGRADED.labels("redis").set(0)
                return allowed
            except Exception as error:  # redis errors: fall back, never fail the turn
                log.warning("rate limits fall back to in-process counters: %s", error)
                DEGRADED.labels("redis").set(1)
        return self.memory.hit(item, *keys)

    def allow(self, user_id: int | str, channel: str) -> bool:
        if not self._hit(self.per_user, "user", str(user_id)):
            RATE_LIMITED.labels("user").inc()
            return False
        if not self._hit(self.per_channel, "channel", channel):
            RATE_LIMITED.labels("channel").inc()
            return False
        return True
