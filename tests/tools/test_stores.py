"""Store tools and the resolver: lookups by id, code, phone and misspelt names; profiles
checked against SQL written here."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.factories import TODAY, World, ctx_for, make_product, make_store, make_user
from tools.registry import Ambiguous, NotFound, call_tool
from tools.resolve import resolve_product, resolve_store

pytest_plugins = ["tests.factories"]


def test_resolver_exact_and_fuzzy(db: Session) -> None:
    rep = make_user(db, "rep")
    sharma = make_store(db, rep, name="Sharma General Store", phone="+91 98200 12345")
    make_store(db, rep, name="Sharma Medical Hall")
    make_store(db, rep, name="Gupta Kirana")
    ctx = ctx_for(db, rep)
    assert resolve_store(ctx, sharma.id).id == sharma.id
    assert resolve_store(ctx, sharma.code.lower()).id == sharma.id
    assert resolve_store(ctx, "9820012345").id == sharma.id
    assert resolve_store(ctx, "sharma genral store").id == sharma.id  # misspelt
    assert resolve_store(ctx, "gupta").name == "Gupta Kirana"
    with pytest.raises(Ambiguous) as info:
        resolve_store(ctx, "sharma")
    assert {c["name"] for c in info.value.candidates} == {
        "Sharma General Store",
        "Sharma Medical Hall",
    }
    assert all(0 < c["score"] <= 1 for c in info.value.candidates)
    with pytest.raises(NotFound, match="No store found for 'patel traders'"):
        resolve_store(ctx, "patel traders")
    make_product(db, sku="TTG500", name="Tata Tea Gold 500g")
    assert resolve_product(ctx, "ttg500").sku == "TTG500"
    assert resolve_product(ctx, "tata tea gld").sku == "TTG500"


def test_resolver_full_name_and_bare_numbers(db: Session) -> None:
    rep, other = make_user(db, "rep"), make_user(db, "rep")
    mine = make_store(db, rep, name="Bravo Medical Hall")
    make_store(db, rep, name="Bravo Medical Hall Annexe")
    hidden = make_store(db, other, name="Zulu Provision Mart")
    ctx = ctx_for(db, rep)
    # The full name in any case is that store, even when a longer name contains it.
    assert resolve_store(ctx, "BRAVO MEDICAL HALL").id == mine.id
    # Two stores with the same full name: ask, never guess.
    twin = make_store(db, rep, name="bravo medical hall")
    with pytest.raises(Ambiguous) as info:
        resolve_store(ctx, "Bravo Medical Hall")
    assert {c["id"] for c in info.value.candidates} == {mine.id, twin.id}
    # A number that is no visible id, code or phone is not fuzzy-matched against names
    # (owners "Owner 1234" in these tests): another rep's store id answers exactly like a
    # missing one.
    unused = str(hidden.id + 100_000)
    for number in (str(hidden.id), unused):
        with pytest.raises(NotFound) as missing:
            resolve_store(ctx, number)
        assert missing.value.message == f"No store found for '{number}'."
    with pytest.raises(NotFound):
        resolve_store(ctx, "Zulu Provision Mart")
    # A code is an exact match and wins over stores called by it; a number that is a store's
    # name is not a name.
    coded = make_store(db, rep, code="BMH01", name="Corner Shop")
    make_store(db, rep, name="bmh01")
    make_store(db, rep, name="BMH01")
    assert resolve_store(ctx, "bmh01").id == coded.id
    make_store(db, rep, name="987654")
    with pytest.raises(NotFound):
        resolve_store(ctx, "987654")


def test_resolver_fuzzy_step_is_the_best_scores_among_visible_stores(db: Session) -> None:
    """Nearest-first lookups through the GiST indexes give exactly what scoring every visible
    store would: names built from a few common words (thousands of trigram matches in a real
    fleet), several stores with the same owner, and a manager whose team is half of them."""
    import random

    from sqlalchemy import func, select

    from tools.models import Store
    from tools.resolve import MAX_CANDIDATES, MIN_SCORE, store_match_score

    rng = random.Random(11)
    manager = make_user(db, "manager")
    reps = [make_user(db, "rep", manager=manager if i < 2 else None) for i in range(4)]
    words = ["Fresh", "Medicos", "Kirana", "Super", "Bazaar", "General", "Store", "Sai"]
    places = ["Velachery", "Camp", "Paldi", "Rohini", "Sector 17", "Old Town"]
    owners = ["Suresh Verma", "Ramesh Tiwari", "Anand Naidu", "Farhan Shaikh"]
    for i in range(160):
        name = " ".join(rng.sample(words, rng.choice((2, 3)))) + f", {rng.choice(places)} {i}"
        make_store(db, reps[i % 4], name=name, owner_name=rng.choice(owners))
    queries = [
        "fresh medicos velachry",
        "Super Bazar Camp",
        "suresh verma",
        "kirana store paldi",
        "Sai General",
        "anand",
        "medicos",
        "Bazaar Sector 17 12",
    ]
    for user in (reps[0], manager):
        ctx = ctx_for(db, user)
        for query in queries:
            score = store_match_score(query).label("score")
            expected = [
                (row.id, round(float(row.score), 3))
                for row in db.execute(
                    select(Store.id, score)
                    .where(ctx.store_scope(), score >= MIN_SCORE)
                    .order_by(score.desc(), Store.id)
                    .limit(MAX_CANDIDATES + 1)
                )
            ]
            try:
                found = resolve_store(ctx_for(db, user), query)
            except Ambiguous as error:
                got = [(c["id"], c["score"]) for c in error.candidates]
                assert got == expected[:MAX_CANDIDATES], (user.role, query)
            except NotFound:
                assert expected == [], (user.role, query)
            else:
                assert found.id == expected[0][0], (user.role, query)
    # The team really is half the stores, and the count is what the resolver saw.
    assert (
        db.scalar(select(func.count()).select_from(Store).where(ctx_for(db, manager).store_scope()))
        == 80
    )


def test_resolver_product_names_exact_then_nearest(db: Session) -> None:
    """A full product name is that product; a partial or misspelt one gives what scoring every
    active product would (nearest-first lookups through the GiST index)."""
    from sqlalchemy import select

    from tools.models import Product
    from tools.resolve import MAX_CANDIDATES, MIN_SCORE, product_match_score

    rep = make_user(db, "rep")
    ctx = ctx_for(db, rep)
    names = [
        f"{brand} {kind} {size}"
        for brand in ("Fortune", "Saffola", "Dhara")
        for kind in ("Sunflower Oil", "Mustard Oil", "Rice Bran Oil")
        for size in ("1 L pouch", "5 L jar")
    ]
    products = [make_product(db, name=name) for name in names]
    retired = make_product(db, name="Fortune Groundnut Oil 1 L pouch")
    retired.is_active = False
    db.flush()
    assert resolve_product(ctx, "FORTUNE SUNFLOWER OIL 5 L JAR").id == products[1].id
    # Discontinued products are found by SKU only.
    assert resolve_product(ctx, retired.sku).id == retired.id
    for query in ("fortune sunflowr oil 5l", "saffola", "mustard oil jar", "groundnut oil"):
        score = product_match_score(query).label("score")
        expected = [
            (row.id, round(float(row.score), 3))
            for row in db.execute(
                select(Product.id, score)
                .where(Product.is_active.is_(True), score >= MIN_SCORE)
                .order_by(score.desc(), Product.id)
                .limit(MAX_CANDIDATES + 1)
            )
        ]
        assert retired.id not in [i for i, _ in expected]
        try:
            found = resolve_product(ctx, query)
        except Ambiguous as error:
            assert [(c["id"], c["score"]) for c in error.candidates] == expected[:MAX_CANDIDATES]
        except NotFound:
            assert expected == [], query
        else:
            assert found.id == expected[0][0], query


def test_find_store_ranks_candidates(wdb: Session, world: World) -> None:
    ctx = ctx_for(wdb, world.admin)
    result = call_tool(ctx, "find_store", {"query": "sharma", "limit": 10})
    names = [c.name for c in result.candidates]
    assert names and all("Sharma" in n for n in names[:3]) and not result.confident
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    store = world.stores[4]
    by_code = call_tool(ctx, "find_store", {"query": store.code})
    assert by_code.confident and by_code.candidates[0].id == store.id
    assert by_code.candidates[0].matched_on == "code"
    by_city = call_tool(ctx, "find_store", {"query": "Lucknow", "limit": 50})
    assert {c.city for c in by_city.candidates} == {"Lucknow"}


def test_find_store_by_the_start_of_a_code_takes_wildcards_literally(
    wdb: Session, world: World
) -> None:
    """A code prefix is matched as typed: '%' and '_' are characters, not LIKE wildcards."""
    rep = world.reps[0]
    odd = make_store(wdb, rep, code="ZQ_%7-01", name="Kiran Provision Mart")
    plain = make_store(wdb, rep, code="ZQA7-02", name="Lakshmi Kirana Bhandar")
    ctx = ctx_for(wdb, world.admin)
    found = call_tool(ctx, "find_store", {"query": "zq_%", "limit": 10})
    codes = [(c.code, c.matched_on) for c in found.candidates if c.matched_on == "code"]
    assert codes == [(odd.code, "code")]
    both = call_tool(ctx, "find_store", {"query": "ZQ", "limit": 10})
    assert {c.id for c in both.candidates if c.matched_on == "code"} == {odd.id, plain.id}
    assert all(c.score == 0.8 for c in both.candidates if c.matched_on == "code")


@pytest.mark.parametrize("index", [0, 5, 10, 23])
def test_store_profile_matches_sql(wdb: Session, world: World, index: int) -> None:
    store = world.stores[index]
    result = call_tool(ctx_for(wdb, world.admin), "store_profile", {"store": store.code})
    sales = "status IN ('placed', 'delivered')"
    last = wdb.execute(
        text(
            f"SELECT order_date, total_amount FROM orders WHERE store_id = :s AND {sales} "
            "ORDER BY order_date DESC, id DESC LIMIT 1"
        ),
        {"s": store.id},
    ).first()
    if last is None:
        assert result.last_order is None and result.orders_in_window == 0
    else:
        assert result.last_order is not None
        assert (result.last_order.order_date, result.last_order.amount) == tuple(last)
    window = wdb.execute(
        text(
            f"SELECT COUNT(*), AVG(total_amount), MIN(order_date), MAX(order_date), "
            f"COUNT(DISTINCT order_date) FROM orders WHERE store_id = :s AND {sales} "
            "AND order_date > :t - 365 AND order_date <= :t"
        ),
        {"s": store.id, "t": TODAY},
    ).one()
    assert result.orders_in_window == window[0]
    if window[0]:
        assert result.average_order_value == Decimal(window[1]).quantize(Decimal("0.01"))
    if window[4] and window[4] > 1:
        expected = round((window[3] - window[2]).days / (window[4] - 1), 1)
        assert result.average_days_between_orders == expected
    recent = wdb.execute(
        text(
            f"SELECT COUNT(*), COALESCE(SUM(total_amount), 0) FROM orders WHERE store_id = :s "
            f"AND {sales} AND order_date BETWEEN :a AND :t"
        ),
        {"s": store.id, "a": TODAY - dt.timedelta(days=89), "t": TODAY},
    ).one()
    assert (result.orders_last_90_days, result.sales_last_90_days) == tuple(recent)
    owed = wdb.execute(
        text(
            "SELECT COALESCE(SUM(due), 0), COALESCE(SUM(due) FILTER (WHERE due_date < :t), 0) "
            "FROM (SELECT i.due_date, i.amount - COALESCE((SELECT SUM(amount) FROM payments p "
            "WHERE p.invoice_id = i.id), 0) AS due FROM invoices i WHERE i.store_id = :s) x "
            "WHERE due > 0"
        ),
        {"s": store.id, "t": TODAY},
    ).one()
    assert (result.outstanding, result.overdue) == tuple(owed)
    uninvoiced = wdb.execute(
        text(
            "SELECT COALESCE(SUM(total_amount), 0) FROM orders o WHERE store_id = :s "
            "AND status = 'placed' "
            "AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.order_id = o.id)"
        ),
        {"s": store.id},
    ).scalar()
    assert result.open_orders_not_invoiced == uninvoiced
    assert result.rep_name == next(r.name for r in world.reps if r.id == store.rep_id)
    assert len(result.top_products) <= 5


# Every store's find_store score and whether it matches at all, written out here: exact code
# or phone 1.0, code prefix 0.8, city 0.6, names and owners by pg_trgm similarity (owners
# weighed 0.9) within its thresholds.
FIND_STORE_SQL = """
SELECT s.id, s.name, round(greatest(
         CASE WHEN upper(s.code) = upper(:q) THEN 1.0
              WHEN lower(s.code) LIKE lower(:q) || '%' THEN 0.8 ELSE 0 END,
         CASE WHEN lower(s.city) = lower(:q) THEN 0.6 ELSE 0 END,
         similarity(s.name, :q), word_similarity(:q, s.name),
         similarity(coalesce(s.owner_name, ''), :q) * 0.9,
         word_similarity(:q, coalesce(s.owner_name, '')) * 0.9)::numeric, 3) AS score
FROM stores s
WHERE upper(s.code) = upper(:q) OR lower(s.code) LIKE lower(:q) || '%'
   OR lower(s.city) = lower(:q) OR s.name % :q OR :q <% s.name
   OR s.owner_name % :q OR :q <% s.owner_name
ORDER BY 3 DESC, s.name, s.id
"""


@pytest.mark.parametrize(
    "query", ["general store", "sharma genral", "Pune", "gs0", "kirana", "Owner 1"]
)
@pytest.mark.parametrize("limit", [1, 3])
@pytest.mark.parametrize("who", ["rep", "admin"])
def test_find_store_lists_the_best_of_every_matching_store(
    db: Session, query: str, limit: int, who: str
) -> None:
    """Candidates are read nearest-first by each trigram measure (and the first few by name
    for a code prefix or a city), not every store within the thresholds: the list is still the
    best of every matching store, with a word that many names share."""
    rep = make_user(db, "rep")
    for i in range(40):
        owner = ["Sharma", "Gupta", "Verma", "Iyer"][i % 4]
        make_store(db, rep, code=f"GS{i:03d}", name=f"{owner} General Store {i}")
    for i in range(10):
        make_store(db, rep, name=f"Kirana Bhandar {i}", city=["Pune", "Nashik"][i % 2])
    expected = [
        (row.id, float(row.score)) for row in db.execute(text(FIND_STORE_SQL), {"q": query}).all()
    ]
    assert len(expected) > limit
    if query == "general store":
        assert expected[3 * (limit + 1)][1] == expected[0][1]  # more ties than read nearest
    # A rep's stores are matched within the thresholds, a fleet's read nearest-first.
    actor = rep if who == "rep" else make_user(db, "admin")
    found = call_tool(ctx_for(db, actor), "find_store", {"query": query, "limit": limit})
    # The best scores, best first; among stores tied on a score at the cut (forty names hold
    # "general store" whole) any may be listed, otherwise exactly the first by name.
    scores = dict(expected)
    assert [c.score for c in found.candidates] == pytest.approx(
        [score for _, score in expected[:limit]], abs=0.0011
    )
    assert all(c.score == pytest.approx(scores[c.id], abs=0.0011) for c in found.candidates)
    if expected[limit - 1][1] != expected[limit][1]:
        assert [c.id for c in found.candidates] == [i for i, _ in expected[:limit]]
