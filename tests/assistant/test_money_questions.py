"""Money questions through `Assistant.handle`: one named store's dues, or the list of stores
that owe.

A message that names one store and asks about money ("Sharma General Store paisa?", "sharma
ka paisa", "kitna paisa dena hai sharma general store") is answered with that store's
outstanding, never with the overdue list; the list answers only questions that name no store
or ask for a list ("kaun kaun", "which stores"). An empty overdue list says that none of the
user's stores is overdue, never that no store is.

Two reps of their own are added to the shared demo world for this module: one with three
stores (two with overdue invoices, one with a not-yet-due invoice on top), one whose only
store owes nothing overdue. They are removed afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from assistant.memory import MemorySessionStore
from assistant.messages import InboundMessage
from assistant.nlu.entities import forget_name_indexes
from assistant.nlu.intents import IntentClassifier, IntentGuess
from assistant.planners.offline import OfflinePlanner
from assistant.turn import Assistant, TurnResult
from tests.assistant.conftest import DemoWorld
from tests.assistant.test_offline_planner import Chat, figures
from tests.factories import make_invoice, make_store, make_user


@dataclass
class Ledger:
    rep: str
    quiet_rep: str
    sharma: str  # store code
    sharma_name: str
    kamath_name: str
    qureshi_name: str
    sharma_owes: Decimal
    sharma_overdue: Decimal
    overdue_total: Decimal
    qureshi_owes: Decimal
    medicos: tuple[str, str]  # Super Medicos, New Medicos, Bandra


@pytest.fixture(scope="module")
def ledger(demo_world: DemoWorld) -> Iterator[Ledger]:
    today = demo_world.today
    with Session(demo_world.engine, expire_on_commit=False) as session:
        rep = make_user(session, "rep", name="Meena Iyer")
        quiet = make_user(session, "rep", name="Farhan Ali")
        sharma = make_store(session, rep, name="Sharma General Store", owner_name="Om Prakash")
        kamath = make_store(session, rep, name="Kamath Provision Mart", owner_name="Uday K")
        qureshi = make_store(session, quiet, name="Qureshi Traders", owner_name="Salim Q")
        # Two stores told apart only by words for a kind of shop and a locality.
        super_medicos = make_store(session, rep, name="Super Medicos", owner_name="Hetal P")
        new_medicos = make_store(session, rep, name="New Medicos, Bandra", owner_name="Vijay K")
        # Sharma: 5,000.00 overdue 20 days and 1,250.50 not yet due.
        make_invoice(
            session, sharma, "5000.00", invoice_date=today - dt.timedelta(days=50),
            due_date=today - dt.timedelta(days=20),
        )  # fmt: skip
        make_invoice(
            session, sharma, "1250.50", invoice_date=today - dt.timedelta(days=3),
            due_date=today + dt.timedelta(days=27),
        )  # fmt: skip
        # Kamath: 3,000.00 of 4,000.00 left, overdue 40 days.
        make_invoice(
            session, kamath, "4000.00", invoice_date=today - dt.timedelta(days=70),
            due_date=today - dt.timedelta(days=40), paid=[(today - dt.timedelta(days=45), "1000")],
        )  # fmt: skip
        # Qureshi: owes 1,800.00, due in ten days.
        make_invoice(
            session, qureshi, "1800.00", invoice_date=today - dt.timedelta(days=20),
            due_date=today + dt.timedelta(days=10),
        )  # fmt: skip
        session.commit()
        users = [rep.id, quiet.id]
        stores = [sharma.id, kamath.id, qureshi.id, super_medicos.id, new_medicos.id]
        medicos = (super_medicos.code, new_medicos.code)
        found = Ledger(
            rep=rep.email,
            quiet_rep=quiet.email,
            sharma=sharma.code,
            sharma_name=sharma.name,
            kamath_name=kamath.name,
            qureshi_name=qureshi.name,
            sharma_owes=Decimal("6250.50"),
            sharma_overdue=Decimal("5000.00"),
            overdue_total=Decimal("8000.00"),
            qureshi_owes=Decimal("1800.00"),
            medicos=medicos,
        )
    forget_name_indexes()
    yield found
    with demo_world.engine.begin() as conn:
        conn.execute(
            text(
                "DELETE FROM payments WHERE invoice_id IN "
                "(SELECT id FROM invoices WHERE store_id = ANY(:s))"
            ),
            {"s": stores},
        )
        for table in ("invoices", "communications", "conversation_turns"):
            column = "user_id" if table == "conversation_turns" else "store_id"
            ids = users if table == "conversation_turns" else stores
            conn.execute(text(f"DELETE FROM {table} WHERE {column} = ANY(:ids)"), {"ids": ids})
        conn.execute(text("DELETE FROM stores WHERE id = ANY(:s)"), {"s": stores})
        conn.execute(text("DELETE FROM users WHERE id = ANY(:u)"), {"u": users})
    forget_name_indexes()


ONE_STORE = [
    "Sharma General Store paisa?",
    "sharma ka paisa",
    "paisa sharma general",
    "Sharma General Store baaki?",
    "Sharma General Store dues",
    "kitna paisa dena hai sharma general store",
    "sharma general store ke paise",
    "sharma general ka udhaar?",
    "sharma general store bakaya",
    "sharma general store se kitne rupay lene hai",
]


@pytest.mark.parametrize("message", ONE_STORE)
def test_money_question_about_one_named_store_answers_its_outstanding(
    ledger: Ledger, demo_world: DemoWorld, message: str
) -> None:
    result = Chat(demo_world, ledger.rep).say(message)
    assert result.intent == "outstanding", result.reply.text
    assert [c["name"] for c in result.tool_calls] == ["outstanding"]
    assert result.tool_calls[0]["args"]["store"] == ledger.sharma
    assert ledger.sharma_name in result.reply.text
    assert {ledger.sharma_owes, ledger.sharma_overdue} <= figures(result)


@pytest.mark.parametrize(
    "message",
    [
        "kaun kaun se store ka paisa baaki hai",
        "which stores owe money",
        "udhaar wale dukaan dikhao",
        "kis kis dukaan ka bakaya hai",
    ],
)
def test_a_list_question_answers_with_the_users_overdue_stores(
    ledger: Ledger, demo_world: DemoWorld, message: str
) -> None:
    result = Chat(demo_world, ledger.rep).say(message)
    assert result.intent == "overdue_stores", result.reply.text
    assert [c["name"] for c in result.tool_calls] == ["overdue_stores"]
    assert {Decimal(2), ledger.overdue_total} <= figures(result)
    assert result.reply.table is not None
    assert {row[0] for row in result.reply.table.rows} == {ledger.sharma_name, ledger.kamath_name}


def test_a_list_question_after_talking_about_a_store_is_still_the_list(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    chat = Chat(demo_world, ledger.rep)
    first = chat.say("Sharma General Store dues")
    assert first.intent == "outstanding"
    second = chat.say("which stores have overdue payments")
    assert second.intent == "overdue_stores"
    assert {Decimal(2), ledger.overdue_total} <= figures(second)
    # ... and a pronoun still means the store talked about.
    third = chat.say("unka paisa kitna hai")
    assert third.intent == "outstanding"
    assert ledger.sharma_owes in figures(third)


def test_no_overdue_invoices_is_said_of_the_users_own_stores(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    chat = Chat(demo_world, ledger.quiet_rep)
    result = chat.say("overdue list")
    assert result.intent == "overdue_stores"
    assert result.reply.text == "None of your stores has overdue invoices."
    # A store's own money question is still answered from its invoices.
    own = chat.say("Qureshi Traders paisa?")
    assert own.intent == "outstanding"
    assert ledger.qureshi_name in own.reply.text
    assert ledger.qureshi_owes in figures(own)


def test_an_empty_filtered_list_says_which_filter_found_nothing(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    result = Chat(demo_world, ledger.rep).say("stores overdue more than 45 days")
    assert result.intent == "overdue_stores"
    assert result.reply.text == "None of your stores has invoices 45 days or more overdue."


def test_an_empty_list_above_an_amount_names_the_amount(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    result = Chat(demo_world, ledger.rep).say("overdue above rs 100000")
    assert result.intent == "overdue_stores"
    assert result.tool_calls[0]["args"] == {"limit": 20, "min_amount": 100000}
    assert result.reply.text.startswith("None of your stores has Rs ")
    assert result.reply.text.endswith(" or more overdue.")
    assert figures(result) == {Decimal(100000)}


class ReadsEverythingAs(IntentClassifier):
    """A classifier that reads every message as one intent, surely: what the planner does
    with a store named in a message the classifier took for the other money intent."""

    def __init__(self, intent: str) -> None:
        self.intent = intent

    def classify(self, text: str) -> IntentGuess:
        return IntentGuess(self.intent, 0.99, [])


def ask_as(world: DemoWorld, email: str, intent: str, *messages: str) -> list[TurnResult]:
    assistant = Assistant(
        engine=world.engine,
        planner=OfflinePlanner(ReadsEverythingAs(intent)),
        sessions=MemorySessionStore(),
        today=world.today,
    )
    return [
        assistant.handle(InboundMessage(channel="cli", sender=email, text=message))
        for message in messages
    ]


@pytest.mark.parametrize("message", ["Sharma General Store paisa?", "S-CODE ka baaki"])
def test_a_named_store_read_as_the_overdue_list_gets_its_own_outstanding(
    ledger: Ledger, demo_world: DemoWorld, message: str
) -> None:
    message = message.replace("S-CODE", ledger.sharma)
    [result] = ask_as(demo_world, ledger.rep, "overdue_stores", message)
    assert result.intent == "outstanding"
    assert [c["name"] for c in result.tool_calls] == ["outstanding"]
    assert {ledger.sharma_owes, ledger.sharma_overdue} <= figures(result)


def test_the_overdue_list_stays_a_list_when_it_asks_which_stores(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    # Several stores asked about, even next to a store's name: still the list.
    for result in ask_as(
        demo_world,
        ledger.rep,
        "overdue_stores",
        "overdue list",
        "kis kis ka paisa baaki hai sharma general store ke alawa",
        "which stores owe more than sharma general store",
    ):
        assert result.intent == "overdue_stores", result.reply.text
        assert [c["name"] for c in result.tool_calls] == ["overdue_stores"]


def test_a_pronoun_read_as_the_overdue_list_means_the_store_talked_about(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    first, second = ask_as(
        demo_world, ledger.rep, "overdue_stores", "Sharma General Store paisa?", "unka paisa?"
    )
    assert second.intent == "outstanding"
    assert ledger.sharma_owes in figures(second)


def test_a_list_question_read_as_one_stores_dues_gets_the_list(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    listed, asked = ask_as(
        demo_world,
        ledger.rep,
        "outstanding",
        "kaun kaun se store ka paisa baaki hai",
        "kitna baaki hai?",
    )
    assert listed.intent == "overdue_stores"
    assert {Decimal(2), ledger.overdue_total} <= figures(listed)
    # No store named and no list asked for: which store is meant is asked, not guessed.
    assert asked.intent == "outstanding"
    assert asked.reply.text == "For which store?" and not asked.tool_calls


def test_a_word_for_a_kind_of_shop_shared_by_two_stores_is_asked_about(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    chat = Chat(demo_world, ledger.rep)
    asked = chat.say("medicos ka outstanding")
    assert asked.reply.text.startswith("Which store do you mean?")
    assert {b.payload for b in asked.reply.buttons} == {f"store:{c}" for c in ledger.medicos}
    # Written out in full, the name is one store.
    named = chat.say("super medicos ka outstanding")
    assert named.intent == "outstanding"
    assert named.tool_calls[-1]["args"]["store"] == ledger.medicos[0]
    assert "Super Medicos owes nothing" in named.reply.text


def test_one_stores_dues_list_its_open_invoices_oldest_first_with_the_totals(
    ledger: Ledger, demo_world: DemoWorld
) -> None:
    chat = Chat(demo_world, ledger.rep)
    sharma = chat.say(f"outstanding for {ledger.sharma_name}").tool_calls[0]["result"]
    assert [Decimal(str(i["due"])) for i in sharma["invoices"]] == [
        Decimal("5000.00"),
        Decimal("1250.50"),
    ]
    assert Decimal(str(sharma["invoiced_total"])) == ledger.sharma_owes
    assert Decimal(str(sharma["paid_total"])) == 0 and sharma["open_invoices"] == 2
    kamath = chat.say(f"outstanding for {ledger.kamath_name}").tool_calls[0]["result"]
    assert Decimal(str(kamath["invoiced_total"])) == Decimal("4000.00")
    assert Decimal(str(kamath["paid_total"])) == Decimal("1000.00")
    assert Decimal(str(kamath["outstanding"])) == Decimal("3000.00")
    # A store that was never invoiced owes nothing and lists no invoice.
    owes_nothing = chat.say("outstanding for Super Medicos")
    assert owes_nothing.intent == "outstanding", owes_nothing.reply.text
    nothing = owes_nothing.tool_calls[0]["result"]
    assert nothing["invoices"] == [] and nothing["open_invoices"] == 0
    assert Decimal(str(nothing["outstanding"])) == 0 == Decimal(str(nothing["invoiced_total"]))
