"""The in-process moving window (`assistant.ratelimit.LocalMovingWindow`)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import limits.storage.memory as memory
import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from assistant.ratelimit import LocalMovingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_up_to_the_amount_within_the_window_then_as_hits_age_out() -> None:
    clock = Clock()
    window = LocalMovingWindow(clock)
    item = parse("3/minute")
    assert [window.hit(item, "user", "7") for _ in range(4)] == [True, True, True, False]
    clock.now += 30
    assert window.hit(item, "user", "7") is False  # the three hits are 30 s old
    clock.now += 30.5
    # All three aged out; a refused hit was not recorded, so three more are allowed.
    assert [window.hit(item, "user", "7") for _ in range(4)] == [True, True, True, False]


def test_the_window_moves_hit_by_hit() -> None:
    clock = Clock()
    window = LocalMovingWindow(clock)
    item = parse("2/second")
    assert window.hit(item, "k")
    clock.now += 0.6
    assert window.hit(item, "k")
    assert not window.hit(item, "k")
    clock.now += 0.5  # the first hit is 1.1 s old, the second 0.5 s
    assert window.hit(item, "k")
    assert not window.hit(item, "k")


def test_keys_and_limits_are_counted_apart() -> None:
    window = LocalMovingWindow(Clock())
    per_user, per_channel = parse("1/minute"), parse("2/minute")
    assert window.hit(per_user, "user", "1")
    assert not window.hit(per_user, "user", "1")
    assert window.hit(per_user, "user", "2")
    assert window.hit(per_channel, "channel", "sms")
    assert window.hit(per_channel, "channel", "sms")
    assert not window.hit(per_channel, "channel", "sms")
    assert window.hit(per_channel, "channel", "telegram")


def test_decides_as_the_limits_librarys_moving_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same hits at the same times get the same answers as `limits`' own in-memory moving
    window (times from a fixed pattern of bursts and pauses, well inside its timer's reach)."""
    clock = Clock()
    ours = LocalMovingWindow(clock)
    storage = MemoryStorage()
    theirs = MovingWindowRateLimiter(storage)
    item = parse("5/second")
    gaps = [0.05, 0.05, 0.05, 0.3, 0.05, 0.4, 0.05, 0.05, 0.7, 0.02, 0.02, 0.02, 0.02, 0.02]
    # The library's storage reads the same clock (only its module's `time` is replaced).
    monkeypatch.setattr(memory, "time", SimpleNamespace(time=clock))
    answers = []
    for gap in gaps * 3:
        clock.now += gap
        answers.append((ours.hit(item, "k"), theirs.hit(item, "k")))
    storage.timer.cancel()
    assert [a for a, _ in answers] == [b for _, b in answers]
    assert {a for a, _ in answers} == {True, False}


def test_idle_keys_are_dropped() -> None:
    clock = Clock()
    window = LocalMovingWindow(clock)
    window.SWEEP_EVERY = 10
    item = parse("100/minute")
    for user in range(9):
        window.hit(item, "user", str(user))
    assert window.keys() == 9
    clock.now += 61
    window.hit(item, "user", "busy")  # the tenth hit sweeps: only the key hit just now stays
    assert window.keys() == 1
    assert window.hit(item, "user", "0")  # a dropped key starts afresh
    # A key whose every hit was refused (a limit of none) holds no times: swept all the same.
    nothing = parse("0/minute")
    assert not window.hit(nothing, "user", "blocked")
    clock.now += 61
    for _ in range(10):
        window.hit(item, "user", "busy")
    assert window.keys() == 1


def test_concurrent_hits_never_exceed_the_amount() -> None:
    window = LocalMovingWindow()
    item = parse("500/minute")
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = [window.hit(item, "channel", "sms") for _ in range(200)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 500
    assert len(allowed) == 1600
