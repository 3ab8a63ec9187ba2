"""Store names made of everyday and intent words ("C-Scheme", "New Order Mart", "The General
Store"), asked about through `Assistant.handle` on the small demo distributor.

The stores are added to the rep of the shared demo world for this module only (with an open
invoice each, and an order for two of them) and removed afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from assistant.nlu.entities import (
    BASE,
    CORE,
    WHOLE,
    forget_name_indexes,
    name_phrases,
    name_score,
)
from tests.assistant.conftest import DemoWorld
from tests.assistant.test_offline_planner import Chat, figures, rep_id

# name -> (code, open invoice amount)
NAMED = {
    "C-Scheme": ("NW-9101", Decimal("12345.67")),
    "New Order Mart": ("NW-9102", Decimal("2222.50")),
    "The General Store": ("NW-9103", Decimal("4321.00")),
    "The General Store, Karol Bagh": ("NW-9104", Decimal("987.65")),
    "Shiv Shakti General Store": ("NW-9105", Decimal("7890.10")),
    "Gupta & Sons": ("NW-9106", Decimal("3456.78")),
    "New Delhi Traders": ("NW-9107", Decimal("1111.11")),
}
ORDERED = ("New Order Mart", "New Delhi Traders")
# A store of another rep: never found for the demo world's rep.
HIDDEN = ("The Order Point", "NW-9199")


@pytest.fixture(scope="module")
def named(demo_world: DemoWorld) -> Iterator[dict[str, dict[str, Any]]]:
    today = demo_world.today
    mine, theirs = rep_id(demo_world, demo_world.rep), rep_id(demo_world, demo_world.other_rep)
    stores: dict[str, dict[str, Any]] = {}
    with demo_world.engine.begin() as conn:
        product = conn.execute(
            text("SELECT id, price FROM products WHERE is_active ORDER BY id LIMIT 1")
        ).one()
        rows = [(name, code, mine) for name, (code, _) in NAMED.items()]
        for name, code, rep in [*rows, (HIDDEN[0], HIDDEN[1], theirs)]:
            ident = conn.execute(
                text(
                    "INSERT INTO stores (code, name, owner_name, city, region, segment, "
                    "credit_limit, payment_terms_days, rep_id) VALUES (:code, :name, "
                    "'Ramesh Kumar', 'Delhi', 'North', 'kirana', 100000, 15, :rep) RETURNING id"
                ),
                {"code": code, "name": name, "rep": rep},
            ).scalar_one()
            stores[name] = {"id": ident, "code": code, "name": name}
        for name, (code, amount) in NAMED.items():
            conn.execute(
                text(
                    "INSERT INTO invoices (number, store_id, invoice_date, due_date, amount) "
                    "VALUES (:number, :store, :day, :due, :amount)"
                ),
                {
                    "number": f"INV-{code}",
                    "store": stores[name]["id"],
                    "day": today - dt.timedelta(days=5),
                    "due": today + dt.timedelta(days=10),
                    "amount": amount,
                },
            )
            stores[name]["outstanding"] = amount
        for quantity, name in enumerate(ORDERED, start=3):
            total = Decimal(product.price) * quantity
            order = conn.execute(
                text(
                    "INSERT INTO orders (store_id, rep_id, order_date, status, total_amount) "
                    "VALUES (:store, :rep, :day, 'delivered', :total) RETURNING id"
                ),
                {
                    "store": stores[name]["id"],
                    "rep": mine,
                    "day": today - dt.timedelta(days=2),
                    "total": total,
                },
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO order_lines (order_id, line_no, product_id, quantity, "
                    "unit_price, amount) VALUES (:order, 1, :product, :quantity, :price, :total)"
                ),
                {
                    "order": order,
                    "product": product.id,
                    "quantity": quantity,
                    "price": product.price,
                    "total": total,
                },
            )
            stores[name]["last_order"] = total.quantize(Decimal("0.01"))
    forget_name_indexes()  # the new names count at once, not after the index's next check
    yield stores
    ids = [s["id"] for s in stores.values()]
    with demo_world.engine.begin() as conn:
        for table in ("invoices", "orders"):
            conn.execute(text(f"DELETE FROM {table} WHERE store_id = ANY(:ids)"), {"ids": ids})
        conn.execute(text("DELETE FROM communications WHERE store_id = ANY(:ids)"), {"ids": ids})
        conn.execute(text("DELETE FROM stores WHERE id = ANY(:ids)"), {"ids": ids})
    forget_name_indexes()


def store_args(result: Any) -> list[Any]:
    return [call["args"].get("store") for call in result.tool_calls]


def test_a_name_is_written_out_whole_before_its_comma_and_without_its_shop_kind() -> None:
    assert name_phrases("C-Scheme Stores") == [
        (("c", "scheme", "stores"), WHOLE),
        (("c", "scheme"), CORE),
    ]
    # What is left of "New Order Mart" without "Mart" is everyday words: not a name.
    assert name_phrases("New Order Mart") == [(("new", "order", "mart"), WHOLE)]
    assert name_phrases("Gupta & Sons") == name_phrases("Gupta and Sons")
    assert name_phrases("Super Medicos, Dilsukhnagar") == [
        (("super", "medicos", "dilsukhnagar"), WHOLE),
        (("super", "medicos"), BASE),
    ]
    assert name_phrases("Sharma") == []


def test_everyday_words_alone_name_a_store_only_written_out_in_full() -> None:
    assert name_score("new order mart".split(), "New Order Mart")[0] == 1.0
    assert name_score("new orders".split(), "New Order Mart") == (0.0, 0.0)
    assert name_score("scheme".split(), "C-Scheme") == (0.0, 0.0)
    # ... or with the whole locality that tells a branch apart.
    assert name_score("medicos unit 4".split(), "Best Medicos, Unit 4")[0] >= 0.72
    assert name_score("medicos unit".split(), "Best Medicos, Unit 4") == (0.0, 0.0)
    # Any other word of a name is evidence on its own, as before.
    assert name_score("sharma".split(), "Sharma General Store")[0] >= 0.72


@pytest.mark.parametrize(
    ("message", "name", "intent"),
    [
        ("C-Scheme ka udhaar", "C-Scheme", "outstanding"),
        ("c scheme ka kitna baaki hai", "C-Scheme", "outstanding"),
        ("Shiv Shakti General Store ka outstanding", "Shiv Shakti General Store", "outstanding"),
        ("The General Store ka outstanding", "The General Store", "outstanding"),
        ("the general store karol bagh ka baaki", "The General Store, Karol Bagh", "outstanding"),
        ("Gupta & Sons kitna baaki", "Gupta & Sons", "outstanding"),
        ("gupta and sons ka udhaar", "Gupta & Sons", "outstanding"),
        ("new order mart ka outstanding", "New Order Mart", "outstanding"),
    ],
)
def test_dues_of_a_store_named_with_everyday_words(
    demo_world: DemoWorld, named: dict[str, dict[str, Any]], message: str, name: str, intent: str
) -> None:
    store = named[name]
    result = Chat(demo_world, demo_world.rep).say(message)
    assert result.intent == intent
    assert store_args(result) == [store["code"]]
    assert store["outstanding"] in figures(result)
    assert name in result.reply.text


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ("what did New Delhi Traders order", "New Delhi Traders"),
        ("what did new order mart order last time", "New Order Mart"),
        ("New Order Mart ka last order", "New Order Mart"),
    ],
)
def test_last_order_of_a_store_named_with_order_words(
    demo_world: DemoWorld, named: dict[str, dict[str, Any]], message: str, name: str
) -> None:
    store = named[name]
    result = Chat(demo_world, demo_world.rep).say(message)
    assert result.intent == "recent_orders"
    assert store_args(result) == [store["code"]]
    assert store["last_order"] in figures(result)


def test_intent_words_in_the_name_do_not_decide_the_intent(
    demo_world: DemoWorld, named: dict[str, dict[str, Any]]
) -> None:
    profile = Chat(demo_world, demo_world.rep).say("c-scheme ki details")
    assert profile.intent == "store_profile"
    assert store_args(profile) == [named["C-Scheme"]["code"]]
    # ... while the words around the name still do.
    schemes = Chat(demo_world, demo_world.rep).say("schemes for the general store")
    assert schemes.intent == "promotions"
    assert store_args(schemes) == [named["The General Store"]["code"]]


def test_ordinary_questions_name_no_store(
    demo_world: DemoWorld, named: dict[str, dict[str, Any]]
) -> None:
    codes = {s["code"] for s in named.values()}
    schemes = Chat(demo_world, demo_world.rep).say("what is the scheme this month")
    assert schemes.intent == "promotions"
    assert [call["name"] for call in schemes.tool_calls] == ["active_promotions"]
    assert store_args(schemes) == [None]
    for message in ("new orders today", "any new order today", "which general store owes most"):
        result = Chat(demo_world, demo_world.rep).say(message)
        assert not codes & set(map(str, store_args(result))), message
        assert not any(name in result.reply.as_text() for name in named), message


def test_the_answer_to_for_which_store_may_be_such_a_name(
    demo_world: DemoWorld, named: dict[str, dict[str, Any]]
) -> None:
    chat = Chat(demo_world, demo_world.rep)
    first = chat.say("kitna baaki hai?")
    assert first.reply.text == "For which store?"
    second = chat.say("C-Scheme")
    assert second.intent == "outstanding"
    assert named["C-Scheme"]["outstanding"] in figures(second)


def test_another_reps_store_named_in_full_stays_unknown(
    demo_world: DemoWorld, named: dict[str, dict[str, Any]]
) -> None:
    hidden = Chat(demo_world, demo_world.rep).say(f"{HIDDEN[0]} ka outstanding")
    missing = Chat(demo_world, demo_world.rep).say("The Order Spot ka outstanding")
    assert hidden.reply.text == missing.reply.text
    assert HIDDEN[0] not in hidden.reply.as_text()
    assert HIDDEN[1] not in map(str, store_args(hidden))


def test_this_month_is_a_period_not_the_store_just_talked_about(
    demo_world: DemoWorld, named: dict[str, dict[str, Any]]
) -> None:
    chat = Chat(demo_world, demo_world.rep)
    assert store_args(chat.say("C-Scheme ka udhaar")) == [named["C-Scheme"]["code"]]
    general = chat.say("what is the scheme this month")
    assert general.intent == "promotions" and store_args(general) == [None]
    follow_up = chat.say("any scheme for them?")
    assert follow_up.intent == "promotions"
    assert store_args(follow_up) == [named["C-Scheme"]["code"]]
