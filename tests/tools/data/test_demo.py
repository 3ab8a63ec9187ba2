"""The demo distributor: deterministic, internally consistent, and honest about what it injected.

A small distributor (40 stores, 60 products, 6 months up to 31 Dec 2025, so Diwali, Durga Puja
and Christmas fall inside) is loaded once into its own database; the checks are SQL over it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tools.data.demo import (
    DEMO_PASSWORDS,
    TABLES,
    DemoDataExists,
    DemoError,
    DemoSummary,
    generate,
    load_demo,
    rupees,
)
from tools.db import reset_engine
from tools.security import verify_password
from tools.settings import get_settings

SMALL: dict[str, Any] = dict(stores=40, products=60, months=6, seed=7, today=dt.date(2025, 12, 31))

# Columns filled by the server clock or a random salt: everything else must repeat exactly.
VOLATILE = {"created_at", "updated_at", "password_hash", "rep_assigned_at"}


@pytest.fixture(scope="module")
def demo(create_database: Callable[..., str]) -> Iterator[tuple[Engine, DemoSummary]]:
    engine = create_engine(create_database(migrate=True))
    summary = load_demo(engine, **SMALL)
    yield engine, summary
    engine.dispose()


@pytest.fixture()
def conn(demo: tuple[Engine, DemoSummary]) -> Iterator[Connection]:
    with demo[0].connect() as connection:
        yield connection


def local_day(moment: dt.datetime) -> dt.date:
    """The calendar day in India, where the demo distributor works."""
    return moment.astimezone(ZoneInfo("Asia/Kolkata")).date()


def scalar(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar()


def table_digest(conn: Connection, table: str) -> str:
    columns = [
        c
        for c in conn.execute(
            text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = :t ORDER BY ordinal_position"
            ),
            {"t": table},
        ).scalars()
        if c not in VOLATILE
    ]
    cols = ", ".join(columns)
    return str(
        scalar(
            conn,
            f"SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM (SELECT {cols} FROM {table}) t",
        )
    )


# ------------------------------------------------------------------------- determinism


def test_same_seed_and_day_give_identical_data(
    demo: tuple[Engine, DemoSummary], create_database: Callable[..., str]
) -> None:
    other = create_engine(create_database(migrate=True))
    try:
        load_demo(other, **SMALL)
        with demo[0].connect() as a, other.connect() as b:
            for table in TABLES:
                assert table_digest(a, table) == table_digest(b, table), table
    finally:
        other.dispose()


def test_another_seed_gives_other_data() -> None:
    first = generate(**SMALL)
    second = generate(**{**SMALL, "seed": 8})
    assert first.s_name != second.s_name
    assert [c.text for c in first.comms[:50]] != [c.text for c in second.comms[:50]]


def test_bad_sizes_are_refused_with_a_reason() -> None:
    with pytest.raises(DemoError, match="stores must be between"):
        generate(**{**SMALL, "stores": 3})
    with pytest.raises(DemoError, match="months"):
        generate(**{**SMALL, "months": 0})


# ------------------------------------------------------------------------- shape


def test_counts_match_the_summary_and_the_requested_size(
    demo: tuple[Engine, DemoSummary], conn: Connection
) -> None:
    _, summary = demo
    for table, count in summary.counts.items():
        assert scalar(conn, f"SELECT count(*) FROM {table}") == count, table
    assert summary.stores == 40 and summary.products == 60
    assert summary.orders > 40 * 10
    assert summary.order_lines > summary.orders * 3
    # About 40 communications per store over two years, so 10 per store over six months.
    assert 40 * 6 <= summary.communications <= 40 * 30
    assert scalar(conn, "SELECT min(order_date) FROM orders") >= dt.date(2025, 7, 1)
    assert scalar(conn, "SELECT max(order_date) FROM orders") <= dt.date(2025, 12, 31)


def test_users_teams_and_logins(demo: tuple[Engine, DemoSummary], conn: Connection) -> None:
    _, summary = demo
    roles = dict(conn.execute(text("SELECT role, count(*) FROM users GROUP BY role")).all())
    assert roles == {"admin": 1, "manager": 2, "rep": 10, "viewer": 2}
    assert scalar(conn, "SELECT count(*) FROM users WHERE email <> lower(email)") == 0
    # Five reps per manager, one viewer per manager.
    teams = conn.execute(
        text(
            "SELECT m.email, count(*) FILTER (WHERE u.role = 'rep'), "
            "count(*) FILTER (WHERE u.role = 'viewer') FROM users u "
            "JOIN users m ON m.id = u.manager_id GROUP BY m.email ORDER BY m.email"
        )
    ).all()
    assert [(r[1], r[2]) for r in teams] == [(5, 1), (5, 1)]
    assert scalar(conn, "SELECT count(*) FROM users WHERE role = 'rep' AND telegram_id IS NOT NULL")
    # The printed passwords are the ones that work.
    logins = {login.email: login for login in summary.logins}
    assert logins["rep1@demo.mangalm.in"].password == DEMO_PASSWORDS["rep"]
    stored = scalar(conn, "SELECT password_hash FROM users WHERE email = 'rep1@demo.mangalm.in'")
    assert verify_password(DEMO_PASSWORDS["rep"], stored)
    assert not verify_password(DEMO_PASSWORDS["admin"], stored)


def test_every_rep_has_stores_and_every_store_a_rep(conn: Connection) -> None:
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM users u WHERE u.role = 'rep' "
            "AND NOT EXISTS (SELECT 1 FROM stores s WHERE s.rep_id = u.id)",
        )
        == 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM stores s LEFT JOIN users u ON u.id = s.rep_id "
            "WHERE u.id IS NULL OR u.role <> 'rep'",
        )
        == 0
    )


def test_stores_look_like_indian_retailers(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT name, phone, address, city, region, lat, lon, segment, credit_limit FROM stores"
        )
    ).all()
    assert len({r.name for r in rows}) == len(rows)
    for r in rows:
        assert r.phone.startswith("+91") and len(r.phone) == 13
        assert {"line1", "locality", "city", "state", "pincode"} <= set(r.address)
        assert r.address["city"] == r.city
        assert r.region in {"North", "West", "South", "East"}
        assert 8 <= r.lat <= 32 and 70 <= r.lon <= 93
        assert r.credit_limit > 0
    assert len({r.segment for r in rows}) >= 4


def test_credit_limits_fit_what_stores_owe(conn: Connection) -> None:
    """Credit limits follow each store's exposure (open invoices and placed orders): most
    stores can take another order, a few chronic late payers are over their limit."""
    rows = conn.execute(
        text(
            "SELECT s.credit_limit, "
            "  coalesce((SELECT sum(i.amount) - coalesce(sum(p.paid), 0) FROM invoices i "
            "    LEFT JOIN (SELECT invoice_id, sum(amount) AS paid FROM payments "
            "               GROUP BY invoice_id) p ON p.invoice_id = i.id "
            "    WHERE i.store_id = s.id), 0) "
            "  + coalesce((SELECT sum(o.total_amount) FROM orders o WHERE o.store_id = s.id "
            "    AND o.status = 'placed'), 0) AS exposure "
            "FROM stores s"
        )
    ).all()
    over = [r for r in rows if r.exposure > r.credit_limit]
    assert 0 < len(over) <= 0.15 * len(rows)
    assert all(r.credit_limit % 5000 == 0 for r in rows)


def test_products_have_brands_categories_and_case_prices(conn: Connection) -> None:
    rows = conn.execute(text("SELECT sku, name, brand, category, unit, price FROM products")).all()
    assert len({r.sku for r in rows}) == len(rows) == 60
    assert len({r.category for r in rows}) >= 15
    assert any(r.name.startswith("Parle-G") for r in rows)
    assert all(r.price > 0 for r in rows)
    assert {r.unit for r in rows} <= {"case", "bag", "tin"}


# ------------------------------------------------------------------------- invariants


def test_order_lines_and_totals_are_consistent(conn: Connection) -> None:
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM order_lines l LEFT JOIN products p ON p.id = l.product_id "
            "WHERE p.id IS NULL",
        )
        == 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM orders o JOIN (SELECT order_id, sum(amount) s FROM order_lines "
            "GROUP BY order_id) l ON l.order_id = o.id WHERE l.s <> o.total_amount",
        )
        == 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM orders o WHERE NOT EXISTS "
            "(SELECT 1 FROM order_lines l WHERE l.order_id = o.id)",
        )
        == 0
    )
    # Line amounts are quantity x price less the discount, to the paisa.
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM order_lines WHERE "
            "abs(amount - round(quantity * unit_price * (1 - discount), 2)) > 0.01",
        )
        == 0
    )
    # Orders come from the store's own rep.
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM orders o JOIN stores s ON s.id = o.store_id "
            "WHERE o.rep_id IS DISTINCT FROM s.rep_id",
        )
        == 0
    )


def test_statuses_and_delivery_dates(conn: Connection) -> None:
    statuses = dict(conn.execute(text("SELECT status, count(*) FROM orders GROUP BY 1")).all())
    assert statuses["delivered"] > 0.85 * sum(statuses.values())
    assert statuses.get("cancelled", 0) > 0
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM orders WHERE status IN ('cancelled', 'placed') "
            "AND delivered_date IS NOT NULL",
        )
        == 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM orders WHERE status = 'delivered' AND delivered_date IS NULL",
        )
        == 0
    )
    assert scalar(conn, "SELECT count(*) FROM orders WHERE delivered_date > promised_date") > 0
    # Historic orders were confirmed on the day they were placed (India time).
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM orders WHERE confirmed_at IS NULL "
            "OR (confirmed_at AT TIME ZONE 'Asia/Kolkata')::date <> order_date",
        )
        == 0
    )
    # Orders still open are the recent ones.
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM orders WHERE status = 'placed' AND order_date < '2025-12-20'",
        )
        == 0
    )


def test_invoices_and_payments(conn: Connection) -> None:
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM invoices i JOIN (SELECT invoice_id, sum(amount) s FROM payments "
            "GROUP BY invoice_id) p ON p.invoice_id = i.id WHERE p.s > i.amount",
        )
        == 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM invoices i JOIN orders o ON o.id = i.order_id "
            "WHERE o.status <> 'delivered' OR i.amount <> o.total_amount "
            "OR i.store_id <> o.store_id",
        )
        == 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM invoices i JOIN stores s ON s.id = i.store_id "
            "WHERE i.due_date <> i.invoice_date + s.payment_terms_days",
        )
        == 0
    )
    assert scalar(conn, "SELECT count(*) FROM payments WHERE paid_on > '2025-12-31'") == 0
    # Some invoices are overdue today, some paid late, some paid in parts.
    overdue = scalar(
        conn,
        "SELECT count(*) FROM invoices i WHERE i.due_date < '2025-12-31' AND i.amount > "
        "COALESCE((SELECT sum(amount) FROM payments p WHERE p.invoice_id = i.id), 0)",
    )
    assert overdue > 0
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM payments p JOIN invoices i ON i.id = p.invoice_id "
            "WHERE p.paid_on > i.due_date",
        )
        > 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM (SELECT invoice_id FROM payments GROUP BY 1 "
            "HAVING count(*) > 1) t",
        )
        > 0
    )


def test_inventory_has_low_and_out_of_stock_items(conn: Connection) -> None:
    warehouse = get_settings().default_warehouse
    assert scalar(conn, "SELECT count(DISTINCT warehouse) FROM inventory") == 1
    assert scalar(conn, "SELECT min(warehouse) FROM inventory") == warehouse
    assert scalar(conn, "SELECT count(*) FROM inventory WHERE on_hand = 0") >= 1
    assert (
        scalar(conn, "SELECT count(*) FROM inventory WHERE on_hand > 0 AND on_hand < reorder_point")
        >= 1
    )
    assert scalar(conn, "SELECT count(*) FROM inventory WHERE reserved > on_hand") == 0
    # What is reserved is held by open orders, line by line, so cancelling releases it.
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM inventory i WHERE i.reserved <> COALESCE((SELECT sum(quantity) "
            "FROM stock_reservations r WHERE r.product_id = i.product_id "
            "AND r.warehouse = i.warehouse AND r.released_at IS NULL), 0)",
        )
        == 0
    )
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM stock_reservations r JOIN orders o ON o.id = r.order_id "
            "WHERE o.status <> 'placed'",
        )
        == 0
    )
    assert scalar(conn, "SELECT sum(reserved) FROM inventory") > 0
    truth = scalar(
        conn,
        "SELECT count(*) FROM ground_truth g JOIN inventory i "
        "ON i.product_id = g.product_id WHERE g.kind = 'out_of_stock' AND i.on_hand = 0",
    )
    assert truth == scalar(conn, "SELECT count(*) FROM inventory WHERE on_hand = 0")


def test_some_schemes_run_today(conn: Connection) -> None:
    assert (
        scalar(
            conn, "SELECT count(*) FROM promotions WHERE '2025-12-31' BETWEEN starts_on AND ends_on"
        )
        >= 3
    )
    # Discounts on lines come from a scheme running that day for that product.
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM order_lines l JOIN orders o ON o.id = l.order_id "
            "JOIN products p ON p.id = l.product_id WHERE l.discount > 0 AND NOT EXISTS ("
            " SELECT 1 FROM promotions m WHERE o.order_date BETWEEN m.starts_on AND m.ends_on"
            " AND (m.product_id = p.id OR m.brand = p.brand OR m.category = p.category)"
            " AND m.discount_pct = round(l.discount * 100, 2))",
        )
        == 0
    )


def test_sales_rollup_is_refreshed(conn: Connection) -> None:
    rollup = scalar(conn, "SELECT sum(amount) FROM sales_daily")
    lines = scalar(
        conn,
        "SELECT sum(l.amount) FROM order_lines l JOIN orders o ON o.id = l.order_id "
        "WHERE o.status IN ('placed', 'delivered')",
    )
    assert rollup == lines and rollup > 0


def test_diwali_lifts_demand(conn: Connection) -> None:
    # Cases a day in the two weeks before Diwali (20 Oct 2025) against July (no festival).
    def per_day(start: str, end: str) -> float:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        cases = scalar(
            conn,
            "SELECT sum(l.quantity) FROM orders o JOIN order_lines l ON l.order_id = o.id "
            "WHERE o.order_date BETWEEN :a AND :b",
            a=first,
            b=last,
        )
        return float(cases) / ((last - first).days + 1)

    assert per_day("2025-10-05", "2025-10-18") > 1.3 * per_day("2025-07-01", "2025-07-31")


# ------------------------------------------------------------------------- communications


def test_every_communication_belongs_to_a_real_store(conn: Connection) -> None:
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM communications c LEFT JOIN stores s ON s.id = c.store_id "
            "WHERE s.id IS NULL",
        )
        == 0
    )
    kinds = dict(conn.execute(text("SELECT kind, count(*) FROM communications GROUP BY 1")).all())
    assert set(kinds) == {"note", "message", "call", "complaint"}
    # Hinglish and English, multi-line call transcripts.
    assert scalar(conn, "SELECT count(*) FROM communications WHERE text ILIKE '%bhej%'") > 0
    assert scalar(conn, "SELECT count(*) FROM communications WHERE text ILIKE '%please%'") > 0
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM communications "
            "WHERE kind = 'call' AND text LIKE '%' || chr(10) || '%'",
        )
        > 0
    )
    # A rep's notes are about the rep's own stores.
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM communications c JOIN stores s ON s.id = c.store_id "
            "WHERE c.author_id IS NOT NULL AND c.author_id <> s.rep_id",
        )
        == 0
    )


def test_late_delivery_complaints_point_at_late_orders(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT c.id, c.order_id, c.store_id, c.text, o.store_id AS order_store, "
            "o.promised_date, o.delivered_date, o.external_id, c.occurred_at "
            "FROM ground_truth g JOIN communications c ON c.id = g.communication_id "
            "JOIN orders o ON o.id = g.order_id "
            "WHERE g.kind = 'complaint_about_order' AND g.details->>'issue' = 'late_delivery'"
        )
    ).all()
    assert rows
    for r in rows:
        assert r.delivered_date > r.promised_date
        assert r.order_store == r.store_id
        assert r.external_id in r.text
        # Sent while the order was late, not before it was due.
        assert r.promised_date < local_day(r.occurred_at) <= r.delivered_date
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM communications c JOIN ground_truth g "
            "ON g.communication_id = c.id WHERE g.kind = 'complaint_about_order' "
            "AND c.order_id IS DISTINCT FROM g.order_id",
        )
        == 0
    )


def test_scheme_requests_point_at_schemes_running_for_the_store(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT c.promotion_id, g.promotion_id AS truth, c.text, m.code, m.name, m.starts_on, "
            "m.ends_on, m.segment, m.region, s.segment AS store_segment, s.region AS store_region,"
            " c.occurred_at FROM ground_truth g JOIN communications c ON c.id = g.communication_id"
            " JOIN promotions m ON m.id = g.promotion_id JOIN stores s ON s.id = c.store_id"
            " WHERE g.kind = 'scheme_request'"
        )
    ).all()
    assert rows
    for r in rows:
        assert r.promotion_id == r.truth
        assert r.code in r.text or r.name in r.text
        assert r.starts_on <= local_day(r.occurred_at) <= r.ends_on
        assert r.segment in (None, r.store_segment)
        assert r.region in (None, r.store_region)


def test_payment_followups_quote_the_real_outstanding(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT g.details, c.text, c.occurred_at, i.amount, i.number, i.store_id, c.store_id "
            "AS comm_store, (SELECT COALESCE(sum(p.amount), 0) FROM payments p WHERE "
            "p.invoice_id = i.id "
            "AND p.paid_on <= (c.occurred_at AT TIME ZONE 'Asia/Kolkata')::date) AS paid "
            "FROM ground_truth g JOIN communications c ON c.id = g.communication_id "
            "JOIN invoices i ON i.id = (g.details->>'invoice_id')::int "
            "WHERE g.kind = 'payment_followup'"
        )
    ).all()
    assert rows
    for r in rows:
        outstanding = r.amount - r.paid
        assert outstanding > 0
        assert r.number in r.text
        assert rupees(int(outstanding * 100)) in r.text
        assert r.store_id == r.comm_store


def test_ground_truth_points_at_real_rows(conn: Connection) -> None:
    for column, table in (
        ("store_id", "stores"),
        ("product_id", "products"),
        ("order_id", "orders"),
        ("communication_id", "communications"),
        ("promotion_id", "promotions"),
    ):
        assert (
            scalar(
                conn,
                f"SELECT count(*) FROM ground_truth g LEFT JOIN {table} t ON t.id = g.{column} "
                f"WHERE g.{column} IS NOT NULL AND t.id IS NULL",
            )
            == 0
        ), column
    kinds = set(conn.execute(text("SELECT DISTINCT kind FROM ground_truth")).scalars())
    assert {
        "store_slowdown",
        "store_stopped",
        "product_dropped",
        "late_delivery",
        "complaint_about_order",
        "scheme_request",
        "payment_followup",
        "late_payer",
    } <= kinds


def test_stopped_stores_stop_and_slowed_stores_slow(conn: Connection) -> None:
    stopped = conn.execute(
        text("SELECT store_id, event_date FROM ground_truth WHERE kind = 'store_stopped'")
    ).all()
    assert stopped
    for store_id, day in stopped:
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM orders WHERE store_id = :s AND order_date >= :d",
                s=store_id,
                d=day,
            )
            == 0
        )
    slowed = conn.execute(
        text("SELECT store_id, event_date FROM ground_truth WHERE kind = 'store_slowdown'")
    ).all()
    assert slowed
    for store_id, day in slowed:
        gaps = conn.execute(
            text(
                "SELECT avg(gap) FILTER (WHERE order_date < :d), "
                "avg(gap) FILTER (WHERE order_date >= :d + 14) FROM (SELECT order_date, "
                "order_date - lag(order_date) OVER (ORDER BY order_date) AS gap "
                "FROM orders WHERE store_id = :s) t"
            ),
            {"s": store_id, "d": day},
        ).one()
        if gaps[1] is not None:
            assert gaps[1] > gaps[0]


def test_dropped_products_are_not_bought_again(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT store_id, product_id, event_date, (details->>'replaced_by_product_id')::int "
            "FROM ground_truth WHERE kind = 'product_dropped'"
        )
    ).all()
    assert rows
    bought_replacement = 0
    for store_id, product_id, day, replacement in rows:
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE "
                "o.store_id = :s AND l.product_id = :p AND o.order_date >= :d",
                s=store_id,
                p=product_id,
                d=day,
            )
            == 0
        )
        bought_replacement += scalar(
            conn,
            "SELECT count(*) FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE "
            "o.store_id = :s AND l.product_id = :p AND o.order_date >= :d",
            s=store_id,
            p=replacement,
            d=day,
        )
    assert bought_replacement > 0


# ------------------------------------------------------------------------- loading


def test_refuses_a_database_with_stores_and_replace_starts_over(
    demo: tuple[Engine, DemoSummary], create_database: Callable[..., str]
) -> None:
    engine = create_engine(create_database(migrate=True))
    try:
        tiny = {**SMALL, "stores": 12, "products": 25, "months": 1}
        load_demo(engine, **tiny)
        with pytest.raises(DemoDataExists, match="already has stores"):
            load_demo(engine, **tiny)
        summary = load_demo(engine, **{**tiny, "stores": 15}, replace=True)
        with engine.connect() as c:
            assert scalar(c, "SELECT count(*) FROM stores") == 15 == summary.stores
            assert scalar(c, "SELECT count(*) FROM users") == 15
            # Sequences continue after the generated ids.
            c.execute(text("INSERT INTO products (sku, name, price) VALUES ('X-1', 'X', 1)"))
            assert scalar(c, "SELECT max(id) FROM products") == 26
    finally:
        engine.dispose()


def test_bulk_load_keeps_every_index(
    create_database: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large loads drop plain indexes and rebuild them after COPY; force that path here.
    import tools.data.demo as demo_module

    monkeypatch.setattr(demo_module, "BULK_ROWS", 1)
    engine = create_engine(create_database(migrate=True))
    query = text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "ORDER BY indexname"
    )
    try:
        with engine.connect() as c:
            before = c.execute(query).all()
        summary = load_demo(engine, stores=10, products=20, months=1, seed=3, today=SMALL["today"])
        assert "rebuild indexes" in summary.timings
        with engine.connect() as c:
            assert c.execute(query).all() == before
            assert scalar(c, "SELECT count(*) FROM order_lines") == summary.order_lines
    finally:
        engine.dispose()


def test_the_loader_knows_every_trigger_of_the_schema(demo: tuple[Engine, DemoSummary]) -> None:
    """A trigger the loader does not know makes it keep every trigger on (twice as slow, and
    each payment then updates its invoice row by row)."""
    import tools.data.demo as demo_module

    with demo[0].connect() as c:
        names = set(
            c.execute(
                text(
                    "SELECT t.tgname FROM pg_trigger t JOIN pg_class k ON k.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = k.relnamespace "
                    "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
                )
            ).scalars()
        )
    assert names and names <= set(demo_module.LOADER_TRIGGERS)


@pytest.mark.parametrize("triggers_off", [True, False])
def test_loads_with_triggers_off_or_on_alike(
    create_database: Callable[..., str], monkeypatch: pytest.MonkeyPatch, triggers_off: bool
) -> None:
    """With the triggers off or on: no index the load builds waits for older transactions
    (`pg_index.indcheckxmin`: an index built over rows updated in the load is not used while
    any transaction older than it is open on the server, e.g. a training run's), and the call
    list's per-store rows are those of the loaded stores and invoices."""
    import tools.data.demo as demo_module
    from tests.forecasting.test_call_list_stores import SOURCES, STORED

    monkeypatch.setattr(demo_module, "BULK_ROWS", 1)
    if not triggers_off:
        monkeypatch.setattr(demo_module, "_can_skip_fk_triggers", lambda conn: False)
    engine = create_engine(create_database(migrate=True))
    try:
        load_demo(engine, stores=10, products=20, months=2, seed=3, today=SMALL["today"])
        with engine.connect() as c:
            waiting = c.execute(
                text(
                    "SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
                    "JOIN pg_namespace n ON n.oid = ic.relnamespace "
                    "WHERE n.nspname = current_schema() AND i.indcheckxmin"
                )
            ).scalars()
            assert list(waiting) == []
            assert scalar(c, "SELECT count(*) FROM payments") > 0
            stored = [tuple(row) for row in c.execute(STORED)]
            assert len(stored) == 10 and any(row[-1] is not None for row in stored)
            assert stored == [tuple(row) for row in c.execute(SOURCES)]
    finally:
        engine.dispose()


def test_loads_inside_a_callers_session(db: Session) -> None:
    summary = load_demo(db, stores=10, products=20, months=1, seed=3, today=dt.date(2025, 3, 31))
    assert db.execute(text("SELECT count(*) FROM stores")).scalar() == 10
    assert db.execute(text("SELECT count(*) FROM order_lines")).scalar() == summary.order_lines


# ------------------------------------------------------------------------- command line


@pytest.fixture()
def cli_db(create_database: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = create_database(migrate=False)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    reset_engine()
    yield url
    reset_engine()
    get_settings.cache_clear()


def test_cli_demo_if_empty_and_refusal(cli_db: str) -> None:
    from api.cli import app

    args = ["demo", "--stores", "12", "--products", "25", "--months", "2", "--today", "2025-03-31"]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "rep1@demo.mangalm.in" in first.output and DEMO_PASSWORDS["rep"] in first.output
    assert "order_lines" in first.output

    engine = create_engine(cli_db)
    with engine.connect() as c:
        orders = scalar(c, "SELECT count(*) FROM orders")
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "already has stores" in again.output and "--replace" in again.output
    kept = runner.invoke(app, [*args, "--if-empty"])
    assert kept.exit_code == 0
    assert "already there" in kept.output
    assert DEMO_PASSWORDS["rep"] not in kept.output
    with engine.connect() as c:
        assert scalar(c, "SELECT count(*) FROM orders") == orders
        assert scalar(c, "SELECT count(*) FROM stores") == 12
    engine.dispose()

    bad = runner.invoke(app, ["demo", "--today", "31/03/2025"])
    assert bad.exit_code == 2 and "--today must be a date" in bad.output


def test_loaded_figures_match_what_the_triggers_keep(conn: Connection) -> None:
    """The loader may skip the triggers (it writes what they keep itself): paid amounts match
    the payments, the rollups match the order tables and no sales change is left logged."""
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM invoices i WHERE i.paid_amount <> coalesce("
            "(SELECT sum(p.amount) FROM payments p WHERE p.invoice_id = i.id), 0)",
        )
        == 0
    )
    assert scalar(conn, "SELECT count(*) FROM sales_changes") == 0
    assert scalar(conn, "SELECT sum(amount) FROM sales_daily") == scalar(
        conn,
        "SELECT sum(l.amount) FROM orders o JOIN order_lines l ON l.order_id = o.id "
        "WHERE o.status IN ('placed', 'delivered')",
    )
