"""At-risk stores: the change test finds drops under way, with reasons, from the past only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.at_risk import DROP_LLR, AtRiskModel, drop_test
from forecasting.features import History, from_day, to_day
from tests.forecasting.factories import synthetic_history

START = to_day("2024-01-01")
CUTOFF = START + 480


def _store_orders(store_id: int, days: list[int], amounts: list[float]) -> list[dict]:
    return [
        {
            "order_id": store_id * 10_000 + i,
            "store_id": store_id,
            "product_id": 1 + i % 3,
            "day": day,
            "quantity": 1,
            "amount": amount,
        }
        for i, (day, amount) in enumerate(zip(days, amounts, strict=True))
    ]


def _shops() -> History:
    """Store 1 orders weekly for good; store 2 slows to every 18 days, half the value, 120 days
    before the cut-off; store 3 stopped 250 days before the cut-off; the rest order weekly with
    some noise (so the classifier has a population to learn from)."""
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    steady = list(range(START, CUTOFF + 1, 7))
    rows += _store_orders(1, steady, [1000.0] * len(steady))
    change = CUTOFF - 120
    slowed = list(range(START, change, 7)) + list(range(change, CUTOFF + 1, 18))
    rows += _store_orders(2, slowed, [1000.0 if d < change else 500.0 for d in slowed])
    stopped = list(range(START, CUTOFF - 250, 7))
    rows += _store_orders(3, stopped, [1000.0] * len(stopped))
    for store in range(4, 40):
        days = sorted({int(d) for d in np.cumsum(rng.integers(5, 10, 120)) + START if d <= CUTOFF})
        rows += _store_orders(store, days, list(rng.uniform(800, 1200, len(days))))
    return History(pd.DataFrame(rows))


def test_drop_test_finds_a_slowdown_and_when_it_began() -> None:
    history = _shops()
    test = drop_test(history, CUTOFF)
    assert test.loc[2, "drop_llr"] >= DROP_LLR
    assert abs(test.loc[2, "drop_since"] - (CUTOFF - 120)) <= 14
    assert test.loc[2, "drop_ratio"] < 0.4  # half the value, 40% of the orders
    # Steady buying is no drop.
    assert test.loc[1, "drop_llr"] < DROP_LLR
    assert test.loc[4:, "drop_llr"].median() < DROP_LLR


def test_flagged_stores_carry_the_change_and_its_numbers() -> None:
    history = _shops()
    model = AtRiskModel().fit(history, CUTOFF)
    flagged = model.flagged(history, CUTOFF)
    assert 2 in flagged.index
    assert 1 not in flagged.index
    # Stopped long ago: lapsed, not at risk (there is no recent normal to fall from).
    assert 3 not in flagged.index
    assert model.predict(history, CUTOFF).loc[3, "risk"] == 0.0
    assert all(len(r) > 0 for r in flagged["reasons"])
    assert (flagged["risk"] >= 0.5).all()
    slowed = {r["code"]: r for r in flagged.loc[2, "reasons"]}["slowed_down"]
    assert abs(pd.Timestamp(slowed["since"]) - pd.Timestamp(from_day(CUTOFF - 120))).days <= 14
    assert slowed["weekly_value_after"] < 0.5 * slowed["weekly_value_before"]
    assert "a week" in slowed["text"]
    # Same input, same list.
    again = AtRiskModel().fit(history, CUTOFF).flagged(history, CUTOFF)
    assert list(again.index) == list(flagged.index)


def test_drop_test_never_uses_orders_after_the_cut_off() -> None:
    history = synthetic_history(stores=30, products=20, days=400, seed=4).history
    cutoff = history.first_day + 300
    lines = history.lines.copy()
    future = lines["day"] > cutoff
    lines.loc[future, "amount"] *= 0.01
    lines.loc[future, "day"] = cutoff + 1
    scrambled = History(lines, history.stores, history.products)
    expected = drop_test(history.until(cutoff), cutoff)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(drop_test(history, cutoff), expected)
    pd.testing.assert_frame_equal(drop_test(scrambled, cutoff), expected)


def test_drop_test_on_no_orders_is_empty() -> None:
    history = _shops()
    assert drop_test(history, START - 10).empty
    with pytest.raises(KeyError):
        drop_test(history, CUTOFF).loc[999]


def test_lumpy_buying_needs_a_larger_fall() -> None:
    # Two stores with the same orders and the same fall in the last 150 days (every 10 days,
    # then every 25, at half the value); one buys evenly, the other buys big every sixth order.
    change = CUTOFF - 150
    days = list(range(START, change, 10)) + list(range(change, CUTOFF + 1, 25))
    even = [1000.0 if day < change else 500.0 for day in days]
    lumpy = [(5500.0 if i % 6 == 0 else 100.0) * e / 1000 for i, e in enumerate(even)]
    rows = _store_orders(1, days, even) + _store_orders(2, days, lumpy)
    test = drop_test(History(pd.DataFrame(rows)), CUTOFF)
    assert test.loc[1, "dispersion"] == pytest.approx(1.0)
    assert test.loc[1, "drop_llr"] >= DROP_LLR
    assert test.loc[2, "dispersion"] > 1.0
    assert test.loc[2, "drop_llr"] < test.loc[1, "drop_llr"]
