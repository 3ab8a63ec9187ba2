"""The number check: no number in a reply without a tool result behind it."""

from __future__ import annotations

import pytest

from assistant.grounding import UngroundedNumber, check_grounded

RESULT = {
    "store": "S0042",
    "outstanding": 18400.5,
    "overdue_days": 45,
    "share": 0.125,
    "last_order_date": "2026-11-14",
}


def test_numbers_from_results_pass_in_any_format() -> None:
    check_grounded(
        "Sharma owes Rs 18,400.50 (Rs 18,400 rounded), 45 days overdue, 12.5% of sales; "
        "last order 14 Nov 2026.",
        [RESULT],
    )


def test_invented_number_is_caught() -> None:
    with pytest.raises(UngroundedNumber) as info:
        check_grounded("Sharma owes Rs 19,000.", [RESULT])
    assert info.value.numbers == ["19,000"]


def test_users_own_numbers_may_be_repeated() -> None:
    check_grounded("Booking 10 cases.", [], user_text="book 10 cases of maggi")
    with pytest.raises(UngroundedNumber):
        check_grounded("Booking 12 cases.", [], user_text="book 10 cases of maggi")


def test_codes_are_not_numbers() -> None:
    check_grounded("Store S0042 and order DM-000123.", [])
