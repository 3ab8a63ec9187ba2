"""`train_all`: versioned model files, metrics, predictions replaced, same seed same models."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from forecasting.next_order import BasketModel, NextOrderModel
from forecasting.train import KINDS, TrainingError, train_all
from tests.forecasting.conftest import Trained
from tests.forecasting.factories import synthetic_history


def test_training_writes_every_kind_of_prediction_and_versioned_files(
    tdb: Session, trained: Trained
) -> None:
    counts = dict(tdb.execute(text("SELECT kind, count(*) FROM predictions GROUP BY kind")).all())
    assert set(counts) == set(KINDS)
    assert counts["next_order"] == trained.result.predictions["next_order"]
    # Every store with two or more orders gets a next-order prediction.
    eligible = tdb.execute(
        text(
            "SELECT count(*) FROM (SELECT store_id FROM orders GROUP BY store_id "
            "HAVING count(DISTINCT order_date) >= 2) s"
        )
    ).scalar()
    assert counts["next_order"] == eligible
    directory = trained.result.directory
    for name in ("next_order", "basket", "demand", "at_risk", "upsell"):
        assert (directory / f"{name}.joblib").stat().st_size > 0
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["next_order"]["metrics"]["next_date/mean_interval"]["mae_days"] >= 0
    assert "next_basket/own_most_bought" in metrics["basket"]["metrics"]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["version"] == trained.result.version


def test_retraining_replaces_the_previous_version(
    tdb: Session, trained: Trained, tmp_path: Path
) -> None:
    result = train_all(tdb.connection(), home=tmp_path, seed=0, evaluate=False)
    versions = tdb.execute(text("SELECT DISTINCT model_version FROM predictions")).scalars().all()
    assert versions == [result.version]
    assert (tmp_path / "models" / result.version / "manifest.json").exists()


def test_training_an_empty_database_says_what_to_do(db: Session, tmp_path: Path) -> None:
    db.execute(text("DELETE FROM order_lines"))
    with pytest.raises(TrainingError, match="mangalm demo"):
        train_all(db.connection(), home=tmp_path)


def test_same_seed_gives_the_same_predictions() -> None:
    history = synthetic_history(stores=40, products=20, days=300, seed=5).history
    cutoff = history.last_day
    first = NextOrderModel(seed=7).fit(history, cutoff).predict(history, cutoff)
    second = NextOrderModel(seed=7).fit(history, cutoff).predict(history, cutoff)
    pd.testing.assert_frame_equal(first, second)
    basket_a = BasketModel(seed=7).fit(history, cutoff).predict(history, cutoff)
    basket_b = BasketModel(seed=7).fit(history, cutoff).predict(history, cutoff)
    pd.testing.assert_frame_equal(basket_a, basket_b)
