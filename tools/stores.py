"""Store tools: find a store by whatever someone remembers of it, and a store's profile.

`find_store` ranks candidates (name and owner by pg_trgm similarity, code, phone, city) so a
caller can ask "did you mean ...?"; `store_profile` gathers what a rep wants to know before a
call. Both see only the stores the actor may see.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import Float, Row, any_, case, cast, func, literal, or_, select, true, union
from sqlalchemy.orm import aliased

from tools.context import ToolContext
from tools.credit import credit_position, uninvoiced_query
from tools.models import Order, Store, User
from tools.orders import SALES_STATUSES, TopProduct, top_products_for
from tools.registry import tool
from tools.resolve import (
    CONFIDENT_MARGIN,
    CONFIDENT_SCORE,
    _case_variants,
    _phone_digits,
    nearest_stores,
    resolve_store,
    store_match_score,
    store_match_ways,
)
from tools.schemas import Money, Period, Ref, Schema, StoreRef, to_money

PROFILE_WINDOW_DAYS = 365
RECENT_DAYS = 90


class StoreCandidate(Schema):
    """A store that may be the one meant, with how well it matched."""

    id: int
    code: str
    name: str
    owner_name: str | None
    phone: str | None
    city: str | None
    region: str | None
    rep_name: str | None
    score: float = Field(description="1.0 for an exact code or phone match.")
    matched_on: str = Field(description="code, phone, name, owner or city")


class StoreMatches(Schema):
    """Stores matching what someone typed, best first."""

    query: str
    confident: bool = Field(
        description="True when the first candidate is clearly the one meant; otherwise ask."
    )
    candidates: list[StoreCandidate]


@tool(category="stores")
def find_store(
    ctx: ToolContext,
    *,
    query: Annotated[str, Field(min_length=1, max_length=200)],
    limit: Annotated[int, Field(ge=1, le=50)] = 5,
) -> StoreMatches:
    """Find stores by name, code, owner, phone or city; ranked candidates with scores.

    Args:
        query: What the person typed, e.g. "sharma general", "ST00042", "98200 12345" or "Pune".
        limit: How many candidates to return.
    """
    text = query.strip()
    q = literal(text)
    phone = _phone_digits(text)
    phone_digits = func.right(func.regexp_replace(Store.phone, r"\D", "", "g"), 10)
    code_exact = Store.code.in_(_case_variants(text))
    # As LIKE 'prefix%' (wildcards typed taken literally), which the code index
    # (text_pattern_ops) answers.
    code_prefix = func.lower(Store.code).startswith(text.lower(), autoescape=True)
    city_exact = func.lower(Store.city) == text.lower()
    phone_exact = phone_digits == phone if phone else literal(False)
    name_score = cast(
        func.greatest(func.similarity(Store.name, q), func.word_similarity(q, Store.name)), Float
    )
    fuzzy = store_match_score(text)
    score = func.greatest(
        case((code_exact, 1.0), (phone_exact, 1.0), (code_prefix, 0.8), else_=0.0),
        case((city_exact, 0.6), else_=0.0),
        fuzzy,
    ).label("score")
    matched_on = case(
        (code_exact, "code"),
        (phone_exact, "phone"),
        (code_prefix, "code"),
        (fuzzy > 0.6, case((name_score >= fuzzy, "name"), else_="owner")),
        (city_exact, "city"),
        (name_score >= fuzzy, "name"),
        else_="owner",
    ).label("matched_on")
    # The stores that can make the list, one branch per way, each read through its index (one
    # OR across them all made the planner compute every similarity of every visible store, 0.1 s
    # at 10,000 stores). For one rep's stores: every store matching any way (a few hundred at
    # most). For a team or the fleet, where a common word such as "general" is within the
    # trigram thresholds of a thousand names, each to be scored: the stores nearest by each
    # trigram measure, read nearest-first (as many as `resolve_store` reads: three times the
    # list, for ties on one distance), and, since a code prefix (0.8) or a city (0.6) scores
    # the same for every store it matches, the first few by name of those (any store of them
    # whose name scores higher is among the nearest). Nearest-first costs more than it saves
    # for one rep's stores, a tenth of what it reads.
    scope = ctx.store_scope()
    shown = limit + 1
    ways = [code_exact, code_prefix, city_exact, *([phone_exact] if phone else [])]
    reps = ctx.rep_ids()
    rep = aliased(User)
    listing = (
        select(Store, rep.name, score, matched_on)
        .outerjoin(rep, rep.id == Store.rep_id)
        .order_by(score.desc(), Store.name, Store.id)
        .limit(limit + 1)
    )
    if reps is not None and len(reps) <= 1:
        matching = union(
            *(select(Store.id).where(scope, way) for way in ways),
            *(select(Store.id).where(scope, way) for way in store_match_ways(text)),
        )
    else:
        matching = union(
            select(Store.id).where(scope, code_exact),
            *(
                select(Store.id)
                .where(scope, way)
                .order_by(Store.name, Store.id)
                .limit(shown)
                .subquery()
                .select()
                for way in ways[1:]
            ),
            select(nearest_stores(ctx, text, k=3 * shown).c.id),
        )
        # The nearest names count only within pg_trgm's similarity thresholds (checked on
        # these few rows).
        listing = listing.where(or_(*ways, *store_match_ways(text)))
    # The few matching ids as an array: each looked up by primary key, rather than every
    # store read to join them.
    rows = ctx.session.execute(
        listing.where(scope, Store.id == any_(func.array(matching.scalar_subquery())))
    ).all()
    candidates = [
        StoreCandidate(
            id=store.id,
            code=store.code,
            name=store.name,
            owner_name=store.owner_name,
            phone=store.phone,
            city=store.city,
            region=store.region,
            rep_name=rep_name,
            score=round(float(value), 3),
            matched_on=how,
        )
        for store, rep_name, value, how in rows
    ]
    best = candidates[0].score if candidates else 0.0
    second = candidates[1].score if len(candidates) > 1 else 0.0
    confident = bool(candidates) and (
        (best == 1.0 and second < 1.0)
        or (best >= CONFIDENT_SCORE and best - second >= CONFIDENT_MARGIN)
    )
    return StoreMatches(query=text, confident=confident, candidates=candidates[:limit])


class LastOrder(Schema):
    id: int
    order_date: dt.date
    amount: Money
    status: str
    days_ago: int


class StoreProfile(Schema):
    """What to know about a store before calling it."""

    store: StoreRef
    owner_name: str | None
    phone: str | None
    address: dict[str, object] | None
    segment: str | None
    rep_name: str | None
    is_active: bool
    credit_limit: Money
    payment_terms_days: int
    last_order: LastOrder | None
    window_days: int = Field(description="Averages below cover this many days up to today.")
    orders_in_window: int
    average_order_value: Money | None
    average_days_between_orders: float | None
    orders_last_90_days: int
    sales_last_90_days: Money
    outstanding: Money
    overdue: Money
    open_orders_not_invoiced: Money
    available_credit: Money
    top_products: list[TopProduct] = Field(description="By amount over the window.")


@tool(category="stores")
def store_profile(ctx: ToolContext, *, store: Ref) -> StoreProfile:
    """A store's profile: owner, phone, segment, rep, credit limit and terms, last order,
    average order value and interval, orders in the last 90 days, outstanding and overdue
    amounts, and top products.

    Args:
        store: The store's id, code or name (partial or misspelt names work).
    """
    found = resolve_store(ctx, store)
    window_start = ctx.today - dt.timedelta(days=PROFILE_WINDOW_DAYS - 1)
    recent_start = ctx.today - dt.timedelta(days=RECENT_DAYS - 1)
    figures = _profile_figures(ctx, found, window_start, recent_start)
    interval = None
    if figures.order_days and figures.order_days > 1:
        interval = round((figures.last_day - figures.first_day).days / (figures.order_days - 1), 1)
    credit = credit_position(ctx, found, uninvoiced=figures.uninvoiced)
    window = Period(name=f"last_{PROFILE_WINDOW_DAYS}_days", start=window_start, end=ctx.today)
    top, _ = top_products_for(ctx, window, store_id=found.id, limit=5)
    return StoreProfile(
        store=StoreRef.model_validate(found),
        owner_name=found.owner_name,
        phone=found.phone,
        address=found.address,
        segment=found.segment,
        rep_name=figures.rep_name,
        is_active=found.is_active,
        credit_limit=found.credit_limit,
        payment_terms_days=found.payment_terms_days,
        last_order=LastOrder(
            id=figures.last_id,
            order_date=figures.last_date,
            amount=figures.last_amount,
            status=figures.last_status,
            days_ago=(ctx.today - figures.last_date).days,
        )
        if figures.last_id is not None
        else None,
        window_days=PROFILE_WINDOW_DAYS,
        orders_in_window=int(figures.window_orders),
        average_order_value=to_money(figures.average) if figures.average is not None else None,
        average_days_between_orders=interval,
        orders_last_90_days=int(figures.recent_count),
        sales_last_90_days=figures.recent_amount,
        outstanding=credit.outstanding,
        overdue=credit.overdue,
        open_orders_not_invoiced=credit.open_orders_not_invoiced,
        available_credit=credit.available,
        top_products=top,
    )


def _profile_figures(
    ctx: ToolContext, store: Store, window_start: dt.date, recent_start: dt.date
) -> Row[Any]:
    """The store's order figures, last order, uninvoiced open orders and rep, in one statement."""
    sales = (Order.store_id == store.id, Order.status.in_(SALES_STATUSES))
    in_window = Order.order_date >= window_start
    recent = Order.order_date >= recent_start
    figures = (
        select(
            func.count(Order.id).filter(in_window).label("window_orders"),
            func.avg(Order.total_amount).filter(in_window).label("average"),
            func.count(func.distinct(Order.order_date)).filter(in_window).label("order_days"),
            func.min(Order.order_date).filter(in_window).label("first_day"),
            func.max(Order.order_date).filter(in_window).label("last_day"),
            func.count(Order.id).filter(recent).label("recent_count"),
            func.coalesce(func.sum(Order.total_amount).filter(recent), 0).label("recent_amount"),
        )
        .where(*sales, Order.order_date.between(min(window_start, recent_start), ctx.today))
        .subquery("figures")
    )
    last = (
        select(
            Order.id.label("last_id"),
            Order.order_date.label("last_date"),
            Order.total_amount.label("last_amount"),
            Order.status.label("last_status"),
        )
        .where(*sales)
        .order_by(Order.order_date.desc(), Order.id.desc())
        .limit(1)
        .subquery("last")
    )
    rep_name = select(User.name).where(User.id == store.rep_id).scalar_subquery()
    return ctx.session.execute(
        select(
            figures,
            last,
            uninvoiced_query(store.id).scalar_subquery().label("uninvoiced"),
            rep_name.label("rep_name"),
        ).select_from(figures.outerjoin(last, true()))
    ).one()
