"""Whom a rep should call on a day, and why: the ranking behind the `call_list` tool.

Each candidate store gets five components in [0, 1], combined with fixed weights:

- due (0.35): how far into its usual ordering interval the store is (days since its last order
  / its median interval, full at 1.5 intervals), or the model's probability of an order within
  7 days, whichever is higher;
- value (0.20): expected order value (mean of its last three orders) against the largest on
  the list;
- credit (0.25): money overdue on invoices past their due date, more the later it is;
- at-risk (0.10): the at-risk model's probability, for stores it flagged;
- complaint (0.10): a complaint logged in the last 14 days.

Stored predictions give the rhythm, expected value and risk; the last order, overdue invoices
and complaints are read live, so a store that ordered this morning is not "due" any more.
Every entry carries reason codes with the numbers behind them, each reproducible with SQL on
the orders, invoices, payments and communications tables.
"""

from __future__ import annotations

import datetime as dt
import heapq
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from tools.db import IntArray
from tools.orders import last_sale_changes

WEIGHTS = {"due": 0.35, "value": 0.20, "credit": 0.25, "at_risk": 0.10, "complaint": 0.10}
COMPLAINT_DAYS = 14


# Everything the score needs, one row per store, in one statement: the stored next-order and
# at-risk predictions (only the fields scored; at-risk reasons are few), the last order,
# overdue invoices (the open-invoice index) and recent complaints. The last order comes from
# `store_last_sale` (refreshed with the rollups, migration 0012) plus the orders of the days
# changed since (`sales_changes`); a store whose stored date is not before the first changed day
# (or after `day`) is probed live, one index-only read of ix_orders_store_last_sale. Next-order
# predictions and overdue invoices match store ids with `= ANY(array)`, which lets the planner
# see how many there are: a rep's stores are probed one by one, a fleet's thousands matched
# against one read (ix_predictions_kind_store). At-risk predictions and the fortnight's
# complaints are few across the whole fleet (a few hundred at 10,000 stores): all of them are
# read (ix_predictions_kind_store, ix_communications_kind_time) and joined, which spares the
# planner two passes over a long array (4 -> 2.7 ms of planning for 1,000 ids, 23 -> 12 ms for
# 10,000).
_GATHERED = """
    WITH ids AS (SELECT DISTINCT unnest(CAST(:ids AS integer[])) AS id),
    nxt AS (
      SELECT store_id, probability,
             CAST(details ->> 'median_interval_days' AS float8) AS usual,
             CAST(details ->> 'expected_value' AS float8) AS expected,
             details ->> 'last_order_date' AS trained_last
      FROM predictions WHERE kind = 'next_order' AND store_id = ANY(CAST(:ids AS integer[]))),
    risk AS (
      SELECT store_id, probability, details -> 'reasons' AS reasons
      FROM predictions WHERE kind = 'at_risk'),
    credit AS (
      SELECT store_id, SUM(due_amount) AS overdue, MAX(:day - due_date) AS days_overdue,
             COUNT(*) AS invoices
      FROM invoices
      WHERE store_id = ANY(CAST(:ids AS integer[])) AND due_date < :day AND due_amount > 0
      GROUP BY store_id),
    complaints AS (
      SELECT store_id, COUNT(*) AS complaints, MAX(occurred_at)::date AS latest
      FROM communications
      WHERE kind = 'complaint'
        AND occurred_at >= CAST(:since AS date) AND occurred_at < CAST(:until AS date)
      GROUP BY store_id),
    recent AS (
      SELECT store_id, max(order_date) AS last_sale
      FROM orders
      WHERE CAST(:stored AS boolean) AND order_date >= CAST(:changed AS date)
        AND order_date <= :day AND status IN ('placed', 'delivered')
      GROUP BY store_id),
    gathered AS (
      SELECT ids.id AS store_id, nxt.store_id IS NOT NULL AS predicted,
             nxt.probability AS next_probability, nxt.usual, nxt.expected, nxt.trained_last,
             CASE WHEN CAST(:stored AS boolean) AND (m.last_sale IS NULL
                       OR (m.last_sale <= :day AND m.last_sale < CAST(:changed AS date)))
                  THEN greatest(m.last_sale, recent.last_sale)
                  ELSE (SELECT o.order_date FROM orders o
                        WHERE o.store_id = ids.id AND o.status IN ('placed', 'delivered')
                          AND o.order_date <= :day
                        ORDER BY o.order_date DESC LIMIT 1)
             END AS last_order,
             credit.overdue, credit.days_overdue, credit.invoices,
             risk.store_id IS NOT NULL AS flagged, risk.probability AS risk,
             risk.reasons AS risk_reasons, complaints.complaints,
             complaints.latest AS latest_complaint
      FROM ids
      LEFT JOIN nxt ON nxt.store_id = ids.id
      LEFT JOIN risk ON risk.store_id = ids.id
      LEFT JOIN credit ON credit.store_id = ids.id
      LEFT JOIN complaints ON complaints.store_id = ids.id
      LEFT JOIN store_last_sale m ON m.store_id = ids.id
      LEFT JOIN recent ON recent.store_id = ids.id)
"""

_COLUMNS = (
    "store_id, predicted, next_probability, usual, expected, trained_last, last_order, overdue, "
    "days_overdue, invoices, flagged, risk, risk_reasons, complaints, latest_complaint"
)

GATHER_SQL = text(_GATHERED + f"SELECT {_COLUMNS} FROM gathered")

# The ranking's first pass, in the database: `score_store`'s arithmetic on every gathered row
# (float8, same operations in the same order), keeping only the stores that can reach the top
# `limit`: those scoring within 0.0001 of the limit-th best. Python's score is the same value
# rounded to 4 places, so this set holds Python's top `limit` whatever the rounding, and only
# those few rows (not a fleet's thousands) are sent back, scored again and explained in Python.
# The tests compare both scores on every store.
RANK_SQL = text(
    _GATHERED
    + """,
    due AS (
      SELECT g.*, max(coalesce(g.expected, 0)) OVER () AS max_value,
             CASE WHEN g.predicted AND g.usual <> 0 AND g.last_order IS NOT NULL THEN
               CASE WHEN to_char(g.last_order, 'YYYY-MM-DD') COLLATE "C"
                         <= coalesce(g.trained_last, '') COLLATE "C"
                    THEN greatest(r.due, coalesce(g.next_probability, 0))
                    ELSE r.due END
             ELSE 0 END AS due
      FROM gathered g
      CROSS JOIN LATERAL (
        SELECT CASE WHEN CAST(:day - g.last_order AS float8) / greatest(g.usual, 1.0) >= 0.8
                    THEN least(CAST(:day - g.last_order AS float8)
                               / greatest(g.usual, 1.0) / 1.5, 1.0)
                    ELSE 0 END AS due) r),
    parts AS (
      SELECT due.*,
             CASE WHEN due.expected <> 0 AND due.due > 0
                  THEN least(due.expected / greatest(due.max_value, 1.0), 1.0)
                  ELSE 0 END AS value_part,
             CASE WHEN due.overdue > 0
                  THEN least(1.0, 0.5 + CAST(due.days_overdue AS float8) / 120.0)
                  ELSE 0 END AS credit_part,
             CASE WHEN due.flagged THEN coalesce(due.risk, 0) ELSE 0 END AS risk_part,
             CASE WHEN due.complaints > 0 THEN 1.0 ELSE 0 END AS complaint_part,
             (due.due >= 0.5 OR (due.expected <> 0 AND due.due > 0) OR due.overdue > 0
              OR due.flagged OR due.complaints > 0) AS listed
      FROM due),
    scored AS (
      SELECT parts.*,
             CAST(:w_due AS float8) * parts.due + CAST(:w_value AS float8) * parts.value_part
             + CAST(:w_credit AS float8) * parts.credit_part
             + CAST(:w_at_risk AS float8) * parts.risk_part
             + CAST(:w_complaint AS float8) * parts.complaint_part AS score
      FROM parts WHERE parts.listed),
    cutoff AS (
      SELECT score FROM scored WHERE score > 0
      ORDER BY score DESC LIMIT 1 OFFSET CAST(:offset AS integer))
    SELECT """
    + _COLUMNS
    + """, max_value, score
    FROM scored
    WHERE score > 0 AND score >= coalesce((SELECT score FROM cutoff), 0) - 0.0001
    """
)

# The columns of a gathered row, by name.
FIELDS = (
    "store_id",
    "predicted",
    "next_probability",
    "usual",
    "expected",
    "trained_last",
    "last_order",
    "overdue",
    "days_overdue",
    "invoices",
    "flagged",
    "risk",
    "risk_reasons",
    "complaints",
    "latest_complaint",
)


def gather(session: Session, store_ids: list[int], day: dt.date) -> dict[int, dict[str, Any]]:
    """Per store (keys of `FIELDS`): rhythm, value and risk from the stored predictions
    (None without one); last order, overdue credit and recent complaints read live."""
    if not store_ids:
        return {}
    rows = session.execute(GATHER_SQL, _parameters(session, store_ids, day)).all()
    return {row[0]: dict(zip(FIELDS, row, strict=True)) for row in rows}


def score_store(
    info: dict[str, Any], day: dt.date, max_value: float, currency: str, *, explain: bool = True
) -> dict[str, Any]:
    """Score, components and reasons for one store (a row of `gather`).

    Without `explain` only `score` and `listed` (whether any reason would be given) are
    returned: ranking thousands of stores needs only those, and the few listed are explained.
    """
    reasons: list[dict[str, Any]] = []
    listed = False
    due = value = credit = risk = complaint = 0.0
    usual = info["usual"]
    last = info["last_order"]
    expected = info["expected"]
    if info["predicted"] and usual and last:
        since = (day - last).days
        ratio = since / max(float(usual), 1.0)
        due = min(ratio / 1.5, 1.0) if ratio >= 0.8 else 0.0
        # The 7-day probability is "as of" training; it only counts if nothing was ordered since.
        if last.isoformat() <= (info["trained_last"] or ""):
            due = max(due, float(info["next_probability"] or 0.0))
        if due >= 0.5:
            listed = True
            if explain:
                reasons.append(
                    {
                        "code": "due_to_order",
                        "text": (
                            f"usually orders every {usual:.0f} days, last order {since} days ago"
                        ),
                        "usual_interval_days": usual,
                        "days_since_last_order": since,
                        "last_order_date": last.isoformat(),
                    }
                )
    if expected and due > 0:
        value = min(float(expected) / max(max_value, 1.0), 1.0)
        listed = True
        if explain:
            reasons.append(
                {
                    "code": "expected_value",
                    "text": f"typical order {currency} {float(expected):,.0f}",
                    "expected_value": float(expected),
                }
            )
    if info["overdue"] is not None and float(info["overdue"]) > 0:
        amount = float(info["overdue"])
        days = int(info["days_overdue"])
        credit = min(1.0, 0.5 + days / 120)
        listed = True
        if explain:
            reasons.append(
                {
                    "code": "overdue_credit",
                    "text": f"{currency} {amount:,.0f} overdue {days} days",
                    "overdue_amount": round(amount, 2),
                    "days_overdue": days,
                    "invoices": int(info["invoices"]),
                }
            )
    if info["flagged"]:
        risk = float(info["risk"] or 0.0)
        listed = True
        if explain:
            texts = [r["text"] for r in info["risk_reasons"] or []]
            reasons.append(
                {
                    "code": "at_risk",
                    "text": "ordering has dropped: " + "; ".join(texts)
                    if texts
                    else "ordering has dropped",
                    "risk": round(risk, 3),
                }
            )
    if info["complaints"]:
        complaint = 1.0
        listed = True
        if explain:
            n = int(info["complaints"])
            latest = info["latest_complaint"].isoformat()
            reasons.append(
                {
                    "code": "complaint",
                    "text": (
                        f"{n} complaint{'s' if n > 1 else ''} in the last {COMPLAINT_DAYS} days "
                        f"(latest {latest})"
                    ),
                    "complaints": n,
                    "latest": latest,
                }
            )
    parts = {"due": due, "value": value, "credit": credit, "at_risk": risk, "complaint": complaint}
    score = round(sum(WEIGHTS[k] * v for k, v in parts.items()), 4)
    if not explain:
        return {"score": score, "listed": listed}
    return {
        "score": score,
        "components": {k: round(v, 3) for k, v in parts.items()},
        "reasons": reasons,
        "listed": listed,
    }


def _ids_literal(store_ids: list[int] | IntArray) -> IntArray:
    return store_ids if isinstance(store_ids, IntArray) else IntArray.of(store_ids)


def _has_ids(store_ids: list[int] | IntArray) -> bool:
    return store_ids.size > 0 if isinstance(store_ids, IntArray) else bool(store_ids)


def _parameters(session: Session, store_ids: list[int] | IntArray, day: dt.date) -> dict[str, Any]:
    # The earliest order day changed since the rollups were refreshed (none: the day after
    # `day`, so no order is read live). A value, not a subquery, so that the planner reads those
    # days' orders by date. When changes go back too far (`tools.orders.last_sale_changes`)
    # every store is probed.
    changed, stored = last_sale_changes(session, day)
    return {
        "ids": _ids_literal(store_ids),
        "day": day,
        "since": day - dt.timedelta(days=COMPLAINT_DAYS),
        "until": day + dt.timedelta(days=1),
        "changed": changed if changed is not None else day + dt.timedelta(days=1),
        "stored": stored,
    }


def candidates(
    session: Session, store_ids: list[int] | IntArray, day: dt.date, limit: int
) -> tuple[dict[int, dict[str, Any]], float, dict[int, float]]:
    """The gathered rows (keys of `FIELDS`) of the stores that can make the top `limit`, the
    largest expected value over all `store_ids`, and each candidate's unrounded score as the
    database computed it (see `RANK_SQL`)."""
    if not _has_ids(store_ids) or limit < 1:
        return {}, 0.0, {}
    weights = {f"w_{name}": float(weight) for name, weight in WEIGHTS.items()}
    rows = session.execute(
        RANK_SQL, {**_parameters(session, store_ids, day), **weights, "offset": limit - 1}
    ).all()
    data = {row[0]: dict(zip(FIELDS, row, strict=False)) for row in rows}
    max_value = float(rows[0][len(FIELDS)] or 0) if rows else 0.0
    return data, max_value, {row[0]: float(row[len(FIELDS) + 1]) for row in rows}


def rank(
    session: Session,
    store_ids: list[int] | IntArray,
    day: dt.date,
    limit: int,
    currency: str = "Rs",
) -> list[tuple[int, dict[str, Any]]]:
    """The `limit` highest-scoring stores with at least one reason, best first.

    The database scores every store and returns the few that can make the list
    (`candidates`); they are scored again here, ranked and explained.
    """
    data, max_value, _ = candidates(session, store_ids, day, limit)
    scored = []
    for store_id, info in data.items():
        entry = score_store(info, day, max_value, currency, explain=False)
        if entry["listed"] and entry["score"] > 0:
            scored.append((entry["score"], store_id))
    top = heapq.nsmallest(limit, scored, key=lambda item: (-item[0], item[1]))
    return [
        (store_id, score_store(data[store_id], day, max_value, currency)) for _, store_id in top
    ]
