"""Pydantic models shared by the domain tools.

Money is a `Decimal` in Python (exact, so figures can be checked to the paisa) and a number
rounded to two places in JSON, so every face of the tools (REST, MCP, the planners) sees plain
numbers. Dates are ISO dates.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

CENT = Decimal("0.01")


def to_money(value: object) -> Decimal:
    """A money amount as a Decimal with two places (None and missing count as zero)."""
    if value is None:
        return Decimal("0.00")
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


Money = Annotated[
    Decimal,
    BeforeValidator(to_money),
    PlainSerializer(lambda v: float(v), return_type=float, when_used="json"),
]


def pct_change(current: Decimal, previous: Decimal) -> float | None:
    """Change from `previous` to `current` in percent (None when there is no base)."""
    if previous == 0:
        return None
    return round(float((current - previous) / previous * 100), 1)


class Schema(BaseModel):
    """Base of every tool result."""

    model_config = ConfigDict(from_attributes=True)


class StoreRef(Schema):
    """A store as results name it."""

    id: int
    code: str
    name: str
    city: str | None = None
    region: str | None = None


class ProductRef(Schema):
    """A product as results name it."""

    id: int
    sku: str
    name: str
    brand: str | None = None
    category: str | None = None


class Candidate(Schema):
    """One possible match for a name someone typed."""

    id: int
    code: str
    name: str
    detail: str | None = None
    score: float


class Period(Schema):
    """A date range, both ends included."""

    name: str
    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _ref_to_text(value: object) -> object:
    # Planners and people pass ids as numbers as often as strings; both mean the same thing.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return value


Ref = Annotated[str, BeforeValidator(_ref_to_text), Field(min_length=1, max_length=200)]
"""How a tool argument names a store, product or order: an id, a code/SKU or a name."""
