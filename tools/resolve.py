"""Name a store, product or order the way people do: by id, code/SKU, phone or a misspelt name.

Every tool that takes a store, product or order resolves it here, so they all behave alike:

1. Exact matches first: the id (when the reference is a number), the code or SKU (any case),
   and for stores the phone number (last ten digits).
2. Otherwise a fuzzy match with pg_trgm (`similarity` and `word_similarity`) on the name, and
   for stores the owner's name too: the best-scoring visible stores, found nearest-first
   through the trigram GiST indexes. A full name (any case) is one index lookup first.
3. One confident match is returned. When several are about as good, `Ambiguous` lists them
   with scores so the caller can ask "did you mean"; the resolver never guesses. When nothing
   is close, `NotFound`.

Stores are searched only within what the actor may see (`ToolContext.store_scope`), so a store
the actor may not see produces exactly the same `NotFound` as a store that does not exist.
Orders are found through their store, with the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    String,
    any_,
    bindparam,
    cast,
    func,
    literal,
    or_,
    select,
    union,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import joinedload

from tools.context import Actor, ToolContext, store_scope
from tools.db import DirectStatement
from tools.models import Order, Product, Store
from tools.registry import Ambiguous, NotFound
from tools.schemas import Candidate

# A fuzzy match is taken on its own only when it is this good ...
CONFIDENT_SCORE = 0.5
# ... and this far ahead of the runner-up; otherwise the candidates go back to the person.
CONFIDENT_MARGIN = 0.15
# Below this a fuzzy match is not offered at all.
MIN_SCORE = 0.3
MAX_CANDIDATES = 5

_NON_DIGITS = re.compile(r"\D")


def _phone_digits(text: str) -> str | None:
    digits = _NON_DIGITS.sub("", text)
    # A reference is a phone number only if it is mostly digits and long enough.
    if len(digits) >= 7 and len(digits) >= len(text.replace(" ", "")) - 3:
        return digits[-10:]
    return None


def _case_variants(text: str) -> list[str]:
    # IN over the exact variants keeps the unique index on code/SKU usable.
    return list(dict.fromkeys([text, text.upper(), text.lower()]))


def store_match_score(query: str) -> ColumnElement[float]:
    """Fuzzy score of a store against `query` (0..1): best of name and owner matches."""
    q = literal(query)
    owner = func.coalesce(Store.owner_name, "")
    return cast(
        func.greatest(
            func.similarity(Store.name, q),
            func.word_similarity(q, Store.name),
            func.similarity(owner, q) * 0.9,
            func.word_similarity(q, owner) * 0.9,
        ),
        Float,
    )


def store_match_ways(query: str) -> list[ColumnElement[bool]]:
    """Index-friendly pre-filters for `store_match_score` (pg_trgm `%` and `<%` operators), a
    store matching if any holds. Each is answerable from one trigram index: query them as
    separate branches (a single OR over them, or over other conditions, makes the planner
    compute every similarity of every store instead)."""
    q = literal(query)
    return [
        Store.name.op("%")(q),
        q.op("<%")(Store.name),
        Store.owner_name.op("%")(q),
        q.op("<%")(Store.owner_name),
    ]


# How many stores each nearest-name branch returns: more than the candidates shown, so that
# stores tied on one distance (several owned by "Suresh Verma") are ranked by score and id.
NEAREST_PER_WAY = 3 * (MAX_CANDIDATES + 1)


def nearest_scored(
    entity: Any,
    score: ColumnElement[float],
    distances: Sequence[ColumnElement[float]],
    where: Sequence[ColumnElement[bool]],
    k: int = NEAREST_PER_WAY,
) -> Any:
    """(id, score) of the rows nearest by each of `distances` (the k nearest by each, read
    nearest-first from a trigram GiST index: `<->`, `<<->`), scored in place, as a subquery.

    The best `k` rows by `score` (the best of the measures the distances come from) are all
    among them: a row that is some measure's best for it and has k rows nearer by that measure
    would have k better scores. A nearest-first scan stops after a handful of rows however
    common the words of the name are; matching by trigram overlap first touches every row
    sharing them."""
    branches = [
        select(entity.id.label("id"), score.label("score"))
        .where(*where)
        .order_by(distance)
        .limit(k)
        .subquery()
        .select()
        for distance in distances
    ]
    return union(*branches).subquery("nearest")


def nearest_stores(ctx: ToolContext, query: str, *, k: int = NEAREST_PER_WAY) -> Any:
    """The visible stores nearest to `query` by each measure of `store_match_score` (name and
    owner, `similarity` and `word_similarity`), `k` by each, with their scores (see
    `nearest_scored`)."""
    q = literal(query)
    owner = Store.owner_name
    return nearest_scored(
        Store,
        store_match_score(query),
        (
            Store.name.op("<->", return_type=Float)(q),
            q.op("<<->", return_type=Float)(Store.name),
            owner.op("<->", return_type=Float)(q),
            q.op("<<->", return_type=Float)(owner),
        ),
        [ctx.store_scope()],
        k,
    )


def _store_candidate(store: Store, score: float) -> dict[str, Any]:
    detail = ", ".join(p for p in (store.owner_name, store.city) if p) or None
    return Candidate(
        id=store.id, code=store.code, name=store.name, detail=detail, score=round(score, 3)
    ).model_dump(mode="json")


def _product_candidate(product: Product, score: float) -> dict[str, Any]:
    detail = ", ".join(p for p in (product.brand, product.pack_size) if p) or None
    return Candidate(
        id=product.id, code=product.sku, name=product.name, detail=detail, score=round(score, 3)
    ).model_dump(mode="json")


def _pick(
    ref: str,
    scored: Sequence[tuple[Any, float]],
    kind: str,
    describe: Any,
) -> Any:
    """The confident best of fuzzy `scored` rows (best first), or a clear error."""
    scored = [(row, score) for row, score in scored if score >= MIN_SCORE]
    if not scored:
        raise NotFound(f"No {kind} found for '{ref}'.")
    exact = [row for row, _ in scored if row.name.strip().lower() == ref.strip().lower()]
    if len(exact) == 1:
        return exact[0]
    best, best_score = scored[0]
    runner_up = scored[1][1] if len(scored) > 1 else 0.0
    if not exact and best_score >= CONFIDENT_SCORE and best_score - runner_up >= CONFIDENT_MARGIN:
        return best
    candidates = [describe(row, score) for row, score in scored[:MAX_CANDIDATES]]
    raise Ambiguous(
        f"Several {kind}s match '{ref}'; which one did you mean?", candidates=candidates
    )


def _one_or_ask(rows: Sequence[Any], message: str, describe: Any) -> Any:
    """The row when there is exactly one; several: `Ambiguous` listing them; none: None."""
    if len(rows) == 1:
        return rows[0]
    if len(rows) > 1:
        raise Ambiguous(message, candidates=[describe(row, 1.0) for row in rows])
    return None


def _best_nearest(ctx: ToolContext, entity: Any, nearest: Any, text: str, kind: str) -> Any:
    """The confident best of the `nearest` rows scoring at least `MIN_SCORE` (see `_pick`)."""
    describe = _store_candidate if kind == "store" else _product_candidate
    rows = ctx.session.execute(
        select(entity, nearest.c.score)
        .join(nearest, nearest.c.id == entity.id)
        .where(nearest.c.score >= MIN_SCORE)
        .order_by(nearest.c.score.desc(), entity.id)
        .limit(MAX_CANDIDATES + 1)
    ).all()
    return _pick(text, [(r[0], float(r[1])) for r in rows], kind, describe)


# The exact lookup's parameters: the code's case variants as one array (the unique index on
# the code answers `= ANY`), the id, the phone's last ten digits and the full name in lower case.
_CODES = bindparam("codes", type_=ARRAY(String()))
_REPS = bindparam("reps", type_=ARRAY(Integer()))


def _exact_lookup(
    scope: ColumnElement[bool], by_id: bool, by_phone: bool, by_name: bool, *, columns: bool = False
) -> Any:
    """The stores within `scope` that the reference names exactly (by code, and by id and
    phone when it may be one) or, when `by_name`, by their full name; the exact ones first.
    As `Store` objects, or with `columns` as the table's columns."""
    exact_terms: list[ColumnElement[bool]] = [Store.code == any_(_CODES)]
    if by_id:
        exact_terms.append(Store.id == bindparam("store_id", type_=Integer()))
    if by_phone:
        exact_terms.append(Store.phone_key == bindparam("phone", type_=String()))
    is_exact = or_(*exact_terms)
    named = [func.lower(Store.name) == bindparam("name", type_=String())] if by_name else []
    selected = Store.__table__.columns if columns else (Store,)
    return (
        select(*selected, is_exact.label("exact"))
        .where(scope, or_(is_exact, *named))
        .order_by(is_exact.desc(), Store.id)
        .limit(MAX_CANDIDATES)
    )


@lru_cache(maxsize=4096)
def _exact_lookup_for(actor: Actor, by_id: bool, by_phone: bool, by_name: bool) -> Any:
    """`_exact_lookup` within what `actor` sees, built once per actor whose scope is theirs
    alone (`tools.context.store_scope(actor)`: a rep, an administrator)."""
    return _exact_lookup(store_scope(actor), by_id, by_phone, by_name)


@lru_cache(maxsize=16)
def _exact_lookup_among_reps(by_id: bool, by_phone: bool, by_name: bool) -> Any:
    """`_exact_lookup` among the stores of the reps `:reps` (`ToolContext.rep_ids`: a team as
    it is now, for a manager or a viewer), built once."""
    return _exact_lookup(Store.rep_id == any_(_REPS), by_id, by_phone, by_name)


@lru_cache(maxsize=4096)
def _exact_rows_for(actor: Actor, by_id: bool, by_phone: bool, by_name: bool) -> DirectStatement:
    """`_exact_lookup_for` as columns, run on the driver's cursor (`resolve_store_row`)."""
    return DirectStatement(
        _exact_lookup(store_scope(actor), by_id, by_phone, by_name, columns=True)
    )


@lru_cache(maxsize=16)
def _exact_rows_among_reps(by_id: bool, by_phone: bool, by_name: bool) -> DirectStatement:
    """`_exact_lookup_among_reps` as columns, run on the driver's cursor."""
    return DirectStatement(
        _exact_lookup(Store.rep_id == any_(_REPS), by_id, by_phone, by_name, columns=True)
    )


def _exact_shape(ctx: ToolContext, text: str) -> tuple[tuple[bool, bool, bool], dict[str, Any]]:
    """Which ways `text` may name a store exactly (by id, by phone, by full name), and the
    exact lookup's parameters. A bare number is an id, a code or a phone number, never a
    name."""
    by_id = text.isdigit() and len(text) < 10
    phone = _phone_digits(text)
    by_name = not text.isdigit()
    params: dict[str, Any] = {"codes": _case_variants(text)}
    if by_id:
        params["store_id"] = int(text)
    if phone:
        params["phone"] = phone
    if by_name:
        params["name"] = text.lower()
    if ctx.actor.role in ("manager", "viewer"):
        params["reps"] = ctx.rep_ids() or []
    return (by_id, bool(phone), by_name), params


def resolve_store_row(ctx: ToolContext, ref: str | int) -> Any:
    """`resolve_store` for read tools that only read the store's columns: a store named
    exactly by one code, id, phone number or full name comes back as a row of its columns,
    read on the driver's cursor (building the `Store` object took a third of `outstanding`'s
    CPU, and every "who owes what" message runs it). Anything else (several matches, a name
    to match fuzzily, nothing) is `resolve_store`'s answer, a `Store`, or its error."""
    text = str(ref).strip()
    if text:
        shape, params = _exact_shape(ctx, text)
        if ctx.actor.role in ("manager", "viewer"):
            lookup = _exact_rows_among_reps(*shape)
        else:
            lookup = _exact_rows_for(ctx.actor, *shape)
        rows, _ = lookup.run(ctx.session.connection(), params)
        exact = [row for row in rows if row.exact]
        if len(exact) == 1:
            return exact[0]
        if not exact and len(rows) == 1 and not text.isdigit():
            return rows[0]  # the one store with that full name
    return resolve_store(ctx, ref)


def resolve_store(ctx: ToolContext, ref: str | int) -> Store:
    """The one store `ref` names among those the actor may see (see the module docstring)."""
    text = str(ref).strip()
    if not text:
        raise NotFound("Which store? Give its name, code or id.")
    # The exact matches and, when there are none, the stores with the full name (as the
    # assistant passes it on; `ix_stores_name_lower`) in one statement, the exact ones first.
    # The statement of each shape is built once: only the parameters change from call to call.
    shape, params = _exact_shape(ctx, text)
    if ctx.actor.role in ("manager", "viewer"):
        lookup = _exact_lookup_among_reps(*shape)
    else:
        lookup = _exact_lookup_for(ctx.actor, *shape)
    rows = ctx.session.execute(lookup, params).all()
    exact = [store for store, matched in rows if matched]
    found: Store | None = _one_or_ask(
        exact, f"Several stores match '{text}'; which one did you mean?", _store_candidate
    )
    if found is not None:
        return found
    if text.isdigit():
        # Fuzzy matching a number against names ("Owner 721") would answer a hidden store's id
        # differently from a missing one.
        raise NotFound(f"No store found for '{text}'.")
    # A fuzzy match over thousands of stores costs tens of milliseconds.
    found = _one_or_ask(
        [store for store, _ in rows],
        f"Several stores are called '{text}'; which one did you mean?",
        _store_candidate,
    )
    if found is not None:
        return found
    store: Store = _best_nearest(ctx, Store, nearest_stores(ctx, text), text, "store")
    return store


def product_match_score(query: str) -> ColumnElement[float]:
    """Fuzzy score of a product name against `query` (0..1)."""
    q = literal(query)
    return cast(
        func.greatest(func.similarity(Product.name, q), func.word_similarity(q, Product.name)),
        Float,
    )


def resolve_product(ctx: ToolContext, ref: str | int, *, active_only: bool = False) -> Product:
    """The one product `ref` names (id, SKU, or a partial or misspelt name).

    Products are visible to everyone; fuzzy matching looks at active products only, while an
    exact id or SKU also finds a discontinued one (unless `active_only`).
    """
    text = str(ref).strip()
    if not text:
        raise NotFound("Which product? Give its name or SKU.")
    exact_terms: list[ColumnElement[bool]] = [Product.sku.in_(_case_variants(text))]
    if text.isdigit() and len(text) < 10:
        exact_terms.append(Product.id == int(text))
    query = select(Product).where(or_(*exact_terms))
    if active_only:
        query = query.where(Product.is_active.is_(True))
    exact = ctx.session.scalars(query.order_by(Product.id).limit(MAX_CANDIDATES)).all()
    # A number can be one product's id and another's SKU: ask rather than guess.
    found: Product | None = _one_or_ask(
        exact, f"Several products match '{text}'; which one did you mean?", _product_candidate
    )
    if found is not None:
        return found
    # The full name, as the assistant and people pass it on: one index lookup.
    named = ctx.session.scalars(
        select(Product)
        .where(Product.is_active.is_(True), func.lower(Product.name) == text.lower())
        .order_by(Product.id)
        .limit(MAX_CANDIDATES)
    ).all()
    found = _one_or_ask(
        named, f"Several products are called '{text}'; which one did you mean?", _product_candidate
    )
    if found is not None:
        return found
    # The best-scoring active products, from the nearest names by each measure (as for
    # stores, see `nearest_scored`).
    q = literal(text)
    nearest = nearest_scored(
        Product,
        product_match_score(text),
        (
            Product.name.op("<->", return_type=Float)(q),
            q.op("<<->", return_type=Float)(Product.name),
        ),
        [Product.is_active.is_(True)],
    )
    product: Product = _best_nearest(ctx, Product, nearest, text, "product")
    return product


def resolve_order(ctx: ToolContext, ref: str | int) -> Order:
    """The order `ref` names (its id or external id), if its store is visible to the actor."""
    text = str(ref).strip().lstrip("#")
    if not text:
        raise NotFound("Which order? Give its number.")
    terms: list[ColumnElement[bool]] = [Order.external_id == text]
    if text.isdigit() and len(text) < 10:
        terms.append(Order.id == int(text))
    orders = ctx.session.scalars(
        select(Order)
        .join(Store, Store.id == Order.store_id)
        .where(ctx.store_scope(), or_(*terms))
        .options(joinedload(Order.store))
        .order_by(Order.id)
    ).all()
    if not orders:
        raise NotFound(f"No order found for '{text}'.")
    if len(orders) > 1:
        raise Ambiguous(
            f"Several orders match '{text}'; which one did you mean?",
            candidates=[
                {
                    "id": o.id,
                    "code": o.external_id or str(o.id),
                    "name": f"{o.store.name}, {o.order_date.isoformat()}",
                    "score": 1.0,
                }
                for o in orders
            ],
        )
    return orders[0]
