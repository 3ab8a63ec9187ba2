"""The assistant evaluation: how replies are judged, and a small run on the demo data."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import text

from assistant.evaluation import (
    EVAL_SEED,
    TARGET_ANSWER_ACCURACY,
    TARGET_WRONG_RATE,
    EvaluationReport,
    Expectation,
    dates_in,
    evaluate,
    figures_in,
    judge,
    load_question_set,
    misspell,
    nickname,
    short_product,
)
from assistant.messages import Button, Reply, Table
from assistant.planners.offline import OfflinePlanner
from assistant.turn import TurnResult
from tests.assistant.conftest import DemoWorld


def _result(reply: Reply, intent: str | None = "outstanding") -> TurnResult:
    return TurnResult(turn_id="t", reply=reply, intent=intent)


def test_figures_are_read_as_values_in_indian_grouping() -> None:
    assert figures_in("owes Rs 1,23,456.50 of which Rs 18,400 overdue") == {
        Decimal("123456.50"),
        Decimal("18400"),
    }
    assert Decimal("18400.00") in figures_in("Rs 18,400")
    assert dates_in("next order around 7 Dec 2026 (in 12 days), or 2026-12-09") == {
        dt.date(2026, 12, 7),
        dt.date(2026, 12, 9),
    }


def test_a_confident_answer_with_another_figure_is_wrong_not_just_failed() -> None:
    expect = Expectation(figures=[Decimal("18400.00")], texts=["Sharma General"])
    right = _result(Reply(text="Sharma General owes Rs 18,400."))
    other = _result(Reply(text="Sharma General owes Rs 19,400."))
    assert judge(expect, right) == ("correct", [])
    verdict, problems = judge(expect, other)
    assert verdict == "wrong" and problems == ["missing figure 18,400.00"]


def test_figures_in_the_table_count() -> None:
    expect = Expectation(figures=[Decimal("5"), Decimal("12000")])
    reply = Reply(
        text="5 stores are overdue.", table=Table(columns=["store", "due"], rows=[["A", "12,000"]])
    )
    assert judge(expect, _result(reply))[0] == "correct"


def test_a_question_back_is_a_clarification_unless_one_was_expected() -> None:
    ask = Reply(
        text="Which store do you mean?",
        buttons=[Button(label="A", payload="store:S1"), Button(label="B", payload="store:S2")],
    )
    assert judge(Expectation(figures=[Decimal(1)]), _result(ask))[0] == "clarified"
    assert judge(Expectation(kind="clarify"), _result(ask))[0] == "correct"
    answer = _result(Reply(text="A owes Rs 100."))
    assert judge(Expectation(kind="clarify"), answer)[0] == "wrong"


def test_showing_a_hidden_stores_data_is_wrong() -> None:
    expect = Expectation(kind="not_found", texts=["S00042"], forbidden=["S00042"])
    leak = _result(Reply(text="Gupta Kirana (S00042) owes Rs 500."))
    safe = _result(Reply(text="No store found for 'Gupta Kirana'."))
    assert judge(expect, leak)[0] == "wrong"
    assert judge(expect, safe)[0] == "correct"


def test_a_confirmation_request_is_not_an_answer() -> None:
    confirm = Reply(
        text="Order for A: Rs 1,000 for 2 units. Shall I place it?",
        buttons=[
            Button(label="Yes", payload="confirm:yes"),
            Button(label="No", payload="cancel:no"),
        ],
    )
    expect = Expectation(kind="confirm", figures=[Decimal(2), Decimal(1000)])
    assert judge(expect, _result(confirm, "draft_order"))[0] == "correct"
    assert judge(Expectation(figures=[Decimal(2)]), _result(confirm))[0] == "failed"


def test_rates_are_shares_of_all_turns() -> None:
    from assistant.evaluation import TurnOutcome

    def outcome(verdict: str, intent: str) -> TurnOutcome:
        return TurnOutcome("q", "t", "u", "outstanding", intent, "answer", verdict, [], "", "", 1.0)

    outcomes = [outcome("correct", "outstanding")] * 7 + [
        outcome("wrong", "outstanding"),
        outcome("clarified", "help"),
        outcome("failed", "help"),
    ]
    report = EvaluationReport("demo", 1, dt.date(2026, 1, 1), "offline", outcomes, 1.0)
    rates = report.to_json()
    assert rates["answer_accuracy"] == 0.7
    assert rates["intent_accuracy"] == 0.8
    assert rates["wrong_answer_rate"] == 0.1
    assert rates["clarification_rate"] == 0.1
    assert len(rates["failures"]) == 3


def test_store_and_product_names_as_people_write_them() -> None:
    import random

    assert nickname("Sharma Provision Stores") == "sharma"
    assert nickname("Super Medicos, Dilsukhnagar") == "medicos dilsukhnagar"
    assert short_product("Hamam Neem Soap 4 x 100 g") == "Hamam Neem Soap"
    assert short_product("Tata Tea Gold 250 g") == "Tata Tea Gold"
    slip = misspell("Bansal Kirana Store", random.Random(3))
    assert slip != "bansal kirana store" and len(slip) >= len("bansal kirana store") - 1


def test_the_demo_question_set_covers_every_intent() -> None:
    from assistant.nlu.intents import load_utterances

    qs = load_question_set("demo")
    assert len(qs.questions) >= 200 and len(qs.dialogues) >= 30
    asked = {q.intent for q in qs.questions} | {t.intent for d in qs.dialogues for t in d.turns}
    intents = {intent for _, intent in load_utterances()}
    assert intents <= asked


@pytest.mark.parametrize("dataset", ["superstore", "northwind"])
def test_imported_data_question_sets_load(dataset: str) -> None:
    qs = load_question_set(dataset)
    assert len(qs.questions) >= 20


def test_small_run_on_the_demo_meets_the_targets_and_leaves_no_trace(
    demo_world: DemoWorld,
) -> None:
    with demo_world.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM conversation_turns")).scalar()
    report = evaluate(demo_world.engine, OfflinePlanner(), dataset="demo", seed=EVAL_SEED, limit=40)
    figures = report.to_json()
    assert figures["turns"] == 40 and figures["today"] == demo_world.today.isoformat()
    correct = sum(o.verdict == "correct" for o in report.outcomes)
    assert figures["answer_accuracy"] == round(correct / 40, 4)
    assert figures["answer_accuracy"] >= TARGET_ANSWER_ACCURACY, figures["failures"]
    assert figures["wrong_answer_rate"] <= TARGET_WRONG_RATE, figures["failures"]
    with demo_world.engine.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM conversation_turns")).scalar()
    assert after == before
