"""Order tools: a store's recent orders, one order's details, sales over a period, top products,
and stores that have stopped ordering.

Sales figures count placed and delivered orders (not drafts, cancellations or returns) and sum
order-line amounts. Period aggregates read the rollups (per day, per month, and their running
totals) for the days they cover and the live order tables for the days after them, so an order
booked a minute ago is counted without refreshing the rollups, and an order booked, cancelled
or back-dated after the refresh moves the switch to the live tables back to its day until the
next refresh. Everything is limited to the stores the actor may see.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from dateutil.relativedelta import relativedelta
from pydantic import Field
from sqlalchemy import (
    Date,
    Integer,
    Numeric,
    Row,
    Select,
    String,
    Subquery,
    case,
    cast,
    column,
    distinct,
    func,
    literal,
    null,
    select,
    table,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased, joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from tools.context import ToolContext
from tools.db import IntArray
from tools.models import Invoice, Order, OrderLine, Payment, Product, Store, User
from tools.registry import ToolError, tool
from tools.resolve import resolve_order, resolve_store
from tools.schemas import Money, Period, ProductRef, Ref, Schema, StoreRef, pct_change, to_money

SALES_STATUSES = ("placed", "delivered")


def _rollup(
    name: str, period: str, *keys: str, labels: tuple[str, ...] = (), extra: tuple[Any, ...] = ()
) -> Any:
    """A sales rollup's columns: its period column, its keys (ids, then text `labels`), then
    the figures (and `extra` columns)."""
    return table(
        name,
        column(period, Date),
        *(column(key, Integer) for key in keys),
        *(column(label, String) for label in labels),
        column("quantity", Integer),
        column("amount", Numeric(16, 2)),
        column("orders", Integer),
        *extra,
    )


# Per day, store and product (migration 0001); per day and store, per month and store, per
# month, rep and product (migration 0006).
sales_daily = _rollup("sales_daily", "day", "store_id", "product_id")
sales_store_daily = _rollup("sales_store_daily", "day", "store_id", "rep_id")
sales_store_monthly = _rollup("sales_store_monthly", "month", "store_id", "rep_id")
# Per month or day, rep, region and product (migrations 0006 and 0009).
sales_rep_monthly = _rollup(
    "sales_rep_monthly", "month", "rep_id", "product_id", labels=("region",)
)
sales_rep_daily = _rollup("sales_rep_daily", "day", "rep_id", "product_id", labels=("region",))
# Running totals of the monthly rollups per store, and per rep, region and product (migration
# 0013): each month's row holds everything up to the end of that month.
sales_store_cume = _rollup("sales_store_cume", "month", "store_id", "rep_id")
sales_rep_cume = _rollup("sales_rep_cume", "month", "rep_id", "product_id", labels=("region",))
# The same per day since January of last year (see migration 0013): each day's row holds
# everything from the views' first day up to that day; per store also the store's latest day
# with an order up to that day (migration 0015).
sales_store_cume_daily = _rollup(
    "sales_store_cume_daily", "day", "store_id", "rep_id", extra=(column("last_day", Date),)
)
# ... per rep, region and city (the stores' at the refresh, migration 0015).
sales_group_cume_daily = _rollup(
    "sales_group_cume_daily", "day", "rep_id", labels=("region", "city")
)
sales_rep_cume_daily = _rollup(
    "sales_rep_cume_daily", "day", "rep_id", "product_id", labels=("region",)
)
# ... per team and product (a rep's manager's team, migration 0016), with each user's team
# at the refresh ...
sales_team_cume_daily = _rollup("sales_team_cume_daily", "day", "team_id", "product_id")
sales_rollup_teams = table("sales_rollup_teams", column("user_id"), column("team_id"))
# ... and per region and product for the whole fleet.
sales_region_cume_daily = _rollup(
    "sales_region_cume_daily", "day", "product_id", labels=("region",)
)
sales_rollup_info = table("sales_rollup_info", column("refreshed_at"))
# Order days changed since the rollups' refresh (see migration 0007).
sales_changes = table("sales_changes", column("day"))
# Each store's latest placed or delivered order date, refreshed with the rollups (migration 0012).
store_last_sale = table("store_last_sale", column("store_id"), column("last_sale", Date))
# Stored last sales are used while the order days changed since the refresh go back at most
# this far; beyond it (a back-dated import not yet refreshed) each store is probed instead.
STORED_LAST_SALE_DAYS = 31


def last_sale_changes(session: Session, day: dt.date) -> tuple[dt.date | None, bool]:
    """The earliest order day changed since the rollups' refresh (None: nothing changed) and
    whether `store_last_sale` may be used (those changes go back at most
    `STORED_LAST_SALE_DAYS` before `day`).

    A store's stored date answers for it when it is before that day: every order that existed
    at the refresh is then unchanged, and the orders from that day on are read live. Other
    stores are probed in the orders table.
    """
    changed = session.execute(select(func.min(sales_changes.c.day))).scalar()
    usable = changed is None or changed >= day - dt.timedelta(days=STORED_LAST_SALE_DAYS)
    return changed, usable


class InvalidPeriod(ToolError):
    """A period the tools cannot understand."""

    code = "invalid_period"


# --------------------------------------------------------------------------- periods

PeriodUnit = Literal["day", "week", "month", "quarter", "year"]
_LAST_N = re.compile(r"^(?:last|past)_(\d{1,4})_(day|week|month)s?$")
PERIOD_NAMES = (
    "today, yesterday, this_week, last_week, this_month, last_month, this_quarter, "
    "last_quarter, this_year, last_year, last_N_days, last_N_weeks, last_N_months"
)


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _unit_start(day: dt.date, unit: PeriodUnit) -> dt.date:
    if unit == "day":
        return day
    if unit == "week":
        return day - dt.timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return _quarter_start(day)
    return dt.date(day.year, 1, 1)


def _unit_step(unit: PeriodUnit) -> relativedelta:
    return {
        "day": relativedelta(days=1),
        "week": relativedelta(weeks=1),
        "month": relativedelta(months=1),
        "quarter": relativedelta(months=3),
        "year": relativedelta(years=1),
    }[unit]


def resolve_period(
    today: dt.date,
    period: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> tuple[Period, PeriodUnit | None]:
    """A named period ("this_month", "last_30_days", ...) or explicit dates, as dates.

    Periods named "this_..." run to today. The unit (month, quarter, ...) is returned for
    calendar periods so comparisons can step back by one of them.
    """
    if start is not None or end is not None:
        start = start or end
        end = end or today
        assert start is not None
        if start > end:
            raise InvalidPeriod(f"The period starts ({start}) after it ends ({end}).")
        return Period(name=f"{start.isoformat()} to {end.isoformat()}", start=start, end=end), None
    name = re.sub(r"[\s\-]+", "_", (period or "this_month").strip().lower())
    if name == "today":
        return Period(name=name, start=today, end=today), "day"
    if name == "yesterday":
        day = today - dt.timedelta(days=1)
        return Period(name=name, start=day, end=day), "day"
    units: dict[str, PeriodUnit] = {
        "week": "week",
        "month": "month",
        "quarter": "quarter",
        "year": "year",
    }
    for word, unit in units.items():
        if name == f"this_{word}":
            return Period(name=name, start=_unit_start(today, unit), end=today), unit
        if name == f"last_{word}" or name == f"previous_{word}":
            this_start = _unit_start(today, unit)
            last_start = this_start - _unit_step(unit)
            return (
                Period(name=name, start=last_start, end=this_start - dt.timedelta(days=1)),
                unit,
            )
    match = _LAST_N.match(name)
    if match:
        count, unit_word = int(match.group(1)), match.group(2)
        if count < 1:
            raise InvalidPeriod("A period needs at least one day.")
        if unit_word == "day":
            first = today - dt.timedelta(days=count - 1)
        elif unit_word == "week":
            first = today - dt.timedelta(days=7 * count - 1)
        else:
            first = today - relativedelta(months=count) + dt.timedelta(days=1)
        return Period(name=name, start=first, end=today), None
    raise InvalidPeriod(
        f"Unknown period '{period}'. Use one of: {PERIOD_NAMES}, or start/end dates."
    )


def previous_period(period: Period, unit: PeriodUnit | None) -> Period:
    """The period to compare with: the one before, of the same length.

    A calendar period steps back one unit, keeping the same number of elapsed days for
    periods to date ("this month so far" compares with the same days of last month).
    """
    if unit is None or unit == "day":
        length = dt.timedelta(days=period.days)
        return Period(
            name=f"previous {period.days} days",
            start=period.start - length,
            end=period.end - length,
        )
    step = _unit_step(unit)
    start = period.start - step
    unit_end = period.start - dt.timedelta(days=1)
    end = min(start + (period.end - period.start), unit_end)
    return Period(name=f"previous {unit}", start=start, end=end)


def same_period_last_year(period: Period) -> Period:
    """The same dates one year earlier."""
    year = relativedelta(years=1)
    return Period(name="same period last year", start=period.start - year, end=period.end - year)


# --------------------------------------------------------------------------- sales source


def rollup_cutoff(ctx: ToolContext) -> dt.date:
    """Days before this come from the rollups, days from it on from the live order tables.

    The rollups hold every order as of their refresh, the newest rollup day included, and every
    order change since is logged in `sales_changes` (migration 0007): an order booked on that
    day after the refresh logs the day, which is then read live like every later one.
    """
    # Asked several times per tool call: looked up once per context, with the other facts
    # about the rollups a read may need (whether their stores' reps, regions and cities and
    # the users' teams are still those they were built with).
    if "rollup_newest_day" not in ctx.memo:
        newest, changed, rep_current, teams_current, *firsts = (
            ctx.session.connection().exec_driver_sql(_rollup_state_sql()).one()
        )
        ctx.memo["rollup_newest_day"] = newest
        ctx.memo["rollup_changed_day"] = changed
        ctx.memo["rep_rollup_current"] = bool(rep_current)
        ctx.memo["teams_current"] = bool(teams_current)
        # The first day of the daily running totals (None: they hold nothing).
        ctx.memo["cume_daily_first"] = None if None in firsts else max(firsts)
    newest = ctx.memo["rollup_newest_day"]
    if newest is None:
        return dt.date(1, 1, 1)
    # Orders changed since the refresh (a cancellation, a back-dated order) make their days
    # and every later one come from the order tables until the next refresh.
    after = newest + dt.timedelta(days=1)
    changed = ctx.memo["rollup_changed_day"]
    return min(after, changed or after)


@functools.cache
def _rollup_state_sql() -> str:
    """`rollup_cutoff`'s statement, which has no parameters, as SQL text (built once: a read of
    sales asks it on every call)."""
    statement = select(
        select(func.max(sales_store_daily.c.day)).scalar_subquery(),
        select(func.min(sales_changes.c.day)).scalar_subquery(),
        _rep_rollup_current_sql(),
        _teams_current_sql(),
        select(func.min(sales_store_cume_daily.c.day)).scalar_subquery(),
        select(func.min(sales_rep_cume_daily.c.day)).scalar_subquery(),
        select(func.min(sales_region_cume_daily.c.day)).scalar_subquery(),
        select(func.min(sales_group_cume_daily.c.day)).scalar_subquery(),
        select(func.min(sales_team_cume_daily.c.day)).scalar_subquery(),
    )
    compiled = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


def visible_store_ids(ctx: ToolContext, *filters: Any) -> Select[Any] | None:
    """The ids of the stores the actor may see (narrowed by `filters` on `Store`), as a
    subquery for `store_id IN (...)`; None when that is every store (no filter needed)."""
    if ctx.actor.role == "admin" and not filters:
        return None
    return select(Store.id).where(ctx.store_scope(), *filters)


def sales_source(
    ctx: ToolContext, start: dt.date, end: dt.date, stores: Select[Any] | None = None
) -> Subquery:
    """Sales per (day, store, product) between `start` and `end`, rollup plus live tail, of
    the stores in `stores` (ids; None: all). Scoping inside the source lets the rollup be read
    through its `(store_id, day)` index."""
    cutoff = rollup_cutoff(ctx)
    rolled = select(
        sales_daily.c.day,
        sales_daily.c.store_id,
        sales_daily.c.product_id,
        sales_daily.c.quantity,
        sales_daily.c.amount,
        sales_daily.c.orders,
    ).where(sales_daily.c.day >= start, sales_daily.c.day <= end, sales_daily.c.day < cutoff)
    live = (
        select(
            Order.order_date.label("day"),
            Order.store_id.label("store_id"),
            OrderLine.product_id.label("product_id"),
            func.sum(OrderLine.quantity).label("quantity"),
            func.sum(OrderLine.amount).label("amount"),
            func.count(distinct(Order.id)).label("orders"),
        )
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(
            Order.status.in_(SALES_STATUSES),
            Order.order_date >= max(start, cutoff),
            Order.order_date <= end,
        )
        .group_by(Order.order_date, Order.store_id, OrderLine.product_id)
    )
    if stores is not None:
        rolled = rolled.where(sales_daily.c.store_id.in_(stores))
        live = live.where(Order.store_id.in_(stores))
    if max(start, cutoff) > end:
        # Nothing after the rollup in this period: no query of the live tables at all (even an
        # empty range costs a plan, and under load a parallel one).
        return rolled.subquery("sales")
    return union_all(rolled, live).subquery("sales")


@dataclass(frozen=True)
class _Span:
    """Days [start, end] of a period's rolled-up part, read from the monthly rollups
    (`monthly`: the rows of the months from `start`, a first of the month, to `end`, which hold
    exactly these days), from running totals (`cume`: the row of the month `start`, everything
    up to the end of that month; with `cume` and not `monthly`, the daily running totals' row
    of the day `start`) or from the daily rollups, added or (`sign` -1) taken away."""

    start: dt.date
    end: dt.date
    monthly: bool = False
    sign: int = 1
    cume: bool = False


# A run of at least this many whole months is read as two running totals (see migration 0013).
CUME_MONTHS = 3
# Whether a stretch of days inside the daily running totals may be read from them (the other
# ways of reading it give the same figures, and are tested with this off).
USE_DAILY_CUME = True
# Per store, a stretch costing a month's rows or more is read from them; per rep and product,
# one costing more than two months' rows (see `_plan_spans`).
STORE_TOTALS_FROM = 1.0
PRODUCT_TOTALS_FROM = 2.25


def _rolled_spans(
    ctx: ToolContext, start: dt.date, end: dt.date, *, totals_from: float = PRODUCT_TOTALS_FROM
) -> list[_Span]:
    """See `_plan_spans`; asked several times per period and call, worked out once."""
    key = f"rolled_spans:{start}:{end}:{totals_from}"
    if key not in ctx.memo:
        ctx.memo[key] = _plan_spans(ctx, start, end, totals_from=totals_from)
    spans: list[_Span] = ctx.memo[key]
    return spans


def _plan_spans(
    ctx: ToolContext, start: dt.date, end: dt.date, *, totals_from: float = PRODUCT_TOTALS_FROM
) -> list[_Span]:
    """How to read the days of [start, end] before the rollup cutoff with the fewest rows.

    A month the period covers entirely is its monthly row. A month it covers in part is its
    days from the daily rollup, or, when fewer days are left out than taken in, its monthly
    row less the days left out ("1 to 25 November" is November less 26-30). The monthly
    rollups hold every day before the newest rollup day, so the newest day itself always comes
    from the daily rollup, and a month is usable when every day its row holds is before the
    cutoff. A run of `CUME_MONTHS` or more whole months is the running total at its last month
    less the one at the month before it: two rows per store (or product) however long."""
    cutoff = rollup_cutoff(ctx)
    if cutoff <= start:
        return []
    one = dt.timedelta(days=1)
    last = min(end, cutoff - one)
    newest: dt.date | None = ctx.memo.get("rollup_newest_day")
    spans: list[_Span] = []
    month = start.replace(day=1)
    while month <= last:
        month_end = month + relativedelta(months=1) - one
        a, b = max(start, month), min(last, month_end)
        # The last day this month's monthly row holds, if it can be used.
        held: dt.date | None = None
        if newest is not None and month < newest:
            held = min(month_end, newest - one)
            if held >= cutoff or held < a:
                held = None
        if held is None:
            spans.append(_Span(a, b))
        else:
            left_out = (a - month).days + max((held - b).days, 0)
            extra = max((b - held).days, 0)
            if left_out + extra >= (b - a).days + 1:
                spans.append(_Span(a, b))
            else:
                spans.append(_Span(month, held, monthly=True))
                if a > month:
                    spans.append(_Span(month, a - one, sign=-1))
                if b < held:
                    spans.append(_Span(b + one, held, sign=-1))
                if b > held:
                    spans.append(_Span(held + one, b))
        month += relativedelta(months=1)
    # Neighbouring spans of the same kind and sign read as one range.
    merged: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s.sign != 1, s.monthly, s.start)):
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and prev.sign == span.sign == 1
            and prev.monthly == span.monthly
            and prev.end + one == span.start
        ):
            merged[-1] = _Span(prev.start, span.end, prev.monthly)
        else:
            merged.append(span)

    def months(span: _Span) -> int:
        return (span.end.year - span.start.year) * 12 + span.end.month - span.start.month + 1

    # A stretch inside the daily running totals: two rows per key, when the spans above cost
    # at least `totals_from` months' rows (a day's rows are about a quarter of a month's; a
    # run of months costs two). Per store the two rows are joined, not added up, so they are
    # worth it from one month's rows on; per rep and product, only when there are more.
    first = ctx.memo.get("cume_daily_first") if USE_DAILY_CUME else None
    if first is not None and start >= first and start <= last:
        cost = sum(
            min(months(s), CUME_MONTHS - 1) if s.monthly else 0.25 * ((s.end - s.start).days + 1)
            for s in merged
        )
        if cost >= totals_from:
            daily = [_Span(last, last, cume=True)]
            if start > first:
                daily.append(_Span(start - one, start - one, cume=True, sign=-1))
            return daily
    # Long runs of whole months: two running totals instead.
    result: list[_Span] = []
    for span in merged:
        if span.monthly and span.sign == 1 and months(span) >= CUME_MONTHS:
            last_month = span.end.replace(day=1)
            result.append(_Span(last_month, last_month, monthly=True, cume=True))
            before = span.start - relativedelta(months=1)
            result.append(_Span(before, before, monthly=True, cume=True, sign=-1))
        else:
            result.append(span)
    return result


def _signed(rows: Select[Any], sign: int) -> Select[Any]:
    """`rows` (key columns, then quantity, amount, orders) with the figures negated when
    `sign` is -1."""
    if sign == 1:
        return rows
    sub = rows.subquery()
    keys = [c for c in sub.c if c.name not in ("quantity", "amount", "orders")]
    return select(
        *keys,
        (-sub.c.quantity).label("quantity"),
        (-sub.c.amount).label("amount"),
        (-sub.c.orders).label("orders"),
    )


def _scoped_rows(rollup: Any, rows: Select[Any], stores: Select[Any] | None, reps: Any) -> Any:
    """`rows` of a per-store rollup limited to `stores`, or, when `reps` is a list (the stores
    are exactly those reps' and the rollup's rep ids are current), to the reps' rows: one index
    range per rep instead of a probe per store."""
    if isinstance(reps, list):
        return rows.where(rollup.c.rep_id.in_(reps))
    if stores is not None:
        return rows.where(rollup.c.store_id.in_(stores))
    return rows


def _daily_store_rows(
    ctx: ToolContext,
    start: dt.date,
    end: dt.date,
    stores: Select[Any] | None,
    reps: list[int] | None = None,
) -> Select[Any]:
    cutoff = rollup_cutoff(ctx)
    rolled = select(
        sales_store_daily.c.store_id,
        sales_store_daily.c.quantity,
        sales_store_daily.c.amount,
        sales_store_daily.c.orders,
    ).where(
        sales_store_daily.c.day >= start,
        sales_store_daily.c.day <= end,
        sales_store_daily.c.day < cutoff,
    )
    scoped: Select[Any] = _scoped_rows(sales_store_daily, rolled, stores, reps)
    return scoped


def _live_store_rows(
    ctx: ToolContext, start: dt.date, end: dt.date, stores: Select[Any] | None
) -> Select[Any]:
    live: Any = (
        select(
            Order.store_id.label("store_id"),
            func.sum(OrderLine.quantity).label("quantity"),
            func.sum(OrderLine.amount).label("amount"),
            func.count(distinct(Order.id)).label("orders"),
        )
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(
            Order.status.in_(SALES_STATUSES),
            Order.order_date >= max(start, rollup_cutoff(ctx)),
            Order.order_date <= end,
        )
        .group_by(Order.order_date, Order.store_id)
    )
    if stores is not None:
        live = live.where(Order.store_id.in_(stores))
    return live


def store_sales_source(
    ctx: ToolContext,
    start: dt.date,
    end: dt.date,
    stores: Select[Any] | None = None,
    *,
    by_rep: bool = False,
) -> Subquery:
    """Sales rows (store_id, quantity, amount, orders) between `start` and `end`, to be summed
    per store: months from `sales_store_monthly` or its running totals, other days from
    `sales_store_daily` or the daily running totals (some rows negative, see `_rolled_spans`),
    and the days after the rollups from the live tables.
    Summed per store, the orders are exact, and a store ordered in the period when its sum of
    orders is above zero.

    With `by_rep` (the stores are exactly the actor's scope), the rollups are read by the
    actor's reps, as long as no store changed rep since they were built."""
    spans = _rolled_spans(ctx, start, end, totals_from=STORE_TOTALS_FROM)
    reps = _rollup_reps(ctx) if by_rep and spans else None
    parts: list[Select[Any]] = []
    for span in spans:
        if not span.monthly and not span.cume:
            rows = _daily_store_rows(ctx, span.start, span.end, stores, reps)
        else:
            rollup, period = (
                (sales_store_cume_daily, sales_store_cume_daily.c.day)
                if not span.monthly
                else (sales_store_cume, sales_store_cume.c.month)
                if span.cume
                else (sales_store_monthly, sales_store_monthly.c.month)
            )
            rows = select(
                rollup.c.store_id, rollup.c.quantity, rollup.c.amount, rollup.c.orders
            ).where(
                # A running total is one day's (or month's) rows.
                period == span.start if span.cume else period.between(span.start, span.end)
            )
            rows = _scoped_rows(rollup, rows, stores, reps)
        parts.append(_signed(rows, span.sign))
    if max(start, rollup_cutoff(ctx)) <= end:
        parts.append(_live_store_rows(ctx, start, end, stores))
    if len(parts) == 1:
        return parts[0].subquery("store_sales")
    return union_all(*parts).subquery("store_sales")


def store_sales_per_store(
    ctx: ToolContext,
    start: dt.date,
    end: dt.date,
    stores: Select[Any] | None = None,
    *,
    by_rep: bool = False,
) -> Subquery:
    """Sales per store (store_id, quantity, amount, orders) between `start` and `end`, one row
    per store that has rows (some may add up to nothing: a store ordered in the period when
    its orders are above zero); see `store_sales_source`.

    When the period is exactly a stretch of the daily running totals (nothing read live), each
    store's figures are its row at the last day less its row at the day before the first,
    joined by store: nothing to add up."""
    spans = _rolled_spans(ctx, start, end, totals_from=STORE_TOTALS_FROM)
    live = max(start, rollup_cutoff(ctx)) <= end
    if spans and not live and all(s.cume and not s.monthly for s in spans):
        reps = _rollup_reps(ctx) if by_rep else None
        until = next(s.start for s in spans if s.sign == 1)
        since = next((s.start for s in spans if s.sign == -1), None)
        last = sales_store_cume_daily.alias("last")
        figures = ("quantity", "amount", "orders")
        if since is None:
            rows = select(last.c.store_id, *(last.c[f] for f in figures))
        else:
            before = sales_store_cume_daily.alias("before")
            rows = select(
                last.c.store_id,
                *((last.c[f] - func.coalesce(before.c[f], 0)).label(f) for f in figures),
            ).outerjoin(before, (before.c.store_id == last.c.store_id) & (before.c.day == since))
        rows = rows.where(last.c.day == until)
        scoped: Select[Any] = _scoped_rows(last, rows, stores, reps)
        return scoped.subquery("per_store")
    source = store_sales_source(ctx, start, end, stores, by_rep=by_rep)
    return (
        select(
            source.c.store_id,
            func.sum(source.c.quantity).label("quantity"),
            func.sum(source.c.amount).label("amount"),
            func.sum(source.c.orders).label("orders"),
        )
        .group_by(source.c.store_id)
        .subquery("per_store")
    )


def _rollup_reps(ctx: ToolContext) -> list[int] | None:
    """The actor's reps, by which a per-store rollup may be read when the stores asked about
    are exactly the actor's (None: read it by store, or everything for an administrator)."""
    reps = ctx.rep_ids() if ctx.actor.role != "admin" else None
    return reps if reps is not None and _rep_rollup_current(ctx) else None


def _rep_rollup_current(ctx: ToolContext) -> bool:
    """True when no store in the rollups changed rep or region since they were refreshed
    (asked by the product and the store figures of each period: looked up once per context).

    A store added since has no rows in the rollups (its orders are read live), so its rep
    does not make them stale."""
    if "rep_rollup_current" not in ctx.memo:
        rollup_cutoff(ctx)
    current: bool = ctx.memo["rep_rollup_current"]
    return current


def _rep_rollup_current_sql() -> Any:
    """See `_rep_rollup_current` (as SQL, asked with `rollup_cutoff`)."""
    refreshed = select(sales_rollup_info.c.refreshed_at).scalar_subquery()
    changed = (
        select(func.greatest(func.max(Store.rep_assigned_at), func.max(Store.region_changed_at)))
        .where(Store.created_at < refreshed)
        .scalar_subquery()
    )
    return func.coalesce(changed < refreshed, False)


def _teams_current_sql() -> Any:
    """Whether every user is in the team they were in when the rollups were refreshed (as SQL,
    asked with `rollup_cutoff`; see `_team_lead`)."""
    team = func.coalesce(case((User.role == "rep", User.manager_id)), User.id)
    moved = (
        select(User.id)
        .join(sales_rollup_teams, sales_rollup_teams.c.user_id == User.id)
        .where(team.is_distinct_from(sales_rollup_teams.c.team_id))
        .exists()
    )
    return ~moved


def _team_lead(ctx: ToolContext) -> int | None:
    """The team whose product running totals hold exactly the actor's stores (a manager's, or
    a viewer's manager's), as long as every user is in the team they were in at the refresh;
    None otherwise (looked up once per context)."""
    if ctx.actor.role not in ("manager", "viewer"):
        return None
    lead = ctx.actor.id if ctx.actor.role == "manager" else ctx.actor.manager_id
    if lead is None:
        return None
    if "teams_current" not in ctx.memo:
        rollup_cutoff(ctx)
    return lead if ctx.memo["teams_current"] else None


def _product_cume(ctx: ToolContext, region: str | None = None) -> tuple[Any, Any]:
    """The daily running totals of products the actor's figures are read from, and the
    condition that keeps the actor's rows: the fleet's per region, a team's, or its reps'."""
    reps = ctx.rep_ids()
    if reps is None:
        rollup: Any = sales_region_cume_daily
        keep: Any = true()
    elif region is None and (lead := _team_lead(ctx)) is not None:
        rollup, keep = sales_team_cume_daily, sales_team_cume_daily.c.team_id == lead
    else:
        rollup, keep = sales_rep_cume_daily, sales_rep_cume_daily.c.rep_id.in_(reps)
    if region is not None:
        keep = keep & (func.lower(rollup.c.region) == region.strip().lower())
    return rollup, keep


def _product_cume_days(
    ctx: ToolContext, start: dt.date, end: dt.date, *, by_rep: bool
) -> tuple[dt.date, dt.date | None] | None:
    """When the actor's product sales over [start, end] are two days of the daily running
    totals (`_product_cume`) and nothing live: the last day's and the day before the first's
    (None when the period starts on their first day). None otherwise (see
    `product_sales_source`)."""
    if not by_rep:
        return None
    fleet = ctx.rep_ids() is None
    spans = _rolled_spans(
        ctx, start, end, totals_from=STORE_TOTALS_FROM if fleet else PRODUCT_TOTALS_FROM
    )
    if not spans or not all(span.cume and not span.monthly for span in spans):
        return None
    if max(start, rollup_cutoff(ctx)) <= end or not _rep_rollup_current(ctx):
        return None
    last = next(span.start for span in spans if span.sign == 1)
    before = next((span.start for span in spans if span.sign == -1), None)
    return last, before


def product_sales_source(
    ctx: ToolContext,
    start: dt.date,
    end: dt.date,
    stores: Select[Any] | None,
    *,
    by_rep: bool,
    region: str | None = None,
) -> Subquery:
    """Sales rows (product_id, quantity, amount, orders) between `start` and `end`, to be
    summed per product (some rows may be negative, see `_rolled_spans`).

    With `by_rep` (the stores are exactly the actor's scope, or its stores in `region`), the
    rolled-up days come from the rep rollups (`sales_rep_monthly`, `sales_rep_daily`) scoped by
    the actor's reps (and the region), as long as no store changed rep or region since they
    were built; otherwise from the per-store daily rollup. The days after the rollups come from
    the live tables."""
    # The whole fleet's running totals are per region and product, fewer than a month's rows
    # per rep: worth it as per store.
    fleet = ctx.rep_ids() is None
    spans = _rolled_spans(
        ctx, start, end, totals_from=STORE_TOTALS_FROM if fleet else PRODUCT_TOTALS_FROM
    )
    if not (by_rep and spans and _rep_rollup_current(ctx)):
        # Every day from the per-store daily rollup (or live), as one range.
        source = sales_source(ctx, start, end, stores)
        return select(
            source.c.product_id, source.c.quantity, source.c.amount, source.c.orders
        ).subquery("product_sales")

    reps = ctx.rep_ids()
    tail = max(start, rollup_cutoff(ctx))
    days = _product_cume_days(ctx, start, end, by_rep=by_rep)
    if days is not None:
        # Two days of the daily running totals and nothing live: one read of both days' rows,
        # the earlier day's taken away.
        rollup, keep = _product_cume(ctx, region)
        sign = case((rollup.c.day == days[0], 1), else_=-1)
        rows = select(
            rollup.c.product_id,
            (rollup.c.quantity * sign).label("quantity"),
            (rollup.c.amount * sign).label("amount"),
            (rollup.c.orders * sign).label("orders"),
        ).where(rollup.c.day.in_([day for day in days if day is not None]), keep)
        return rows.subquery("product_sales")
    parts: list[Select[Any]] = []
    for span in spans:
        if span.cume and not span.monthly and reps is None:
            # The whole fleet: its own running totals, without a row per rep.
            rollup, period = sales_region_cume_daily, sales_region_cume_daily.c.day
        elif span.cume and not span.monthly:
            rollup, period = sales_rep_cume_daily, sales_rep_cume_daily.c.day
        elif span.cume:
            rollup, period = sales_rep_cume, sales_rep_cume.c.month
        elif span.monthly:
            rollup, period = sales_rep_monthly, sales_rep_monthly.c.month
        else:
            rollup, period = sales_rep_daily, sales_rep_daily.c.day
        rows = select(
            rollup.c.product_id, rollup.c.quantity, rollup.c.amount, rollup.c.orders
        ).where(period >= span.start, period <= span.end)
        if reps is not None:
            rows = rows.where(rollup.c.rep_id.in_(reps))
        if region is not None:
            rows = rows.where(func.lower(rollup.c.region) == region.strip().lower())
        parts.append(_signed(rows, span.sign))
    if tail <= end:
        live = sales_source(ctx, tail, end, stores)
        parts.append(select(live.c.product_id, live.c.quantity, live.c.amount, live.c.orders))
    if len(parts) == 1:
        return parts[0].subquery("product_sales")
    return union_all(*parts).subquery("product_sales")


# Whether a period inside the daily running totals may be read from the running totals per
# rep, region and city (the other ways give the same figures, and are tested with this off).
USE_GROUP_CUME = True


def _group_cume_days(ctx: ToolContext, period: Period) -> tuple[dt.date, dt.date | None] | None:
    """When the actor's sales over `period` may be read from `sales_group_cume_daily`: the day
    of the rows that end the period and the day before its first (None when it starts on the
    views' first day, which nothing precedes). None when it may not: the period starts before
    the daily running totals or reaches the days read live, or a store changed rep, region or
    city since the refresh (the rows are keyed by the stores' at the refresh)."""
    if not (USE_DAILY_CUME and USE_GROUP_CUME):
        return None
    cutoff = rollup_cutoff(ctx)
    first: dt.date | None = ctx.memo.get("cume_daily_first")
    if first is None or period.start < first or period.end >= cutoff:
        return None
    if not _rep_rollup_current(ctx):
        return None
    before = period.start - dt.timedelta(days=1) if period.start > first else None
    return period.end, before


def _group_cume_rows(ctx: ToolContext, days: tuple[dt.date, dt.date | None]) -> Subquery:
    """The actor's rows of `sales_group_cume_daily` (rep_id, region, city, quantity, amount,
    orders) that add up to a period's sales: the last day's, less the day before the first's."""
    reps = ctx.rep_ids()
    group = sales_group_cume_daily
    parts = []
    for day, sign in ((days[0], 1), (days[1], -1)):
        if day is None:
            continue
        rows = select(
            group.c.rep_id,
            group.c.region,
            group.c.city,
            group.c.quantity,
            group.c.amount,
            group.c.orders,
        ).where(group.c.day == day)
        if reps is not None:
            rows = rows.where(group.c.rep_id.in_(reps))
        parts.append(_signed(rows, sign))
    if len(parts) == 1:
        return parts[0].subquery("group_sales")
    return union_all(*parts).subquery("group_sales")


def _ordering_stores(ctx: ToolContext, period: Period, days: tuple[dt.date, dt.date | None]) -> Any:
    """How many of the actor's stores ordered in `period` (see `_group_cume_days`), as a
    scalar subquery: those whose latest order day up to its last day is in it."""
    reps = ctx.rep_ids()
    cume = sales_store_cume_daily
    count = select(func.count()).where(cume.c.day == days[0], cume.c.last_day >= period.start)
    if reps is not None:
        count = count.where(cume.c.rep_id.in_(reps))
    return count.scalar_subquery()


def _group_totals(
    ctx: ToolContext, period: Period, days: tuple[dt.date, dt.date | None]
) -> Select[Any]:
    """The actor's totals over `period` (amount, quantity, orders, stores) from the group
    running totals (see `_group_cume_days`), as one row."""
    group = _group_cume_rows(ctx, days)
    return select(
        func.coalesce(func.sum(group.c.amount), 0).label("amount"),
        func.coalesce(func.sum(group.c.quantity), 0).label("quantity"),
        func.coalesce(func.sum(group.c.orders), 0).label("orders"),
        _ordering_stores(ctx, period, days).label("stores"),
    )


def sales_totals(
    ctx: ToolContext, period: Period, stores: Select[Any] | None, *, by_rep: bool = False
) -> SalesTotals:
    """Amount, units, orders and ordering stores over `period` for `stores` (None: all;
    `by_rep`: the stores are exactly the actor's scope)."""
    days = _group_cume_days(ctx, period) if by_rep else None
    if days is not None:
        row = ctx.session.execute(_group_totals(ctx, period, days)).one()
        return _totals(row.amount, row.quantity, row.orders, row.stores)
    per_store = store_sales_per_store(ctx, period.start, period.end, stores, by_rep=by_rep)
    row = ctx.session.execute(
        select(
            func.coalesce(func.sum(per_store.c.amount), 0),
            func.coalesce(func.sum(per_store.c.quantity), 0),
            func.coalesce(func.sum(per_store.c.orders), 0),
            func.count().filter(per_store.c.orders > 0),
        )
    ).one()
    return SalesTotals(amount=row[0], quantity=int(row[1]), orders=int(row[2]), stores=int(row[3]))


# --------------------------------------------------------------------------- results


class OrderLineOut(Schema):
    """One product on an order."""

    line_no: int
    product: ProductRef
    quantity: int
    unit_price: Money
    discount_pct: float
    amount: Money


class OrderOut(Schema):
    """An order with its lines."""

    id: int
    external_id: str | None
    store: StoreRef
    order_date: dt.date
    status: str
    total: Money
    source_channel: str | None
    promised_date: dt.date | None
    delivered_date: dt.date | None
    line_count: int
    units: int
    lines: list[OrderLineOut]


class RecentOrders(Schema):
    """A store's latest orders, newest first."""

    store: StoreRef
    orders: list[OrderOut]
    total_orders: int = Field(description="All orders of the store, any status.")


class InvoiceSummary(Schema):
    number: str
    invoice_date: dt.date
    due_date: dt.date
    amount: Money
    paid: Money
    due: Money


class OrderDetails(OrderOut):
    """One order, with who booked it and its invoice."""

    rep_name: str | None
    created_by_name: str | None
    confirmed_at: dt.datetime | None
    invoice: InvoiceSummary | None


def _order_out(order: Order, store: Store) -> dict[str, Any]:
    lines = [
        OrderLineOut(
            line_no=line.line_no,
            product=ProductRef.model_validate(line.product),
            quantity=line.quantity,
            unit_price=line.unit_price,
            discount_pct=float(line.discount * 100),
            amount=line.amount,
        )
        for line in order.lines
    ]
    return {
        "id": order.id,
        "external_id": order.external_id,
        "store": StoreRef.model_validate(store),
        "order_date": order.order_date,
        "status": order.status,
        "total": order.total_amount,
        "source_channel": order.source_channel,
        "promised_date": order.promised_date,
        "delivered_date": order.delivered_date,
        "line_count": len(lines),
        "units": sum(line.quantity for line in lines),
        "lines": lines,
    }


Limit = Annotated[int, Field(ge=1, le=200)]


@tool(category="orders")
def recent_orders(
    ctx: ToolContext, *, store: Ref, limit: Annotated[int, Field(ge=1, le=50)] = 5
) -> RecentOrders:
    """A store's most recent orders, newest first, with their lines.

    Args:
        store: The store's id, code or name (partial or misspelt names work).
        limit: How many orders to return (1-50).
    """
    found = resolve_store(ctx, store)
    # The store's number of orders rides with each row (none listed: it has none).
    counted = select(func.count()).where(Order.store_id == found.id).scalar_subquery()
    rows = ctx.session.execute(
        select(Order, counted.label("total"))
        .where(Order.store_id == found.id)
        .order_by(Order.order_date.desc(), Order.id.desc())
        .limit(limit)
        .options(selectinload(Order.lines).joinedload(OrderLine.product))
    ).all()
    orders = [row[0] for row in rows]
    total = int(rows[0].total) if rows else 0
    return RecentOrders(
        store=StoreRef.model_validate(found),
        orders=[OrderOut(**_order_out(o, found)) for o in orders],
        total_orders=total,
    )


@tool(category="orders")
def order_details(ctx: ToolContext, *, order: Ref) -> OrderDetails:
    """One order: lines, prices, status, dates, who booked it and its invoice.

    Args:
        order: The order number (id) or its external id.
    """
    found = resolve_order(ctx, order)
    # The lines with their products in one statement (not one per line), and both people in
    # another.
    lines = ctx.session.scalars(
        select(OrderLine)
        .where(OrderLine.order_id == found.id)
        .options(joinedload(OrderLine.product))
        .order_by(OrderLine.line_no)
    ).all()
    set_committed_value(found, "lines", list(lines))
    people_ids = {i for i in (found.rep_id, found.created_by) if i is not None}
    people = (
        {u.id: u for u in ctx.session.scalars(select(User).where(User.id.in_(people_ids)))}
        if people_ids
        else {}
    )
    rep = people.get(found.rep_id) if found.rep_id else None
    creator = people.get(found.created_by) if found.created_by else None
    invoice_row = ctx.session.execute(
        select(Invoice, func.coalesce(func.sum(Payment.amount), 0))
        .outerjoin(Payment, Payment.invoice_id == Invoice.id)
        .where(Invoice.order_id == found.id)
        .group_by(Invoice.id)
    ).first()
    invoice = None
    if invoice_row is not None:
        inv, paid = invoice_row
        invoice = InvoiceSummary(
            number=inv.number,
            invoice_date=inv.invoice_date,
            due_date=inv.due_date,
            amount=inv.amount,
            paid=paid,
            due=to_money(inv.amount) - to_money(paid),
        )
    return OrderDetails(
        **_order_out(found, found.store),
        rep_name=rep.name if rep else None,
        created_by_name=creator.name if creator else None,
        confirmed_at=found.confirmed_at,
        invoice=invoice,
    )


# --------------------------------------------------------------------------- sales summary

GroupBy = Literal["region", "city", "rep", "store", "product", "category", "brand"]
CompareTo = Literal["previous_period", "same_period_last_year"]
_PRODUCT_GROUPS = ("product", "category", "brand")


class SalesRow(Schema):
    """Sales of one group (a region, a rep, a product, ...)."""

    key: str
    label: str
    code: str | None = None
    amount: Money
    quantity: int
    orders: int | None = Field(
        description="Orders in the group; for brand and category not given, since one order "
        "can hold several products of a brand."
    )
    share_pct: float | None
    previous_amount: Money | None = None
    change_pct: float | None = None


class SalesTotals(Schema):
    amount: Money
    quantity: int
    orders: int
    stores: int


class SalesSummary(Schema):
    """Sales over a period, grouped, optionally compared with an earlier period."""

    period: Period
    group_by: GroupBy
    compare_to: CompareTo | None
    compare_period: Period | None
    totals: SalesTotals
    previous_totals: SalesTotals | None
    change_pct: float | None
    groups: int = Field(description="How many groups had sales (rows may be fewer: limit).")
    rows: list[SalesRow]


def _group_columns(group_by: GroupBy, sales: Subquery) -> tuple[Any, Any, Any, list[Any]]:
    """(key, label, code, joins) for a grouping over the sales source."""
    rep = aliased(User)
    if group_by == "region":
        key = func.coalesce(Store.region, "(none)")
        return key, key, literal(None), []
    if group_by == "city":
        key = func.coalesce(Store.city, "(none)")
        return key, key, literal(None), []
    if group_by == "rep":
        return (
            func.coalesce(Store.rep_id, 0),
            func.coalesce(rep.name, "(unassigned)"),
            rep.email,
            [(rep, rep.id == Store.rep_id)],
        )
    if group_by == "store":
        return Store.id, Store.name, Store.code, []
    joins = [(Product, Product.id == sales.c.product_id)]
    if group_by == "product":
        return Product.id, Product.name, Product.sku, joins
    column_ = Product.category if group_by == "category" else Product.brand
    key = func.coalesce(column_, "(none)")
    return key, key, literal(None), joins


def _per_store_sales(
    ctx: ToolContext, period: Period, stores: Select[Any] | None, *, by_rep: bool, name: str
) -> Subquery:
    """Sales per store (store_id, amount, quantity, orders) over `period`, only the stores
    that ordered in it.

    Per store first: the source's rows may include negative ones (a month less the days
    outside the period), and a store ordered in the period when its orders add up to more
    than zero."""
    sales = store_sales_per_store(ctx, period.start, period.end, stores, by_rep=by_rep)
    return (
        select(sales.c.store_id, sales.c.amount, sales.c.quantity, sales.c.orders)
        .where(sales.c.orders > 0)
        .subquery(name)
    )


def _totals(amount: Any, quantity: Any, orders: Any, stores: Any) -> SalesTotals:
    return SalesTotals(
        amount=to_money(amount or 0),
        quantity=int(quantity or 0),
        orders=int(orders or 0),
        stores=int(stores or 0),
    )


# Groupings whose figures are the sums of their stores' (every store in exactly one group).
_STORE_GROUPS = ("region", "city", "rep")


def _group_cume_query(
    ctx: ToolContext, days: tuple[dt.date, dt.date | None], group_by: GroupBy
) -> Select[Any]:
    """Sales per region, city or rep over a period from the running totals per rep, region and
    city (see `_group_cume_days`): the same rows as `_grouped_query`, without the ordering
    stores (0: they do not add up; see `_ordering_stores`)."""
    group = _group_cume_rows(ctx, days)
    joins: list[tuple[Any, Any]] = []
    if group_by == "rep":
        rep = aliased(User)
        key: Any = func.coalesce(group.c.rep_id, 0)
        label: Any = func.coalesce(rep.name, "(unassigned)")
        code: Any = rep.email
        joins.append((rep, rep.id == group.c.rep_id))
    else:
        key = label = func.coalesce(
            group.c.region if group_by == "region" else group.c.city, "(none)"
        )
        code = literal(None)
    query = select(
        key.label("key"),
        label.label("label"),
        code.label("code"),
        func.sum(group.c.amount).label("amount"),
        func.sum(group.c.quantity).label("quantity"),
        func.sum(group.c.orders).label("orders"),
        literal(0).label("stores"),
    ).select_from(group)
    for target, on in joins:
        query = query.outerjoin(target, on)
    # A group sold in the period when its stores' orders add up to more than none.
    return query.group_by(key, label, code).having(func.sum(group.c.orders) > 0)


def _grouped_query(ctx: ToolContext, period: Period, group_by: GroupBy) -> Select[Any]:
    """Sales per group over `period` (key, label, code, amount, quantity, orders, and for
    groups of stores the ordering stores), every group that sold anything."""
    days = _group_cume_days(ctx, period) if group_by in _STORE_GROUPS else None
    if days is not None:
        return _group_cume_query(ctx, days, group_by)
    stores = visible_store_ids(ctx)
    by_product = group_by in _PRODUCT_GROUPS
    sales = (
        product_sales_source(ctx, period.start, period.end, stores, by_rep=True)
        if by_product
        else _per_store_sales(ctx, period, stores, by_rep=True, name="per_store")
    )
    if group_by == "store":
        # Already one row per store: labelled once both periods are joined (`_ranked_groups`).
        return select(
            sales.c.store_id.label("key"),
            literal(None).label("label"),
            literal(None).label("code"),
            sales.c.amount,
            sales.c.quantity,
            sales.c.orders,
            literal(1).label("stores"),
        )
    if by_product:
        # Added up per product first: the products (a thousand) are joined to label and group
        # them, not every rollup row.
        sales = (
            select(
                sales.c.product_id,
                func.sum(sales.c.amount).label("amount"),
                func.sum(sales.c.quantity).label("quantity"),
                func.sum(sales.c.orders).label("orders"),
            )
            .group_by(sales.c.product_id)
            .subquery("per_product")
        )
    key, label, code, joins = _group_columns(group_by, sales)
    query: Select[Any] = select(
        key.label("key"),
        label.label("label"),
        code.label("code"),
        func.sum(sales.c.amount).label("amount"),
        func.sum(sales.c.quantity).label("quantity"),
        func.sum(sales.c.orders).label("orders"),
    ).select_from(sales)
    if not by_product:
        # The source is already limited to the visible stores; the join labels the groups,
        # and repeating the scope lets the planner read only those stores.
        query = query.join(Store, Store.id == sales.c.store_id).where(ctx.store_scope())
        query = query.add_columns(func.count().label("stores"))
    else:
        query = query.add_columns(literal(0).label("stores"))
    for target, on in joins:
        query = query.outerjoin(target, on)
    query = query.group_by(key, label, code)
    if by_product:
        # Products sold only on days taken away again (see `_rolled_spans`) add up to nothing.
        query = query.having(func.sum(sales.c.orders) > 0)
    return query


# The stores that ordered in a period, with their figures (the daily running totals at its
# last day less the day before its first; see `_group_cume_days`), the `limit` biggest with any
# tied with the last of them, and the totals of them all.
_STORES_RANKED_SQL = text(
    """
    WITH per AS (
      SELECT l.store_id, l.amount - coalesce(b.amount, 0) AS amount,
             l.quantity - coalesce(b.quantity, 0) AS quantity,
             l.orders - coalesce(b.orders, 0) AS orders
      FROM sales_store_cume_daily l
      LEFT JOIN sales_store_cume_daily b
             ON b.store_id = l.store_id AND b.day = CAST(:before AS date)
      WHERE l.day = :last AND l.orders - coalesce(b.orders, 0) > 0
        AND (CAST(:reps AS integer[]) IS NULL OR l.rep_id = ANY(CAST(:reps AS integer[])))),
    totals AS (
      SELECT count(*) FILTER (WHERE amount > 0) AS groups,
             coalesce(sum(amount), 0) AS total_amount,
             coalesce(sum(quantity), 0) AS total_quantity,
             coalesce(sum(orders), 0) AS total_orders, count(*) AS total_stores
      FROM per)
    SELECT per.store_id, per.amount, per.quantity, per.orders, totals.*
    FROM totals LEFT JOIN per ON per.amount >= (
      SELECT min(amount) FROM (SELECT amount FROM per ORDER BY amount DESC LIMIT :limit) top)
    """
)


def _ranked_stores(
    ctx: ToolContext, current: Period, before: Period | None, limit: int
) -> tuple[list[dict[str, Any]], int, SalesTotals, SalesTotals | None] | None:
    """`_ranked_groups` by store, from the daily running totals: each store's figures over
    `current` are read once, the biggest are listed with their figures over `before`, and the
    earlier period's totals come from the running totals per rep, region and city. None when a
    period cannot be read so (see `_group_cume_days`), or when fewer stores ordered than are
    listed and stores that sold only in the earlier period would fill the list."""
    days = _group_cume_days(ctx, current)
    earlier = _group_cume_days(ctx, before) if before is not None else None
    if days is None or (before is not None and earlier is None):
        return None
    reps = ctx.rep_ids()
    ranked = ctx.session.execute(
        _STORES_RANKED_SQL,
        {
            "last": days[0],
            "before": days[1],
            "reps": None if reps is None else IntArray.of(reps),
            "limit": limit,
        },
    ).all()
    candidates = [row for row in ranked if row.store_id is not None]
    if before is not None and len(candidates) < limit:
        return None
    first = ranked[0]
    totals = _totals(
        first.total_amount, first.total_quantity, first.total_orders, first.total_stores
    )
    then_last, then_before = earlier or (None, None)
    listed = ctx.session.execute(
        _STORES_LISTED_SQL,
        {
            "ids": IntArray.of(row.store_id for row in candidates),
            "amounts": [row.amount for row in candidates],
            "quantities": [int(row.quantity) for row in candidates],
            "orders": [int(row.orders) for row in candidates],
            "then_last": then_last,
            "then_before": then_before,
            "then_start": before.start if before else None,
            "days": [day for day in (then_last, then_before) if day is not None],
            "reps": None if reps is None else IntArray.of(reps),
            "limit": limit,
        },
    ).all()
    previous = None
    if before is not None and listed:
        # Stores that ordered only in the earlier period count in its totals, listed or not.
        last = listed[0]
        previous = _totals(last.then_amount, last.then_quantity, last.then_orders, last.then_stores)
    elif before is not None:
        previous = sales_totals(ctx, before, visible_store_ids(ctx), by_rep=True)
    rows = [
        {
            "key": str(row.store_id),
            "label": str(row.name),
            "code": row.code,
            "amount": to_money(row.amount),
            "quantity": int(row.quantity),
            "orders": int(row.orders),
            **({"previous_amount": to_money(row.previous_amount)} if before else {}),
        }
        for row in listed
    ]
    return rows, int(first.groups), totals, previous


# Whether sales by region, city, rep, product, category or brand over periods inside the daily
# running totals are ranked by one statement written once (`_ranked_from_running_totals`); the
# statements built per call give the same figures and are tested against it with this off.
USE_RANKING_SQL = True

# Per rollup the actor's product figures are read from (`_product_cume`): its table and the
# condition that keeps the actor's rows.
_PRODUCT_CUME_SOURCES = {
    "fleet": ("sales_region_cume_daily", "true"),
    "team": ("sales_team_cume_daily", "r.team_id = :lead"),
    "reps": ("sales_rep_cume_daily", "r.rep_id = ANY(CAST(:reps AS integer[]))"),
}
# Per grouping: its key, label and code, and the join that labels it.
_RANKED_GROUP_COLUMNS = {
    "product": ("pr.id", "pr.name", "pr.sku", ""),
    "category": ("coalesce(pr.category, '(none)')", "coalesce(pr.category, '(none)')", "NULL", ""),
    "brand": ("coalesce(pr.brand, '(none)')", "coalesce(pr.brand, '(none)')", "NULL", ""),
    "region": ("coalesce(g.region, '(none)')", "coalesce(g.region, '(none)')", "NULL", ""),
    "city": ("coalesce(g.city, '(none)')", "coalesce(g.city, '(none)')", "NULL", ""),
    "rep": (
        "coalesce(g.rep_id, 0)",
        "coalesce(u.name, '(unassigned)')",
        "u.email",
        "LEFT JOIN users u ON u.id = g.rep_id",
    ),
}
_FIGURES = ("amount", "quantity", "orders")
# The actor's rows of the running totals per rep, region and city, or per store (`{0}`: the
# table's alias; a NULL array of reps: the whole fleet).
_REPS_SCOPE = "(CAST(:reps AS integer[]) IS NULL OR {0}.rep_id = ANY(CAST(:reps AS integer[])))"


def _figures_between(prefix: str, period: str, alias: str) -> str:
    """SQL summing a period's amount, units and orders from running-total rows of two days:
    the row of day `:<period>_last` less that of day `:<period>_before` (NULL: nothing taken
    away; a NULL last day: no period, nothing)."""
    return ", ".join(
        f"sum(CASE WHEN {alias}.day = CAST(:{period}_last AS date) THEN {alias}.{name} "
        f"WHEN {alias}.day = CAST(:{period}_before AS date) THEN -{alias}.{name} ELSE 0 END) "
        f"AS {prefix}{name}"
        for name in _FIGURES
    )


def _ordering_stores_sql(period: str) -> str:
    """SQL counting the actor's stores that ordered in a period (see `_ordering_stores`)."""
    return (
        "(SELECT count(*) FROM sales_store_cume_daily s "
        f"WHERE s.day = CAST(:{period}_last AS date) "
        f"AND s.last_day >= CAST(:{period}_start AS date) AND {_REPS_SCOPE.format('s')})"
    )


_RANKED_SQL: dict[tuple[str, str], Any] = {}


def _ranked_sql(source: str, group_by: str) -> Any:
    """The statement of `_ranked_from_running_totals` for a grouping (and, by product,
    category or brand, a rollup of `_PRODUCT_CUME_SOURCES`), written once.

    Each group's figures over both periods come from one read of the (up to four) days' rows,
    are ranked and the `limit` biggest listed, with each period's totals and ordering stores.
    Regions, cities and reps add up to the totals (window sums before the LIMIT); products do
    not (an order holds several), so their totals are read from the running totals per rep,
    region and city. With no group sold in either period there is one row without a group."""
    if group_by not in _PRODUCT_GROUPS:
        source = "any"  # regions, cities and reps: the same statement whoever asks
    cached = _RANKED_SQL.get((source, group_by))
    if cached is not None:
        return cached
    key, label, code, join = _RANKED_GROUP_COLUMNS[group_by]
    now, then = _figures_between("", "now", "{0}"), _figures_between("prev_", "then", "{0}")
    sums = ", ".join(f"sum(p.{f}) AS {f}, sum(p.prev_{f}) AS prev_{f}" for f in _FIGURES)
    stores = f"{_ordering_stores_sql('now')} AS now_stores, "
    stores += f"{_ordering_stores_sql('then')} AS then_stores"
    if group_by in _PRODUCT_GROUPS:
        table_name, keep = _PRODUCT_CUME_SOURCES[source]
        per_group = f"""
            per_product AS (
              SELECT r.product_id, {now.format("r")}, {then.format("r")}
              FROM {table_name} r
              WHERE r.day = ANY(CAST(:days AS date[])) AND {keep}
              GROUP BY r.product_id),
            grouped AS (
              SELECT {key} AS key, {label} AS label, {code} AS code, {sums}
              FROM per_product p LEFT JOIN products pr ON pr.id = p.product_id
              GROUP BY 1, 2, 3)"""
        totals = f"""
            totals AS (
              SELECT {_figures_between("now_", "now", "g")},
                     {_figures_between("then_", "then", "g")}, {stores}
              FROM sales_group_cume_daily g
              WHERE g.day = ANY(CAST(:days AS date[])) AND {_REPS_SCOPE.format("g")})"""
        added_up = "t.*"
    else:
        per_group = f"""
            grouped AS (
              SELECT {key} AS key, {label} AS label, {code} AS code,
                     {now.format("g")}, {then.format("g")}
              FROM sales_group_cume_daily g {join}
              WHERE g.day = ANY(CAST(:days AS date[])) AND {_REPS_SCOPE.format("g")}
              GROUP BY 1, 2, 3)"""
        totals = f"totals AS (SELECT {stores})"
        added_up = ", ".join(
            f"sum(b.{f}) OVER () AS now_{f}, sum(b.prev_{f}) OVER () AS then_{f}" for f in _FIGURES
        )
        added_up += ", t.*"
    # A group sold in a period when its orders there add up to more than none.
    sold = ", ".join(
        f"CASE WHEN orders > 0 THEN {f} END AS {f}, "
        f"CASE WHEN prev_orders > 0 THEN prev_{f} END AS prev_{f}"
        for f in _FIGURES
    )
    statement = text(
        f"""
        WITH {per_group},
        both_periods AS (
          SELECT key, label, code, {sold}
          FROM grouped WHERE orders > 0 OR prev_orders > 0),
        {totals}
        SELECT b.key, b.label, b.code, coalesce(b.amount, 0) AS amount,
               coalesce(b.quantity, 0) AS quantity, coalesce(b.orders, 0) AS orders,
               coalesce(b.prev_amount, 0) AS previous_amount,
               count(b.key) FILTER (WHERE b.amount > 0) OVER () AS groups, {added_up}
        FROM totals t LEFT JOIN both_periods b ON true
        ORDER BY coalesce(b.amount, 0) DESC, coalesce(b.prev_amount, 0) DESC, b.label, b.key
        LIMIT :limit
        """
    )
    _RANKED_SQL[(source, group_by)] = statement
    return statement


# The ranked stores in their final order (amount, then the earlier period's, name and id), with
# their labels and their figures in the earlier period (read from the daily running totals when
# there is one), and the earlier period's totals and ordering stores (see
# `_ranked_from_running_totals`; all NULL without one).
_STORES_LISTED_SQL = text(
    f"""
    WITH earlier AS (
      SELECT {_figures_between("then_", "then", "g")},
             {_ordering_stores_sql("then")} AS then_stores
      FROM sales_group_cume_daily g
      WHERE g.day = ANY(CAST(:days AS date[])) AND {_REPS_SCOPE.format("g")})
    SELECT c.store_id, s.name, s.code, c.amount, c.quantity, c.orders,
           coalesce(p.amount, 0) - coalesce(q.amount, 0) AS previous_amount, earlier.*
    FROM unnest(CAST(:ids AS integer[]), CAST(:amounts AS numeric[]),
                CAST(:quantities AS bigint[]), CAST(:orders AS integer[]))
         AS c(store_id, amount, quantity, orders)
    JOIN stores s ON s.id = c.store_id
    CROSS JOIN earlier
    LEFT JOIN sales_store_cume_daily p
           ON p.store_id = c.store_id AND p.day = CAST(:then_last AS date)
    LEFT JOIN sales_store_cume_daily q
           ON q.store_id = c.store_id AND q.day = CAST(:then_before AS date)
    ORDER BY c.amount DESC, previous_amount DESC, s.name, c.store_id
    LIMIT :limit
    """
)


def _ranked_from_running_totals(
    ctx: ToolContext, current: Period, before: Period | None, group_by: GroupBy, limit: int
) -> tuple[list[dict[str, Any]], int, SalesTotals, SalesTotals | None] | None:
    """`_ranked_groups` by region, city, rep, product, category or brand when every period is
    two days of the daily running totals (see `_group_cume_days`): one statement written once
    (`_ranked_sql`), its values bound. None when a period cannot be read so."""
    if not USE_RANKING_SQL:
        return None
    periods = [current] if before is None else [current, before]
    # Every kind of daily running totals starts on the same day and is refreshed with the
    # others: however short a period, two days' rows of the actor's groups or products cost
    # less than the statements built for the daily rollups.
    days = [_group_cume_days(ctx, period) for period in periods]
    if None in days:
        return None
    reps = ctx.rep_ids()
    lead = _team_lead(ctx) if reps is not None else None
    source = "fleet" if reps is None else "team" if lead is not None else "reps"
    values: dict[str, Any] = {
        "reps": None if reps is None else IntArray.of(reps),
        "lead": lead,
        "limit": limit,
        "days": sorted({day for pair in days if pair for day in pair if day}),
    }
    for index, name in enumerate(("now", "then")):
        pair = days[index] if index < len(periods) else None
        values[f"{name}_last"], values[f"{name}_before"] = pair or (None, None)
        values[f"{name}_start"] = periods[index].start if index < len(periods) else None
    rows = ctx.session.execute(_ranked_sql(source, group_by), values).all()
    first = rows[0]
    totals = _totals(first.now_amount, first.now_quantity, first.now_orders, first.now_stores)
    previous = (
        _totals(first.then_amount, first.then_quantity, first.then_orders, first.then_stores)
        if before is not None
        else None
    )
    listed = _listed([row for row in rows if row.key is not None], group_by, before is not None)
    return listed, int(first.groups), totals, previous


def _products_in_both_periods(
    ctx: ToolContext, current: Period, before: Period, group_by: GroupBy
) -> Subquery | None:
    """Sales by product, category or brand over `current` and `before` in one read, when each
    is two days of the daily running totals of products (`_product_cume_days`): every row of
    the (up to) four days is read once and added to the period it ends or taken from the one
    it precedes, then added up per product and labelled. The columns of `_ranked_groups`'
    join of both periods (a period's figures NULL where the group sold nothing in it); None
    when either period is read otherwise."""
    now = _product_cume_days(ctx, current.start, current.end, by_rep=True)
    then = _product_cume_days(ctx, before.start, before.end, by_rep=True)
    if now is None or then is None:
        return None
    spans = (now, then)
    rollup, keep = _product_cume(ctx)
    names = ("amount", "quantity", "orders")

    def figure(name: str, days: tuple[dt.date, dt.date | None]) -> Any:
        value = rollup.c[name]
        whens = [(rollup.c.day == days[0], value)]
        if days[1] is not None:
            whens.append((rollup.c.day == days[1], -value))
        return func.sum(case(*whens, else_=0))

    read = select(
        rollup.c.product_id,
        *(figure(n, spans[0]).label(n) for n in names),
        *(figure(n, spans[1]).label(f"prev_{n}") for n in names),
    ).where(rollup.c.day.in_(sorted({d for days in spans for d in days if d is not None})), keep)
    per_product = read.group_by(rollup.c.product_id).subquery("per_product")
    key, label, code, joins = _group_columns(group_by, per_product)
    grouped_query = select(
        key.label("key"),
        label.label("label"),
        code.label("code"),
        *(func.sum(per_product.c[n]).label(n) for n in names),
        *(func.sum(per_product.c[f"prev_{n}"]).label(f"prev_{n}") for n in names),
    ).select_from(per_product)
    for target, on in joins:
        grouped_query = grouped_query.outerjoin(target, on)
    grouped = grouped_query.group_by(key, label, code).subquery("grouped")
    g = grouped.c
    # A group sold in a period when its orders there add up to more than none.
    sold, sold_before = g.orders > 0, g.prev_orders > 0
    return (
        select(
            g.key,
            g.label,
            g.code,
            *(case((sold, g[n])).label(n) for n in names),
            case((sold, literal(0))).label("stores"),
            *(case((sold_before, g[f"prev_{n}"])).label(f"prev_{n}") for n in names),
            case((sold_before, literal(0))).label("prev_stores"),
        )
        .where(sold | sold_before)
        .subquery("both")
    )


def _joined_periods(
    ctx: ToolContext,
    current: Period,
    before: Period | None,
    group_by: GroupBy,
    figures: tuple[str, ...],
) -> Subquery:
    """Each period's sales per group (`_grouped_query`), joined by group (a FULL JOIN: a group
    that sold in one period only has NULL figures in the other)."""
    cur = _grouped_query(ctx, current, group_by).subquery("cur")
    if before is None:
        return select(
            cur.c.key,
            cur.c.label,
            cur.c.code,
            *(cur.c[f] for f in figures),
            *(
                cast(null(), Numeric(16, 2) if f == "amount" else Integer).label(f"prev_{f}")
                for f in figures
            ),
        ).subquery("both")
    prev = _grouped_query(ctx, before, group_by).subquery("prev")
    return (
        select(
            func.coalesce(cur.c.key, prev.c.key).label("key"),
            func.coalesce(cur.c.label, prev.c.label).label("label"),
            func.coalesce(cur.c.code, prev.c.code).label("code"),
            *(cur.c[f] for f in figures),
            *(prev.c[f].label(f"prev_{f}") for f in figures),
        )
        .join_from(cur, prev, prev.c.key == cur.c.key, full=True)
        .subquery("both")
    )


def _ranked_groups(
    ctx: ToolContext, current: Period, before: Period | None, group_by: GroupBy, limit: int
) -> tuple[list[dict[str, Any]], int, SalesTotals, SalesTotals | None]:
    """The `limit` biggest groups over `current` (with their sales over `before`: a group
    that sold only then is listed with nothing now), ranked in the database in one statement,
    with how many groups sold anything and the totals of both periods. A fleet has thousands
    of stores and only the first few are listed.

    Every store is its own group and is in exactly one region, city or rep: those groups add
    up to the totals (window aggregates before the LIMIT). Products do not (an order holds
    several): their totals are the stores'."""
    if group_by == "store":
        fast = _ranked_stores(ctx, current, before, limit)
        if fast is not None:
            return fast
    else:
        fast = _ranked_from_running_totals(ctx, current, before, group_by, limit)
        if fast is not None:
            return fast
    figures = ("amount", "quantity", "orders", "stores")
    both: Subquery | None = (
        _products_in_both_periods(ctx, current, before, group_by)
        if group_by in _PRODUCT_GROUPS and before is not None
        else None
    )
    if both is None:
        both = _joined_periods(ctx, current, before, group_by, figures)
    c = both.c
    amount, prev_amount = func.coalesce(c.amount, 0), func.coalesce(c.prev_amount, 0)
    whole = {"partition_by": None}
    label, code = (Store.name, Store.code) if group_by == "store" else (c.label, c.code)
    # Read from the group running totals, a period's ordering stores are counted apart.
    stores_of = []
    for name, period in (("cur", current), ("prev", before)):
        days = _group_cume_days(ctx, period) if period and group_by in _STORE_GROUPS else None
        counted = _ordering_stores(ctx, period, days) if period and days else null()
        stores_of.append(counted.label(f"{name}_stores"))
    query = (
        select(
            c.key,
            label.label("label"),
            code.label("code"),
            amount.label("amount"),
            func.coalesce(c.quantity, 0).label("quantity"),
            func.coalesce(c.orders, 0).label("orders"),
            prev_amount.label("previous_amount"),
            func.count().filter(c.amount > 0).over(**whole).label("groups"),
            *(func.sum(c[f]).over(**whole).label(f"total_{f}") for f in figures),
            *(func.sum(c[f"prev_{f}"]).over(**whole).label(f"before_{f}") for f in figures),
            *stores_of,
        )
        .order_by(amount.desc(), prev_amount.desc(), label, c.key)
        .limit(limit)
    )
    if group_by == "store":
        query = query.join(Store, Store.id == c.key).where(ctx.store_scope())
    # Products do not add up to the stores' totals: those of a period read from the group
    # running totals come with the ranked rows (any row will do), the others on their own.
    joined: dict[str, Any] = {}
    if group_by in _PRODUCT_GROUPS:
        for name, period in (("cur", current), ("prev", before)):
            days = _group_cume_days(ctx, period) if period is not None else None
            if period is not None and days is not None:
                joined[name] = _group_totals(ctx, period, days).subquery(f"{name}_totals")
                query = query.join_from(both, joined[name], true()).add_columns(
                    *(joined[name].c[f].label(f"{name}_total_{f}") for f in figures)
                )
    rows = ctx.session.execute(query).all()
    first = rows[0] if rows else None
    if group_by in _PRODUCT_GROUPS:
        stores = visible_store_ids(ctx)

        def product_totals(name: str, period: Period) -> SalesTotals:
            if name not in joined:
                return sales_totals(ctx, period, stores, by_rep=True)
            if first is None:  # no product sold in either period: nor did any store
                return _totals(0, 0, 0, 0)
            row = first._mapping
            return _totals(*(row[f"{name}_total_{f}"] for f in figures))

        totals = product_totals("cur", current)
        previous = product_totals("prev", before) if before else None
    else:
        totals = _window_totals(first, "cur", 8)
        previous = _window_totals(first, "prev", 12) if before else None
    return (
        _listed(rows, group_by, before is not None),
        int(first.groups) if first else 0,
        totals,
        previous,
    )


def _listed(rows: Sequence[Any], group_by: GroupBy, compared: bool) -> list[dict[str, Any]]:
    """Ranked rows (key, label, code, amount, quantity, orders, previous_amount) as listed."""
    return [
        {
            "key": str(row.key),
            "label": str(row.label),
            "code": row.code,
            "amount": to_money(row.amount),
            "quantity": int(row.quantity),
            # An order is counted once per store and day, so per-store sums are exact; per
            # product it is the orders holding the product; per brand or category it would
            # count an order once per product, so it is not given.
            "orders": int(row.orders) if group_by not in ("category", "brand") else None,
            **({"previous_amount": to_money(row.previous_amount)} if compared else {}),
        }
        for row in rows
    ]


def _window_totals(first: Row[Any] | None, name: str, at: int) -> SalesTotals:
    """A period's totals from the window aggregates of a ranked row (amount, units, orders and
    ordering stores from column `at` on); the ordering stores counted apart (`<name>_stores`)
    when they were."""
    if first is None:
        return _totals(0, 0, 0, 0)
    counted = first._mapping[f"{name}_stores"]
    stores = counted if counted is not None else first[at + 3]
    return _totals(first[at], first[at + 1], first[at + 2], stores)


@tool(category="orders")
def sales_summary(
    ctx: ToolContext,
    *,
    period: str = "this_month",
    start: dt.date | None = None,
    end: dt.date | None = None,
    group_by: GroupBy = "region",
    compare_to: CompareTo | None = None,
    limit: Limit = 20,
) -> SalesSummary:
    """Sales (amount, units, orders) over a period, by region, city, rep, store, product,
    category or brand, optionally compared with the previous period or the same period last
    year. Only the stores the user may see are counted.

    Args:
        period: A named period: today, yesterday, this_week, last_week, this_month,
            last_month, this_quarter, last_quarter, this_year, last_year, last_N_days
            (e.g. last_30_days), last_N_weeks, last_N_months. Ignored when start/end are given.
        start: First day of an explicit period (ISO date).
        end: Last day of an explicit period (ISO date); defaults to today.
        group_by: What to break the sales down by.
        compare_to: previous_period or same_period_last_year, to show the change.
        limit: How many groups to list (the biggest first).
    """
    current, unit = resolve_period(ctx.today, period, start, end)
    compare_period = None
    if compare_to is not None:
        compare_period = (
            previous_period(current, unit)
            if compare_to == "previous_period"
            else same_period_last_year(current)
        )
    listed, count, totals, previous_totals = _ranked_groups(
        ctx, current, compare_period, group_by, limit
    )
    for row in listed:
        if compare_period is not None:
            row["change_pct"] = pct_change(row["amount"], row["previous_amount"])
    return SalesSummary(
        period=current,
        group_by=group_by,
        compare_to=compare_to,
        compare_period=compare_period,
        totals=totals,
        previous_totals=previous_totals,
        change_pct=pct_change(totals.amount, previous_totals.amount) if previous_totals else None,
        groups=count,
        rows=[
            SalesRow(
                **row,
                share_pct=round(float(row["amount"] / totals.amount * 100), 1)
                if totals.amount
                else None,
            )
            for row in listed
        ],
    )


# --------------------------------------------------------------------------- top products


class TopProduct(Schema):
    product: ProductRef
    quantity: int
    amount: Money
    orders: int
    share_pct: float | None


class TopProducts(Schema):
    """Best-selling products over a period, for a store, a region or everything visible."""

    period: Period
    store: StoreRef | None
    region: str | None
    total_amount: Money
    products: list[TopProduct]


# One store's top products (the store already resolved in the actor's scope, checked again
# here): its rows of the per-store daily rollup before the cutoff and of the order tables from
# it, as `sales_source` reads them, summed per product. Written once: this runs for every store
# profile.
_STORE_TOP_PRODUCTS_SQL = text(
    f"""
    WITH sales AS (
      SELECT r.product_id, r.quantity, r.amount, r.orders
      FROM sales_daily r
      WHERE r.store_id = :store AND r.day >= :start AND r.day <= :end AND r.day < :cutoff
      UNION ALL
      SELECT l.product_id, sum(l.quantity), sum(l.amount), count(DISTINCT o.id)
      FROM orders o JOIN order_lines l ON l.order_id = o.id
      WHERE o.store_id = :store AND o.status IN {SALES_STATUSES!r}
        AND o.order_date >= greatest(CAST(:start AS date), CAST(:cutoff AS date))
        AND o.order_date <= :end
      GROUP BY o.order_date, l.product_id),
    top AS (
      SELECT product_id, sum(quantity) AS quantity, sum(amount) AS amount,
             sum(orders) AS orders, sum(sum(amount)) OVER () AS total
      FROM sales
      WHERE EXISTS (SELECT 1 FROM stores s WHERE s.id = :store AND {_REPS_SCOPE.format("s")})
      GROUP BY product_id
      HAVING sum(orders) > 0
      ORDER BY amount DESC, product_id
      LIMIT :limit)
    SELECT p.id, p.sku, p.name, p.brand, p.category, top.quantity, top.amount, top.orders,
           top.total
    FROM top JOIN products p ON p.id = top.product_id
    ORDER BY top.amount DESC, p.id
    """
)


def top_products_for(
    ctx: ToolContext,
    period: Period,
    *,
    store_id: int | None = None,
    region: str | None = None,
    limit: int = 10,
) -> tuple[list[TopProduct], Decimal]:
    """Top products by amount over `period` within the actor's stores (optionally narrowed)."""
    if store_id is not None and region is None:
        rows = ctx.session.execute(
            _STORE_TOP_PRODUCTS_SQL,
            {
                "store": store_id,
                "reps": None if (reps := ctx.rep_ids()) is None else IntArray.of(reps),
                "start": period.start,
                "end": period.end,
                "cutoff": rollup_cutoff(ctx),
                "limit": limit,
            },
        ).all()
        return _top_products(rows)
    filters = []
    if store_id is not None:
        filters.append(Store.id == store_id)
    if region is not None:
        filters.append(func.lower(Store.region) == region.strip().lower())
    stores = visible_store_ids(ctx, *filters)
    sales = product_sales_source(
        ctx, period.start, period.end, stores, by_rep=store_id is None, region=region
    )
    amount = func.sum(sales.c.amount).label("amount")
    per_product = (
        select(
            sales.c.product_id,
            func.sum(sales.c.quantity).label("quantity"),
            amount,
            func.sum(sales.c.orders).label("orders"),
            # Every product's sales add up to the stores' total: computed before the LIMIT.
            func.sum(func.sum(sales.c.amount)).over().label("total"),
        )
        .group_by(sales.c.product_id)
        .having(func.sum(sales.c.orders) > 0)
        .order_by(amount.desc(), sales.c.product_id)
        .limit(limit)
        .subquery("top")
    )
    # The products' columns a result names them by (not whole products: their attributes
    # are neither needed nor cheap to load).
    rows = ctx.session.execute(
        select(
            Product.id,
            Product.sku,
            Product.name,
            Product.brand,
            Product.category,
            per_product.c.quantity,
            per_product.c.amount,
            per_product.c.orders,
            per_product.c.total,
        )
        .join(per_product, per_product.c.product_id == Product.id)
        .order_by(per_product.c.amount.desc(), Product.id)
    ).all()
    return _top_products(rows)


def _top_products(rows: Sequence[Row[Any]]) -> tuple[list[TopProduct], Decimal]:
    """Rows of (product columns, quantity, amount, orders, total) as top products and their
    stores' total."""
    total_money = to_money(rows[0].total if rows else 0)
    products = [
        TopProduct(
            product=ProductRef.model_validate(row),
            quantity=int(row.quantity),
            amount=row.amount,
            orders=int(row.orders),
            share_pct=round(float(to_money(row.amount) / total_money * 100), 1)
            if total_money
            else None,
        )
        for row in rows
    ]
    return products, total_money


@tool(category="orders")
def top_products(
    ctx: ToolContext,
    *,
    store: Ref | None = None,
    region: str | None = None,
    period: str = "last_90_days",
    start: dt.date | None = None,
    end: dt.date | None = None,
    limit: Limit = 10,
) -> TopProducts:
    """The best-selling products (by amount) for a store, a region, or all the user's stores.

    Args:
        store: A store's id, code or name, to look at that store only.
        region: A region name, to look at that region's stores only.
        period: A named period such as last_90_days, this_month or last_year.
        start: First day of an explicit period (ISO date).
        end: Last day of an explicit period (ISO date); defaults to today.
        limit: How many products to list.
    """
    current, _ = resolve_period(ctx.today, period, start, end)
    found = resolve_store(ctx, store) if store else None
    products, total = top_products_for(
        ctx, current, store_id=found.id if found else None, region=region, limit=limit
    )
    return TopProducts(
        period=current,
        store=StoreRef.model_validate(found) if found else None,
        region=region,
        total_amount=total,
        products=products,
    )


# --------------------------------------------------------------------------- lapsed stores


class LapsedStore(Schema):
    store: StoreRef
    rep_name: str | None
    phone: str | None
    last_order_date: dt.date | None
    last_order_amount: Money | None
    days_since_last_order: int | None = Field(description="None when the store never ordered.")


class LapsedStores(Schema):
    """Stores with no order for at least `days` days (or never), longest silence first."""

    days: int
    as_of: dt.date
    total: int = Field(description="How many stores match (rows may be fewer: limit).")
    never_ordered: int
    stores: list[LapsedStore]


@tool(category="orders")
def stores_not_ordered_since(
    ctx: ToolContext, *, days: Annotated[int, Field(ge=1, le=3650)] = 30, limit: Limit = 20
) -> LapsedStores:
    """Stores that have not ordered for at least N days, or never ordered, longest first.

    Args:
        days: Minimum days since the last placed or delivered order.
        limit: How many stores to list.
    """
    changed, usable = last_sale_changes(ctx.session, ctx.today)
    threshold = ctx.today - dt.timedelta(days=days)
    if usable and changed is None:
        # Nothing changed since the refresh (the usual case): the stored dates as they are.
        reps = ctx.rep_ids()
        return _lapsed(
            ctx,
            days,
            ctx.session.execute(
                _LAPSED_STORES_SQL,
                {
                    "reps": None if reps is None else IntArray.of(reps),
                    "threshold": threshold,
                    "limit": limit,
                },
            ).all(),
        )
    scoped = select(Store.id).where(ctx.store_scope(), Store.is_active.is_(True)).subquery("scoped")
    # Each store's latest sales date: from `store_last_sale` plus the orders of the days changed
    # since its refresh (see `last_sale_changes`), else an index-only read of
    # `ix_orders_store_last_sale`, which is also what every store costs when the stored dates
    # cannot be used.
    probe = (
        select(Order.order_date)
        .where(Order.store_id == scoped.c.id, Order.status.in_(SALES_STATUSES))
        .order_by(Order.order_date.desc())
        .limit(1)
        .scalar_subquery()
    )
    source: Any = scoped
    last_date: Any = probe
    if usable:
        source = scoped.outerjoin(store_last_sale, store_last_sale.c.store_id == scoped.c.id)
        stored = store_last_sale.c.last_sale
        if changed is None:
            # Nothing changed since the refresh: a store without a stored date has no sale.
            last_date = stored
        else:
            recent = (
                select(Order.store_id, func.max(Order.order_date).label("last_sale"))
                .where(Order.order_date >= changed, Order.status.in_(SALES_STATUSES))
                .group_by(Order.store_id)
                .subquery("recent")
            )
            source = source.outerjoin(recent, recent.c.store_id == scoped.c.id)
            last_date = case(
                (
                    stored.is_(None) | (stored < changed),
                    func.greatest(stored, recent.c.last_sale),
                ),
                else_=probe,
            )
    # One pass over the store ids: the counts ride along as window aggregates over every
    # matching store, computed before the LIMIT; only the listed stores' rows are read.
    dated = (
        select(scoped.c.id.label("store_id"), last_date.label("order_date"))
        .select_from(source)
        .subquery("dated")
    )
    top = (
        select(
            dated.c.store_id,
            dated.c.order_date,
            func.count().over().label("total"),
            func.count().filter(dated.c.order_date.is_(None)).over().label("never"),
        )
        .where(dated.c.order_date.is_(None) | (dated.c.order_date <= threshold))
        .order_by(dated.c.order_date.asc().nulls_last(), dated.c.store_id)
        .limit(limit)
        .subquery("top")
    )
    # The listed stores' latest sales order, for its amount.
    last = (
        select(Order.total_amount)
        .where(
            Order.store_id == top.c.store_id,
            Order.status.in_(SALES_STATUSES),
            Order.order_date == top.c.order_date,
        )
        .order_by(Order.order_date.desc(), Order.id.desc())
        .limit(1)
        .lateral("last")
    )
    rep = aliased(User)
    rows = ctx.session.execute(
        select(
            Store.id,
            Store.code,
            Store.name,
            Store.city,
            Store.region,
            Store.phone,
            rep.name.label("rep_name"),
            top.c.order_date,
            last.c.total_amount,
            top.c.total,
            top.c.never,
        )
        .join(top, top.c.store_id == Store.id)
        .outerjoin(last, literal(True))
        .outerjoin(rep, rep.id == Store.rep_id)
        .order_by(top.c.order_date.asc().nulls_last(), Store.id)
    ).all()
    return _lapsed(ctx, days, rows)


# `stores_not_ordered_since` when the stored last sales hold every order (nothing changed since
# their refresh), written once: the same steps as the statement built for the other cases.
_LAPSED_STORES_SQL = text(
    f"""
    WITH top AS (
      SELECT s.id AS store_id, m.last_sale AS order_date,
             count(*) OVER () AS total,
             count(*) FILTER (WHERE m.last_sale IS NULL) OVER () AS never
      FROM stores s LEFT JOIN store_last_sale m ON m.store_id = s.id
      WHERE s.is_active AND {_REPS_SCOPE.format("s")}
        AND (m.last_sale IS NULL OR m.last_sale <= :threshold)
      ORDER BY m.last_sale ASC NULLS LAST, s.id
      LIMIT :limit)
    SELECT s.id, s.code, s.name, s.city, s.region, s.phone, u.name AS rep_name,
           top.order_date, last.total_amount, top.total, top.never
    FROM top JOIN stores s ON s.id = top.store_id
    LEFT JOIN LATERAL (
      SELECT o.total_amount FROM orders o
      WHERE o.store_id = top.store_id AND o.status IN {SALES_STATUSES!r}
        AND o.order_date = top.order_date
      ORDER BY o.order_date DESC, o.id DESC
      LIMIT 1) last ON true
    LEFT JOIN users u ON u.id = s.rep_id
    ORDER BY top.order_date ASC NULLS LAST, s.id
    """
)


def _lapsed(ctx: ToolContext, days: int, rows: Sequence[Row[Any]]) -> LapsedStores:
    """Rows of (store columns, rep_name, order_date, total_amount, total, never) as the
    result."""
    return LapsedStores(
        days=days,
        as_of=ctx.today,
        total=int(rows[0].total) if rows else 0,
        never_ordered=int(rows[0].never) if rows else 0,
        stores=[
            LapsedStore(
                store=StoreRef.model_validate(row),
                rep_name=row.rep_name,
                phone=row.phone,
                last_order_date=row.order_date,
                last_order_amount=row.total_amount,
                days_since_last_order=(ctx.today - row.order_date).days if row.order_date else None,
            )
            for row in rows
        ],
    )
