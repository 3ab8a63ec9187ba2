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


def allowed_numbers(results: Iterable[Any], extra_text: str = "") -> set[Decimal]:
    """Every number a reply may use, from tool results (and the user's own message)."""
    allowed: set[Decimal] = set()

    def walk(value: Any) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float | Decimal):
            allowed.update(_variants(Decimal(str(value))))
        elif isinstance(value, dt.date):
            allowed.update({Decimal(value.year), Decimal(value.month), Decimal(value.day)})
        elif isinstance(value, str):
            match = ISO_DATE.match(value)
            if match:
                allowed.update(Decimal(int(part)) for part in match.groups())
            for raw in NUMBER.findall(value):
                number = _to_decimal(raw)
                if number is not None:
                    allowed.update(_variants(number))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set):
            for item in value:
                walk(item)

    for result in results:
        walk(result)
    for raw in NUMBER.findall(extra_text):
        number = _to_decimal(raw)
        if number is not None:
            allowed.add(number)
    return allowed


def ungrounded_numbers(text: str, allowed: set[Decimal]) -> list[str]:
    """Numbers in `text` that are not in `allowed`."""
    missing = []
    for raw in NUMBER.findall(text):
        number = _to_decimal(raw)
        if number is None or number in allowed:
            continue
        missing.append(raw)
    return missing


def check_grounded(text: str, results: Iterable[Any], user_text: str = "") -> None:
    """Raise `UngroundedNumber` when `text` has a number no result (or the user) gave."""
    missing = ungrounded_numbers(text, allowed_numbers(results, user_text))
    if missing:
        raise UngroundedNumber(missing)
