"""`call_list_stores`: each store's call-list inputs, kept by triggers, always as its sources
have them (stores, their newest next-order and at-risk predictions, their unpaid invoices)."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from tests.forecasting.conftest import Trained
from tools.models import Prediction, Store

# Written independently of the triggers: every store, its rep and whether it is active, and the
# figures of its newest prediction of each kind, read from the prediction's details.
SOURCES = text(
    """
    SELECT s.id, s.rep_id, s.is_active, nxt.id IS NOT NULL,
           nxt.probability, CAST(nxt.details ->> 'median_interval_days' AS float8),
           CAST(nxt.details ->> 'expected_value' AS float8),
           CAST(nxt.details ->> 'last_order_date' AS date),
           r.id IS NOT NULL, r.probability,
           (SELECT min(i.due_date) FROM invoices i
            WHERE i.store_id = s.id AND i.amount > i.paid_amount)
    FROM stores s
    LEFT JOIN (SELECT DISTINCT ON (store_id) * FROM predictions WHERE kind = 'next_order'
               ORDER BY store_id, id DESC) nxt ON nxt.store_id = s.id
    LEFT JOIN (SELECT DISTINCT ON (store_id) * FROM predictions WHERE kind = 'at_risk'
               ORDER BY store_id, id DESC) r ON r.store_id = s.id
    ORDER BY s.id
    """
)
STORED = text(
    "SELECT store_id, rep_id, is_active, predicted, next_probability, usual, expected, "
    "trained_last, flagged, risk, oldest_open_due FROM call_list_stores ORDER BY store_id"
)


def _check(session: Session) -> list[tuple[object, ...]]:
    session.flush()
    stored = [tuple(row) for row in session.execute(STORED)]
    assert stored == [tuple(row) for row in session.execute(SOURCES)]
    return stored


def test_the_stored_rows_match_their_sources_after_training(tdb: Session, trained: Trained) -> None:
    rows = _check(tdb)
    stores = tdb.scalar(select(text("count(*)")).select_from(Store))
    assert len(rows) == stores
    assert sum(1 for row in rows if row[3]) == trained.result.predictions["next_order"]
    assert sum(1 for row in rows if row[8]) == trained.result.predictions["at_risk"]


def test_the_stored_rows_follow_stores_and_predictions(tdb: Session, trained: Trained) -> None:
    """Reassigned, deactivated, new and deleted stores; predictions added, changed, deleted
    and truncated: after each statement the rows are as their sources have them."""
    reps = trained.loaded.reps
    stores = list(tdb.scalars(select(Store.id).order_by(Store.id)).all())
    tdb.execute(update(Store).where(Store.id == stores[0]).values(rep_id=reps[1]))
    tdb.execute(update(Store).where(Store.id.in_(stores[1:4])).values(is_active=False))
    tdb.execute(update(Store).where(Store.id == stores[4]).values(name="Renamed Stores"))
    _check(tdb)
    new = Store(code="CL-NEW-1", name="Call List New Mart", rep_id=reps[0])
    tdb.add(new)
    _check(tdb)
    tdb.add(
        Prediction(
            kind="next_order",
            store_id=new.id,
            probability=0.4,
            model_version="manual",
            details={
                "median_interval_days": 9.5,
                "expected_value": 1234.5,
                "last_order_date": "2025-01-02",
            },
        )
    )
    tdb.add(
        Prediction(
            kind="at_risk", store_id=new.id, probability=0.7, model_version="manual", details={}
        )
    )
    row = [r for r in _check(tdb) if r[0] == new.id][0]
    assert row[3:] == (True, 0.4, 9.5, 1234.5, dt.date(2025, 1, 2), True, 0.7, None)
    # A newer next-order prediction for a store that has one: the newest counts.
    tdb.add(
        Prediction(
            kind="next_order",
            store_id=new.id,
            probability=0.9,
            model_version="manual",
            details={"median_interval_days": 3.0, "expected_value": 10.0},
        )
    )
    row = [r for r in _check(tdb) if r[0] == new.id][0]
    assert row[3:8] == (True, 0.9, 3.0, 10.0, None)
    tdb.execute(
        text(
            "UPDATE predictions SET details = details || '{\"expected_value\": 77.0}' "
            "WHERE kind = 'next_order' AND store_id = :s"
        ),
        {"s": stores[5]},
    )
    tdb.execute(
        text(
            "DELETE FROM predictions WHERE kind = 'at_risk' AND store_id IN "
            "(SELECT store_id FROM predictions WHERE kind = 'at_risk' LIMIT 2)"
        )
    )
    tdb.execute(
        text("UPDATE predictions SET store_id = :b WHERE kind = 'next_order' AND store_id = :a"),
        {"a": stores[6], "b": new.id},
    )
    _check(tdb)
    tdb.execute(text("DELETE FROM predictions WHERE store_id = :s"), {"s": new.id})
    tdb.execute(text("DELETE FROM stores WHERE id = :s"), {"s": new.id})
    _check(tdb)
    tdb.execute(text("TRUNCATE predictions"))
    rows = _check(tdb)
    assert not any(row[3] or row[8] for row in rows)


def test_the_oldest_unpaid_invoice_follows_invoices_and_payments(
    tdb: Session, trained: Trained
) -> None:
    """Invoices issued, paid in part and in full (payments added and removed), moved to
    another store, re-dated and deleted: the oldest unpaid one is always the invoices'."""
    store = trained.overdue_store
    other = trained.complaint_store
    today = trained.today

    def oldest(store_id: int) -> dt.date | None:
        rows = {row[0]: row for row in _check(tdb)}
        return rows[store_id][10]

    owed = tdb.execute(
        text(
            "SELECT id, due_date, amount FROM invoices "
            "WHERE store_id = :s AND amount > paid_amount ORDER BY due_date LIMIT 1"
        ),
        {"s": store},
    ).one()
    assert oldest(store) == owed.due_date
    issued = tdb.execute(
        text(
            "INSERT INTO invoices (number, store_id, invoice_date, due_date, amount) "
            "VALUES ('INV-CL-1', :s, :i, :d, 500) RETURNING id"
        ),
        {"s": store, "i": today - dt.timedelta(days=400), "d": today - dt.timedelta(days=370)},
    ).scalar_one()
    assert oldest(store) == today - dt.timedelta(days=370)
    tdb.execute(
        text(
            "INSERT INTO payments (invoice_id, store_id, paid_on, amount, method) "
            "VALUES (:v, :s, :d, 200, 'cash')"
        ),
        {"v": issued, "s": store, "d": today},
    )
    assert oldest(store) == today - dt.timedelta(days=370)  # paid in part: still owed
    tdb.execute(
        text(
            "INSERT INTO payments (invoice_id, store_id, paid_on, amount, method) "
            "VALUES (:v, :s, :d, 300, 'cash')"
        ),
        {"v": issued, "s": store, "d": today},
    )
    assert oldest(store) == owed.due_date  # paid in full
    tdb.execute(text("DELETE FROM payments WHERE invoice_id = :v AND amount = 300"), {"v": issued})
    assert oldest(store) == today - dt.timedelta(days=370)
    tdb.execute(
        text("UPDATE invoices SET due_date = :d WHERE id = :v"),
        {"v": issued, "d": today + dt.timedelta(days=5)},
    )
    assert oldest(store) == owed.due_date
    tdb.execute(text("UPDATE invoices SET store_id = :o WHERE id = :v"), {"v": issued, "o": other})
    _check(tdb)
    tdb.execute(text("DELETE FROM payments WHERE invoice_id = :v"), {"v": issued})
    tdb.execute(text("DELETE FROM invoices WHERE id = :v"), {"v": issued})
    _check(tdb)
    tdb.execute(text("TRUNCATE payments"))
    _check(tdb)


def test_concurrent_payments_of_one_store_both_count(trained: Trained) -> None:
    """Two transactions paying two invoices of the same store at once: the second waits for
    the first and its row has both payments (not only its own)."""
    engine = trained.engine
    store = trained.complaint_store
    today = trained.today
    with engine.begin() as conn:
        first, second = (
            conn.execute(
                text(
                    "INSERT INTO invoices (number, store_id, invoice_date, due_date, amount) "
                    "VALUES (:n, :s, :i, :d, 100) RETURNING id"
                ),
                {
                    "n": f"INV-CL-RACE-{k}",
                    "s": store,
                    "i": today - dt.timedelta(days=500 + k),
                    "d": today - dt.timedelta(days=480 + k),
                },
            ).scalar_one()
            for k in (1, 2)
        )
    pay = text(
        "INSERT INTO payments (invoice_id, store_id, paid_on, amount, method) "
        "VALUES (:v, :s, :d, 100, 'cash')"
    )
    oldest = text("SELECT oldest_open_due FROM call_list_stores WHERE store_id = :s")
    try:
        with engine.connect() as one, engine.connect() as two:
            one.begin()
            two.begin()
            one.execute(pay, {"v": first, "s": store, "d": today})
            waiting = threading.Thread(
                target=lambda: two.execute(pay, {"v": second, "s": store, "d": today})
            )
            waiting.start()
            waiting.join(timeout=1.0)
            assert waiting.is_alive()  # blocked on the first transaction's row
            one.commit()
            waiting.join(timeout=30)
            assert not waiting.is_alive()
            two.commit()
        with engine.connect() as conn:
            stored = conn.execute(oldest, {"s": store}).scalar()
            truth = conn.execute(
                text(
                    "SELECT min(due_date) FROM invoices "
                    "WHERE store_id = :s AND amount > paid_amount"
                ),
                {"s": store},
            ).scalar()
        assert stored == truth
        assert stored is None or stored > today - dt.timedelta(days=480)
    finally:
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM payments WHERE invoice_id IN (:a, :b)"),
                {"a": first, "b": second},
            )
            conn.execute(
                text("DELETE FROM invoices WHERE id IN (:a, :b)"), {"a": first, "b": second}
            )
