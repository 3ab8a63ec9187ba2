"""Store tools: find a store by whatever someone remembers of it, and a store's profile.

`find_store` ranks candidates (name and owner by pg_trgm similarity, code, phone, city) so a
caller can ask "did you mean ...?"; `store_profile` gathers what a rep wants to know before a
call. Both see only the stores the actor may see.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import Row, text

from tools.context import ToolContext
from tools.credit import credit_position
from tools.db import IntArray
from tools.models import Store
from tools.orders import SALES_STATUSES, TopProduct, top_products_for
from tools.registry import tool
from tools.resolve import (
    CONFIDENT_MARGIN,
    CONFIDENT_SCORE,
    _case_variants,
    _phone_digits,
    resolve_store,
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


# find_store's statement, written once per shape (see `_find_store_sql`). Its parts, each over
# `stores` as `s` (`{s}`) with the query bound as :q: ways of matching that score the same for
# every store they match ...
_CODE_EXACT = "{s}.code = ANY(CAST(:variants AS varchar[]))"
# (as LIKE 'prefix%' with wildcards typed taken literally, which the code index answers)
_CODE_PREFIX = "lower({s}.code) LIKE CAST(:prefix AS text) ESCAPE '/'"
_CITY_EXACT = "lower({s}.city) = CAST(:city AS text)"
_PHONE_EXACT = "{s}.phone_key = CAST(:phone AS text)"
# ... the trigram scores of the name (`_NAME_SCORE`) and of the name or owner (`store_match_score`:
# owners weighed 0.9), the thresholds within which they count (`store_match_ways`), and the
# distances by which the nearest are read from the trigram GiST indexes (`nearest_stores`).
_Q = "CAST(:q AS text)"
_NAME_SCORE = f"greatest(similarity({{s}}.name, {_Q}), word_similarity({_Q}, {{s}}.name))"
_MATCH_SCORE = (
    f"CAST(greatest(similarity({{s}}.name, {_Q}), word_similarity({_Q}, {{s}}.name), "
    f"similarity(coalesce({{s}}.owner_name, ''), {_Q}) * 0.9, "
    f"word_similarity({_Q}, coalesce({{s}}.owner_name, '')) * 0.9) AS float8)"
)
_WORD_THRESHOLD = "CAST(current_setting('pg_trgm.word_similarity_threshold') AS real)"
_MATCH_WAYS = (
    f"{{s}}.name % {_Q}",
    f"{_Q} <% {{s}}.name",
    f"{{s}}.owner_name % {_Q}",
    f"{_Q} <% {{s}}.owner_name",
)
# The same thresholds as functions, for rows already found: the planner estimates how many rows
# an operator such as `%` keeps by running it over the column's statistics, about a millisecond
# of planning for the four of them, and not at all for a function's result. (`show_limit()`
# also loads pg_trgm, whose settings `current_setting` then reads, before any row is checked.)
_MATCH_CHECKS = (
    f"similarity({{s}}.name, {_Q}) >= show_limit()",
    f"word_similarity({_Q}, {{s}}.name) >= {_WORD_THRESHOLD}",
    f"similarity({{s}}.owner_name, {_Q}) >= show_limit()",
    f"word_similarity({_Q}, {{s}}.owner_name) >= {_WORD_THRESHOLD}",
)
# Word similarity only: a string's `similarity` to the query is that of its whole trigram set,
# one of the extents `word_similarity` takes the best of, so the nearest by word distance are
# the nearest by the best of both (scanning by `<->` as well doubled the cost). pg_trgm's search
# for the best extent may settle a hair lower: on the 10,000-store demo, 5 of 4 million pairs
# of a name and a query, all under 0.2 and by less than 0.001.
_DISTANCES = (
    f"{_Q} <<-> {{s}}.name",
    f"{_Q} <<-> {{s}}.owner_name",
)
# The stores the actor may see (a NULL array of reps: every store).
_SCOPE = "(CAST(:reps AS integer[]) IS NULL OR {s}.rep_id = ANY(CAST(:reps AS integer[])))"
_FIND_STORE: dict[tuple[bool, bool], Any] = {}


def _find_store_sql(few: bool, phone: bool) -> Any:
    """find_store's statement for one rep's stores (`few`) or a team's or the fleet's, with or
    without a phone number to match.

    The stores that can make the list come from one branch per way, each read through its
    index (one OR across them all made the planner compute every similarity of every visible
    store, 0.1 s at 10,000 stores). For one rep's stores: every store matching any way (a few
    hundred at most). For a team or the fleet, where a common word such as "general" is within
    the trigram thresholds of a thousand names, each to be scored: the stores nearest by each
    trigram measure, read nearest-first (`:k`, as many as `resolve_store` reads: three times
    the list, for ties on one distance), and, since a code prefix (0.8) or a city (0.6) scores
    the same for every store it matches, the first few by name of those (any store of them
    whose name scores higher is among the nearest); the nearest names count only within
    pg_trgm's similarity thresholds, checked on those few rows. Nearest-first costs more than
    it saves for one rep's stores, a tenth of what it reads. The few matching ids go as an
    array: each looked up by primary key, rather than every store read to join them."""
    cached = _FIND_STORE.get((few, phone))
    if cached is not None:
        return cached

    def on(part: str, alias: str = "s") -> str:
        return part.format(s=alias)

    exact = [_CODE_EXACT, *([_PHONE_EXACT] if phone else [])]
    scored = [_CODE_PREFIX, _CITY_EXACT]
    if few:
        branches = [
            f"SELECT m.id FROM stores m WHERE {on(_SCOPE, 'm')} AND {on(way, 'm')}"
            for way in (*exact, *scored, *_MATCH_WAYS)
        ]
        within = ""
    else:
        branches = [
            f"SELECT m.id FROM stores m WHERE {on(_SCOPE, 'm')} AND {on(way, 'm')}" for way in exact
        ]
        branches += [
            f"SELECT id FROM (SELECT m.id FROM stores m WHERE {on(_SCOPE, 'm')} "
            f"AND {on(way, 'm')} ORDER BY m.name, m.id LIMIT :shown) f"
            for way in scored
        ]
        branches += [
            f"SELECT id FROM (SELECT m.id FROM stores m WHERE {on(_SCOPE, 'm')} "
            f"ORDER BY {on(distance, 'm')} LIMIT :k) n"
            for distance in _DISTANCES
        ]
        within = "AND (" + " OR ".join(on(way) for way in (*exact, *scored, *_MATCH_CHECKS)) + ")"
    fuzzy = on(_MATCH_SCORE)
    name_score = on(_NAME_SCORE)
    code_exact, code_prefix, city_exact = on(_CODE_EXACT), on(_CODE_PREFIX), on(_CITY_EXACT)
    phone_exact = on(_PHONE_EXACT) if phone else "false"
    union_of = "\n      UNION ".join(branches)
    statement = text(
        f"""
        SELECT s.id, s.code, s.name, s.owner_name, s.phone, s.city, s.region, u.name AS rep_name,
               greatest(
                 CASE WHEN {code_exact} THEN 1.0 WHEN {phone_exact} THEN 1.0
                      WHEN {code_prefix} THEN 0.8 ELSE 0.0 END,
                 CASE WHEN {city_exact} THEN 0.6 ELSE 0.0 END,
                 {fuzzy}) AS score,
               CASE WHEN {code_exact} THEN 'code' WHEN {phone_exact} THEN 'phone'
                    WHEN {code_prefix} THEN 'code'
                    WHEN {fuzzy} > 0.6 THEN
                      CASE WHEN {name_score} >= {fuzzy} THEN 'name' ELSE 'owner' END
                    WHEN {city_exact} THEN 'city'
                    WHEN {name_score} >= {fuzzy} THEN 'name'
                    ELSE 'owner' END AS matched_on
        FROM stores s LEFT JOIN users u ON u.id = s.rep_id
        WHERE s.id = ANY(ARRAY(
          {union_of}))
          AND {on(_SCOPE)} {within}
        ORDER BY score DESC, s.name, s.id
        LIMIT :shown
        """
    )
    _FIND_STORE[(few, phone)] = statement
    return statement


def _like_prefix(text_: str) -> str:
    """`text_` lowercased as a LIKE pattern of what starts with it (`%`, `_` and the escape
    character `/` taken literally)."""
    escaped = text_.lower().replace("/", "//").replace("%", "/%").replace("_", "/_")
    return escaped + "%"


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
    text_ = query.strip()
    phone = _phone_digits(text_)
    reps = ctx.rep_ids()
    shown = limit + 1
    rows = ctx.session.execute(
        _find_store_sql(reps is not None and len(reps) <= 1, phone is not None),
        {
            "q": text_,
            "variants": _case_variants(text_),
            "prefix": _like_prefix(text_),
            "city": text_.lower(),
            "phone": phone,
            "reps": None if reps is None else IntArray.of(reps),
            "shown": shown,
            "k": 3 * shown,
        },
    ).all()
    candidates = [
        StoreCandidate.model_validate({**row._mapping, "score": round(float(row.score), 3)})
        for row in rows
    ]
    best = candidates[0].score if candidates else 0.0
    second = candidates[1].score if len(candidates) > 1 else 0.0
    confident = bool(candidates) and (
        (best == 1.0 and second < 1.0)
        or (best >= CONFIDENT_SCORE and best - second >= CONFIDENT_MARGIN)
    )
    return StoreMatches(query=text_, confident=confident, candidates=candidates[:limit])


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


@tool(category="stores", generic_plans=True)
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


# `_profile_figures`' statement, written once. The uninvoiced value is `uninvoiced_query`'s.
_PROFILE_FIGURES_SQL = text(
    f"""
    SELECT figures.*, last.*,
           (SELECT coalesce(sum(u.total_amount), 0) FROM orders u
            WHERE u.store_id = :store AND u.status = 'placed'
              AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.order_id = u.id)) AS uninvoiced,
           (SELECT name FROM users WHERE id = :rep) AS rep_name
    FROM (
      SELECT count(o.id) FILTER (WHERE o.order_date >= :window) AS window_orders,
             avg(o.total_amount) FILTER (WHERE o.order_date >= :window) AS average,
             count(DISTINCT o.order_date) FILTER (WHERE o.order_date >= :window) AS order_days,
             min(o.order_date) FILTER (WHERE o.order_date >= :window) AS first_day,
             max(o.order_date) FILTER (WHERE o.order_date >= :window) AS last_day,
             count(o.id) FILTER (WHERE o.order_date >= :recent) AS recent_count,
             coalesce(sum(o.total_amount) FILTER (WHERE o.order_date >= :recent), 0)
               AS recent_amount
      FROM orders o
      WHERE o.store_id = :store AND o.status IN {SALES_STATUSES!r}
        AND o.order_date BETWEEN :first AND :today) figures
    LEFT JOIN (
      SELECT o.id AS last_id, o.order_date AS last_date, o.total_amount AS last_amount,
             o.status AS last_status
      FROM orders o
      WHERE o.store_id = :store AND o.status IN {SALES_STATUSES!r}
      ORDER BY o.order_date DESC, o.id DESC
      LIMIT 1) last ON true
    """
)


def _profile_figures(
    ctx: ToolContext, store: Store, window_start: dt.date, recent_start: dt.date
) -> Row[Any]:
    """The store's order figures, last order, uninvoiced open orders and rep, in one statement."""
    return ctx.session.execute(
        _PROFILE_FIGURES_SQL,
        {
            "store": store.id,
            "rep": store.rep_id,
            "window": window_start,
            "recent": recent_start,
            "first": min(window_start, recent_start),
            "today": ctx.today,
        },
    ).one()
