"""Rate limits per user and per channel (moving windows from the `limits` library).

Counters live in Redis when `REDIS_URL` is set, so every API process shares them; otherwise in
process. If Redis stops answering, limits fall back to in-process counters (logged, and the
`mangalm_degraded{component="redis"}` metric is set) rather than refusing or failing turns.
"""

from __future__ import annotations

import logging

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from tools.observability import DEGRADED, RATE_LIMITED

log = logging.getLogger(__name__)

RATE_LIMITED_REPLY = (
    "You're sending messages faster than I can answer. Please wait a minute and try again."
)


class RateLimiter:
    """`allow(user_id, channel)` is False once the user or the channel is over its limit."""

    def __init__(self, *, per_user: str, per_channel: str, redis_url: str | None = None) -> None:
        self.per_user: RateLimitItem = parse(per_user)
        self.per_channel: RateLimitItem = parse(per_channel)
        self.memory = MovingWindowRateLimiter(MemoryStorage())
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
