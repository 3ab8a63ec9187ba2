"""The number check: no number in a reply without a tool result behind it."""

from __future__ import annotations

from typing import Any

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


def test_the_quick_check_agrees_with_the_full_set_of_allowed_numbers() -> None:
    """`check_grounded` skips work when it can; what it lets through must not change."""
    import random
    from decimal import Decimal

    from assistant.grounding import allowed_numbers, ungrounded_numbers

    rng = random.Random(7)

    def figure() -> Any:
        kind = rng.randrange(5)
        if kind == 0:
            return rng.randrange(-500, 100_000)
        if kind == 1:
            return round(rng.uniform(-1000, 250_000), rng.choice((1, 2, 3)))
        if kind == 2:
            return round(rng.random(), 3)  # a share, shown as a percentage
        if kind == 3:
            return f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        return f"Shop No {rng.randrange(1, 200)}, Sector {rng.randrange(1, 60)}"

    def shown(value: Any) -> str:
        if isinstance(value, str):
            return value
        number = Decimal(str(value))
        form = rng.randrange(4)
        if form == 0:
            return f"{number:,}"
        if form == 1:
            return f"{number.quantize(Decimal(1)):,}"
        if form == 2:
            return f"{(number * 100).quantize(Decimal('0.1'))}%"
        return str(number + rng.choice((1, -1, Decimal("0.5"))))  # not in any result

    agreed = caught = 0
    for _ in range(400):
        results = [{"rows": [figure() for _ in range(rng.randrange(0, 8))]}, rng.randrange(99)]
        said = f"book {rng.randrange(1, 50)} cases"
        values = [v for v in results[0]["rows"]] + [results[1]]  # type: ignore[index]
        reply = " and ".join(shown(rng.choice(values)) for _ in range(rng.randrange(0, 4)))
        expected = ungrounded_numbers(reply, allowed_numbers(results, said))
        try:
            check_grounded(reply, results, said)
            found: list[str] = []
        except UngroundedNumber as error:
            found = error.numbers
            caught += 1
        assert found == expected, reply
        agreed += 1
    assert agreed == 400 and 50 < caught < 350
