"""The number check: every number in a reply must come from a tool result of the same turn.

Numbers are compared as values, not strings: "Rs 18,400" matches a result of 18400.0, "12.5%"
matches 12.5 (or 0.125 shown as a percentage), and a date "25 Nov 2026" is allowed when a result
holds 2026-11-25. Numbers the person wrote themselves ("10 cases") may be repeated back.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

NUMBER = re.compile(r"(?<![\w.\-/#])-?\d[\d,]*(?:\.\d+)?(?![\w\-/])")
ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


class UngroundedNumber(ValueError):
    """A reply states a number that no tool result of the turn contains."""

    def __init__(self, numbers: list[str]) -> None:
        super().__init__("numbers not found in any tool result: " + ", ".join(numbers))
        self.numbers = numbers


def _to_decimal(raw: str) -> Decimal | None:
    try:
        return Decimal(raw.replace(",", ""))
    except InvalidOperation:
        return None


def _variants(value: Decimal) -> set[Decimal]:
    """A value and how it may be shown: rounded, as a percentage, in thousands/lakhs."""
    out = {value, abs(value)}
    for places in (0, 1, 2):
        q = Decimal(1).scaleb(-places)
        out.add(value.quantize(q))
        out.add(abs(value).quantize(q))
        pct = value * 100
        out.add(pct.quantize(q))
        out.add(abs(pct).quantize(q))
    return out


def _figures(results: Iterable[Any]) -> tuple[set[Decimal], set[Decimal]]:
    """(shown as they are, shown in any format): the dates' parts, and every other number
    in the results."""
    plain: set[Decimal] = set()
    varied: set[Decimal] = set()

    def text(value: str) -> None:
        match = ISO_DATE.match(value)
        if match:
            plain.update(Decimal(int(part)) for part in match.groups())
        for raw in NUMBER.findall(value):
            number = _to_decimal(raw)
            if number is not None:
                varied.add(number)

    def walk(value: Any) -> None:
        # The kinds JSON results are made of first, by their exact type (the cheap test).
        kind = type(value)
        if kind is dict:
            for item in value.values():
                walk(item)
            return
        if kind is list:
            for item in value:
                walk(item)
            return
        if kind is str:
            text(value)
            return
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float | Decimal):
            varied.add(Decimal(str(value)))
        elif isinstance(value, dt.date):
            plain.update({Decimal(value.year), Decimal(value.month), Decimal(value.day)})
        elif isinstance(value, str):
            text(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set):
            for item in value:
                walk(item)

    for result in results:
        walk(result)
    return plain, varied


def _written(text: str) -> list[tuple[str, Decimal | None]]:
    return [(raw, _to_decimal(raw)) for raw in NUMBER.findall(text)]


def allowed_numbers(results: Iterable[Any], extra_text: str = "") -> set[Decimal]:
    """Every number a reply may use, from tool results (and the user's own message)."""
    plain, varied = _figures(results)
    allowed = set(plain)
    for value in varied:
        allowed.update(_variants(value))
    allowed.update(number for _, number in _written(extra_text) if number is not None)
    return allowed


def ungrounded_numbers(text: str, allowed: set[Decimal]) -> list[str]:
    """Numbers in `text` that are not in `allowed`."""
    return [raw for raw, number in _written(text) if number is not None and number not in allowed]


def check_grounded(text: str, results: Iterable[Any], user_text: str = "") -> None:
    """Raise `UngroundedNumber` when `text` has a number no result (or the user) gave.

    The same check as `ungrounded_numbers(text, allowed_numbers(results, user_text))`, done
    lazily: a reply without numbers costs nothing, and the roundings and percentages of every
    figure are worked out only when a number is not found as it is.
    """
    written = [(raw, number) for raw, number in _written(text) if number is not None]
    if not written:
        return
    plain, varied = _figures(results)
    said = {number for _, number in _written(user_text) if number is not None}
    exact = plain | varied | {abs(value) for value in varied} | said
    if all(number in exact for _, number in written):
        return
    allowed = exact
    for value in varied:
        allowed.update(_variants(value))
    missing = [raw for raw, number in written if number not in allowed]
    if missing:
        raise UngroundedNumber(missing)
