"""The offline planner through `Assistant.handle`, on a small demo distributor.

Every figure is checked against SQL written here, over the same database.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from assistant.memory import MemorySessionStore, SessionStore, make_session_store
from assistant.messages import InboundMessage
from assistant.planners.offline import OfflinePlanner
from assistant.turn import Assistant, TurnResult
from tests.assistant.conftest import DemoWorld

NUMBER = re.compile(r"(?<![\w.\-/#])-?\d[\d,]*(?:\.\d+)?(?![\w\-/])")


def figures(result: TurnResult) -> set[Decimal]:
    body = result.reply.text
    if result.reply.table:
        body += "\n" + "\n".join(" ".join(map(str, r)) for r in result.reply.table.rows)
    return {Decimal(n.replace(",", "")) for n in NUMBER.findall(body)}


class Chat:
    """One person's conversation with the assistant (one session)."""

    def __init__(self, world: DemoWorld, email: str, sessions: SessionStore | None = None) -> None:
        self.world = world
        self.email = email
        self.assistant = Assistant(
            engine=world.engine,
            planner=OfflinePlanner(),
            sessions=sessions or MemorySessionStore(),
            today=world.today,
        )

    def say(self, message: str = "", button: str | None = None) -> TurnResult:
        return self.assistant.handle(
            InboundMessage(channel="cli", sender=self.email, text=message, button_payload=button)
        )


def sql(world: DemoWorld, query: str, **params: Any) -> list[Any]:
    with world.engine.connect() as conn:
        return list(conn.execute(text(query), params).all())


def scalar(world: DemoWorld, query: str, **params: Any) -> Any:
    with world.engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def rep_id(world: DemoWorld, email: str) -> int:
    return int(scalar(world, "SELECT id FROM users WHERE email = :e", e=email))


def a_store(
    world: DemoWorld, email: str, condition: str = "TRUE", order: str = "id"
) -> dict[str, Any]:
    """A store of the user with a distinctive name (no other store of theirs shares a word)."""
    rows = sql(
        world,
        f"SELECT id, code, name FROM stores s WHERE rep_id = :r AND code NOT LIKE 'ZT-%' "
        f"AND {condition} ORDER BY {order}",
        r=rep_id(world, email),
    )
    names = [set(r.name.lower().replace(",", " ").split()) for r in rows]
    for i, row in enumerate(rows):
        others = [n for j, n in enumerate(names) if j != i]
        if not any(names[i] <= other for other in others):
            return {"id": row.id, "code": row.code, "name": row.name}
    raise AssertionError("no store with a distinctive name")


def outstanding(world: DemoWorld, store_id: int) -> Decimal:
    value = scalar(
        world,
        """
        SELECT coalesce(sum(i.amount - coalesce(p.paid, 0)), 0) FROM invoices i
        LEFT JOIN (SELECT invoice_id, sum(amount) paid FROM payments GROUP BY 1) p
               ON p.invoice_id = i.id
        WHERE i.store_id = :s AND i.amount - coalesce(p.paid, 0) > 0
        """,
        s=store_id,
    )
    return Decimal(value).quantize(Decimal("0.01"))


HAS_DUES = (
    "EXISTS (SELECT 1 FROM invoices i WHERE i.store_id = s.id AND i.amount > "
    "coalesce((SELECT sum(amount) FROM payments p WHERE p.invoice_id = i.id), 0))"
)


# --------------------------------------------------------------------------- one intent each


def test_outstanding_in_hinglish_with_a_typo(demo_world: DemoWorld) -> None:
    store = a_store(demo_world, demo_world.rep, HAS_DUES)
    name = store["name"].lower()
    typo = name[:3] + name[4:] if len(name.split()[0]) > 5 else name
    result = Chat(demo_world, demo_world.rep).say(f"{typo} ka kitna baaki hai")
    assert result.intent == "outstanding"
    assert outstanding(demo_world, store["id"]) in figures(result)
    assert store["name"] in result.reply.text


def test_store_profile_by_code(demo_world: DemoWorld) -> None:
    store = a_store(demo_world, demo_world.rep)
    last = scalar(
        demo_world,
        "SELECT total_amount FROM orders WHERE store_id = :s AND status IN "
        "('placed', 'delivered') ORDER BY order_date DESC, id DESC LIMIT 1",
        s=store["id"],
    )
    result = Chat(demo_world, demo_world.rep).say(f"tell me about {store['code']}")
    assert result.intent == "store_profile"
    assert {outstanding(demo_world, store["id"]), Decimal(last)} <= figures(result)


def test_last_order_and_order_details(demo_world: DemoWorld) -> None:
    store = a_store(demo_world, demo_world.rep)
    order_id, total, lines = sql(
        demo_world,
        "SELECT o.id, o.total_amount, count(l.*) FROM orders o JOIN order_lines l "
        "ON l.order_id = o.id WHERE o.store_id = :s GROUP BY o.id "
        "ORDER BY o.order_date DESC, o.id DESC LIMIT 1",
        s=store["id"],
    )[0]
    chat = Chat(demo_world, demo_world.rep)
    result = chat.say(f"what did {store['name'].lower()} order last time")
    assert result.intent == "recent_orders"
    assert Decimal(total) in figures(result)
    details = chat.say(f"details of order {order_id}")
    assert details.intent == "order_details"
    assert {Decimal(total), Decimal(lines)} <= figures(details)


def test_sales_this_month_against_last_month_for_a_manager(demo_world: DemoWorld) -> None:
    def sales(first: dt.date, last: dt.date) -> Decimal:
        value = scalar(
            demo_world,
            """
            SELECT coalesce(sum(l.amount), 0) FROM orders o
            JOIN order_lines l ON l.order_id = o.id JOIN stores s ON s.id = o.store_id
            WHERE o.status IN ('placed', 'delivered') AND o.order_date BETWEEN :a AND :b
              AND (s.rep_id = :m OR s.rep_id IN (SELECT id FROM users WHERE manager_id = :m))
            """,
            a=first,
            b=last,
            m=rep_id(demo_world, demo_world.manager),
        )
        return Decimal(value).quantize(Decimal("0.01"))

    today = demo_world.today
    this_month = sales(today.replace(day=1), today)
    previous = sales(dt.date(today.year, today.month - 1, 1), today.replace(month=today.month - 1))
    result = Chat(demo_world, demo_world.manager).say("sales by region this month vs last month")
    assert result.intent == "sales_summary"
    assert {this_month, previous} <= figures(result)


def test_not_ordered_since_counts_the_users_stores(demo_world: DemoWorld) -> None:
    count = scalar(
        demo_world,
        """
        SELECT count(*) FROM stores s WHERE s.is_active AND s.rep_id = :r AND NOT EXISTS (
          SELECT 1 FROM orders o WHERE o.store_id = s.id AND o.status IN ('placed', 'delivered')
            AND o.order_date > :cutoff)
        """,
        r=rep_id(demo_world, demo_world.rep),
        cutoff=demo_world.today - dt.timedelta(days=14),
    )
    result = Chat(demo_world, demo_world.rep).say("kin dukano ne 2 hafte se order nahi diya")
    assert result.intent == "not_ordered_since"
    assert count == 0 or Decimal(count) in figures(result)


def test_overdue_stores_total(demo_world: DemoWorld) -> None:
    total = scalar(
        demo_world,
        """
        SELECT coalesce(sum(i.amount - coalesce(p.paid, 0)), 0) FROM invoices i
        JOIN stores s ON s.id = i.store_id
        LEFT JOIN (SELECT invoice_id, sum(amount) paid FROM payments GROUP BY 1) p
               ON p.invoice_id = i.id
        WHERE i.amount - coalesce(p.paid, 0) > 0 AND i.due_date < :today
        """,
        today=demo_world.today,
    )
    result = Chat(demo_world, demo_world.admin).say("kis kis ka payment overdue hai")
    assert result.intent == "overdue_stores"
    assert Decimal(total).quantize(Decimal("0.01")) in figures(result)


def test_stock_of_a_product_and_low_stock(demo_world: DemoWorld) -> None:
    product_id, name = sql(
        demo_world, "SELECT id, name FROM products WHERE name LIKE 'Tata Tea%' ORDER BY id"
    )[0]
    available = scalar(
        demo_world,
        "SELECT coalesce(sum(on_hand - reserved), 0) FROM inventory WHERE product_id = :p",
        p=product_id,
    )
    chat = Chat(demo_world, demo_world.rep)
    result = chat.say(f"{name.lower()} kitna stock hai")
    assert result.intent == "stock_level"
    assert Decimal(available) in figures(result)
    low = scalar(
        demo_world,
        """
        SELECT count(*) FROM (SELECT p.id, coalesce(sum(i.on_hand - i.reserved), 0) a,
          coalesce(sum(i.reorder_point), 0) r FROM products p
          LEFT JOIN inventory i ON i.product_id = p.id WHERE p.is_active GROUP BY p.id) x
        WHERE a <= 0 OR (r > 0 AND a <= r)
        """,
    )
    result = chat.say("what is running out of stock")
    assert result.intent == "low_stock"
    assert low == 0 or Decimal(low) in figures(result)


def test_schemes_running_today(demo_world: DemoWorld) -> None:
    names = [
        r.name
        for r in sql(
            demo_world,
            "SELECT name FROM promotions WHERE starts_on <= :d AND ends_on >= :d",
            d=demo_world.today,
        )
    ]
    result = Chat(demo_world, demo_world.rep).say("koi scheme chal rahi hai kya")
    assert result.intent == "promotions"
    body = result.reply.as_text(max_rows=100)
    assert all(name in body for name in names)


def test_forecast_intents_relay_the_stored_predictions(demo_world: DemoWorld) -> None:
    store = a_store(
        demo_world,
        demo_world.rep,
        "EXISTS (SELECT 1 FROM predictions p WHERE p.store_id = s.id AND p.kind = 'next_order')",
    )
    predicted = scalar(
        demo_world,
        "SELECT predicted_date FROM predictions WHERE store_id = :s AND kind = 'next_order'",
        s=store["id"],
    )
    chat = Chat(demo_world, demo_world.rep)
    result = chat.say(f"{store['name'].lower()} ka next order kab aayega")
    assert result.intent == "next_order"
    assert predicted.strftime("%d %b %Y").lstrip("0") in result.reply.text
    top_risk = sql(
        demo_world,
        "SELECT s.name FROM predictions p JOIN stores s ON s.id = p.store_id "
        "WHERE p.kind = 'at_risk' AND s.rep_id = :r ORDER BY p.probability DESC, s.id LIMIT 1",
        r=rep_id(demo_world, demo_world.rep),
    )
    risk = chat.say("which stores are at risk")
    assert risk.intent == "at_risk"
    if top_risk:
        assert top_risk[0].name in risk.reply.text
    calls = chat.say("aaj kisko call karu")
    assert calls.intent == "call_list"
    assert calls.reply.table is not None
    mine = {
        r.name
        for r in sql(
            demo_world,
            "SELECT name FROM stores WHERE rep_id = :r",
            r=rep_id(demo_world, demo_world.rep),
        )
    }
    assert {row[1] for row in calls.reply.table.rows} <= mine


def test_help_greeting_and_out_of_scope(demo_world: DemoWorld) -> None:
    chat = Chat(demo_world, demo_world.rep)
    assert chat.say("help").intent == "help"
    assert chat.say("namaste").intent == "greeting"
    result = chat.say("who won the cricket match yesterday")
    assert result.intent == "out_of_scope"
    assert "can't answer" in result.reply.text


def test_gibberish_gets_a_question_back_not_a_guess(demo_world: DemoWorld) -> None:
    result = Chat(demo_world, demo_world.rep).say("asdf qwer zxcv")
    assert not result.tool_calls
    assert result.reply.intent == "clarify" or result.intent == "out_of_scope"


# --------------------------------------------------------------------------- conversation


def test_follow_up_refers_to_the_last_store(demo_world: DemoWorld) -> None:
    store = a_store(demo_world, demo_world.rep, HAS_DUES)
    chat = Chat(demo_world, demo_world.rep)
    chat.say(f"what did {store['name']} order last time")
    result = chat.say("and their outstanding?")
    assert result.intent == "outstanding"
    assert outstanding(demo_world, store["id"]) in figures(result)


def test_slot_filling_asks_for_the_store_then_answers(demo_world: DemoWorld) -> None:
    store = a_store(demo_world, demo_world.rep, HAS_DUES)
    chat = Chat(demo_world, demo_world.rep)
    first = chat.say("kitna baaki hai?")
    assert first.reply.text == "For which store?" and not first.tool_calls
    second = chat.say(store["name"].lower())
    assert second.intent == "outstanding"
    assert outstanding(demo_world, store["id"]) in figures(second)


def test_ambiguous_store_asks_with_buttons_then_a_press_answers(demo_world: DemoWorld) -> None:
    chat = Chat(demo_world, demo_world.rep)
    first = chat.say("zorawar ka outstanding batao")
    assert first.reply.text.startswith("Which store do you mean?")
    payloads = {b.payload for b in first.reply.buttons}
    assert payloads == {f"store:{code}" for code in demo_world.twin_codes}
    second = chat.say("", button=f"store:{demo_world.twin_codes[1]}")
    assert second.intent == "outstanding"
    assert "Zorawar Medical Hall" in second.reply.text


def test_another_reps_store_reads_like_a_store_that_does_not_exist(
    demo_world: DemoWorld,
) -> None:
    theirs = sql(
        demo_world,
        "SELECT code, name FROM stores WHERE rep_id = :r ORDER BY id LIMIT 1",
        r=rep_id(demo_world, demo_world.other_rep),
    )[0]
    chat = Chat(demo_world, demo_world.rep)
    hidden = chat.say(f"outstanding of {theirs.code}")
    missing = Chat(demo_world, demo_world.rep).say("outstanding of QQ-424242")
    assert hidden.reply.text.replace(theirs.code, "<ref>") == missing.reply.text.replace(
        "QQ-424242", "<ref>"
    )
    assert theirs.name not in hidden.reply.as_text()


# --------------------------------------------------------------------------- confirmations


def _draftable(world: DemoWorld) -> tuple[dict[str, Any], str]:
    # The store with the most credit left, and the cheapest well-stocked product: the draft
    # passes the credit and stock checks.
    store = a_store(
        world,
        world.rep,
        order="s.credit_limit - coalesce((SELECT sum(i.amount) FROM invoices i "
        "WHERE i.store_id = s.id), 0) DESC",
    )
    product = sql(
        world,
        "SELECT p.name FROM products p JOIN inventory i ON i.product_id = p.id "
        "WHERE p.is_active GROUP BY p.id HAVING sum(i.on_hand - i.reserved) > 50 "
        "ORDER BY p.price, p.id LIMIT 1",
    )[0].name
    return store, product


def orders_of(world: DemoWorld, store_id: int) -> int:
    return int(scalar(world, "SELECT count(*) FROM orders WHERE store_id = :s", s=store_id))


def test_draft_then_yes_places_the_order_once(demo_world: DemoWorld) -> None:
    store, product = _draftable(demo_world)
    before = orders_of(demo_world, store["id"])
    chat = Chat(demo_world, demo_world.rep)
    draft = chat.say(f"book 2 cases {product} for {store['code']}")
    assert draft.intent == "draft_order"
    assert [b.payload for b in draft.reply.buttons] == ["confirm:yes", "cancel:no"]
    assert orders_of(demo_world, store["id"]) == before
    placed = chat.say("", button="confirm:yes")
    assert orders_of(demo_world, store["id"]) == before + 1
    order_id, total = sql(
        demo_world,
        "SELECT id, total_amount FROM orders WHERE store_id = :s ORDER BY id DESC LIMIT 1",
        s=store["id"],
    )[0]
    assert f"Order {order_id} placed" in placed.reply.text
    assert Decimal(total) in figures(placed)
    again = chat.say("yes")
    assert orders_of(demo_world, store["id"]) == before + 1
    assert "nothing waiting" in again.reply.text


@pytest.mark.parametrize("template", ["order 2 {product} for {code}", "order 3 {product} {code}"])
def test_order_with_a_quantity_and_a_product_drafts_instead_of_reading_an_order_number(
    demo_world: DemoWorld, template: str
) -> None:
    store, product = _draftable(demo_world)
    before = orders_of(demo_world, store["id"])
    draft = Chat(demo_world, demo_world.rep).say(
        template.format(product=product.lower(), code=store["code"])
    )
    assert draft.intent == "draft_order", draft.reply.text
    assert [b.payload for b in draft.reply.buttons] == ["confirm:yes", "cancel:no"]
    assert orders_of(demo_world, store["id"]) == before


def test_no_cancels_the_draft(demo_world: DemoWorld) -> None:
    store, product = _draftable(demo_world)
    before = orders_of(demo_world, store["id"])
    chat = Chat(demo_world, demo_world.rep)
    chat.say(f"{store['name'].lower()} ke liye 3 peti {product} bhejo")
    result = chat.say("nahi")
    assert result.intent == "deny" and "cancelled" in result.reply.text
    assert chat.say("yes").reply.text == "There is nothing waiting for confirmation."
    assert orders_of(demo_world, store["id"]) == before


def test_an_unrelated_message_drops_the_pending_order(demo_world: DemoWorld) -> None:
    store, product = _draftable(demo_world)
    before = orders_of(demo_world, store["id"])
    chat = Chat(demo_world, demo_world.rep)
    chat.say(f"book 2 cases {product} for {store['code']}")
    assert chat.say("what is low on stock").intent == "low_stock"
    chat.say("yes")
    assert orders_of(demo_world, store["id"]) == before


def test_note_is_saved_only_after_yes(demo_world: DemoWorld) -> None:
    store = a_store(demo_world, demo_world.rep)

    def notes() -> int:
        return int(
            scalar(
                demo_world,
                "SELECT count(*) FROM communications WHERE store_id = :s AND kind = 'note'",
                s=store["id"],
            )
        )

    before = notes()
    chat = Chat(demo_world, demo_world.rep)
    asked = chat.say(f"note for {store['code']}: owner wants the winter scheme")
    assert asked.intent == "log_note" and notes() == before
    chat.say("haan")
    assert notes() == before + 1


# --------------------------------------------------------------------------- sessions


def test_session_continues_across_processes_through_redis(demo_world: DemoWorld) -> None:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_timeout=0.5).ping()
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379")
    store = a_store(demo_world, demo_world.rep, HAS_DUES)
    # Two assistants with their own Redis clients, as two API processes would have.
    first = Chat(demo_world, demo_world.rep, make_session_store(url))
    second = Chat(demo_world, demo_world.rep, make_session_store(url))
    key_store = first.assistant.sessions
    user = rep_id(demo_world, demo_world.rep)
    key_store.clear(f"{user}:cli")
    first.say(f"what did {store['code']} order last time")
    result = second.say("and their outstanding?")
    assert result.intent == "outstanding"
    assert outstanding(demo_world, store["id"]) in figures(result)
    key_store.clear(f"{user}:cli")
    assert uuid.UUID(result.turn_id)
