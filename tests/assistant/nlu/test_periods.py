"""Periods and quantities as reps write them."""

from __future__ import annotations

import datetime as dt

import pytest

from assistant.nlu.periods import named_period, parse_day, parse_period, parse_quantity

TODAY = dt.date(2026, 11, 25)  # a Wednesday


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("sales this month", "2026-11-01", "2026-11-25"),
        ("pichle mahine ka sale", "2026-10-01", "2026-10-31"),
        ("is hafte ki sale", "2026-11-23", "2026-11-25"),
        ("last week", "2026-11-16", "2026-11-22"),
        ("last quarter numbers", "2026-07-01", "2026-09-30"),
        ("sales last year", "2025-01-01", "2025-12-31"),
        ("last 30 days", "2026-10-27", "2026-11-25"),
        ("orders since diwali", "2026-11-08", "2026-11-25"),
        ("since deepawali kitna becha", "2026-11-08", "2026-11-25"),
        ("orders since 15 Oct", "2026-10-15", "2026-11-25"),
        ("sales in october", "2026-10-01", "2026-10-31"),
        ("sales in december", "2025-12-01", "2025-12-31"),
    ],
)
def test_periods(text: str, start: str, end: str) -> None:
    period = parse_period(text, TODAY)
    assert period is not None
    assert (period.start.isoformat(), period.end.isoformat()) == (start, end)


def test_no_period() -> None:
    assert parse_period("which stores should I call", TODAY) is None


def test_named_periods_round_trip() -> None:
    assert named_period("last_month", TODAY).as_args() == {"period": "last_month"}
    since = parse_period("since 15 Oct", TODAY)
    assert since is not None
    assert since.as_args() == {"start": "2026-10-15", "end": "2026-11-25"}


def test_days_never_in_the_future() -> None:
    assert parse_day("on 20 dec", TODAY) == dt.date(2025, 12, 20)
    assert parse_day("15/10", TODAY) == dt.date(2026, 10, 15)
    assert parse_day("31 feb", TODAY) is None


@pytest.mark.parametrize(
    ("text", "quantity"),
    [
        ("book 10 cases of parle-g for sharma", 10),
        ("dus dabbe maggi bhej do", 10),
        ("order 5 tata tea", 5),
        ("3 boxes", 3),
        ("what is the stock of maggi", None),
    ],
)
def test_quantities(text: str, quantity: int | None) -> None:
    assert parse_quantity(text) == quantity
