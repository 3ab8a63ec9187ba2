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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from tools.db import IntArray
from tools.orders import last_sale_changes

WEIGHTS = {"due": 0.35, "value": 0.20, "credit": 0.25, "at_risk": 0.10, "complaint": 0.10}
COMPLAINT_DAYS = 14


# Everything the score needs, per store: the stored next-order and at-risk predictions (only
# the fields scored), the last order, overdue invoices and recent complaints.
#
# The stores considered are those of a list of reps, or every active store, or a list of ids.
# What does not change by the day comes from `call_list_stores` (migration 0017): one narrow
# row per store with its rep, whether it is active, its newest next-order and at-risk
# predictions' figures and its oldest unpaid invoice's due date, rewritten by triggers
# whenever a store, a prediction or an invoice changes. A team or the fleet is one scan of it:
# its thousands of ids are neither sent nor planned, and neither `stores`, `predictions` nor
# `invoices` is read to rank them.
#
# The listed stores' overdue amounts and invoices are read from the late open invoices (for a
# few stores, a probe of ix_invoices_open each); the fortnight's complaints are few across the
# whole fleet (a few hundred at 10,000 stores): all of them are read and joined. The last
# order comes from `store_last_sale` (refreshed with the rollups, migration 0012) plus the
# orders of the days changed since (`sales_changes`); a store whose stored date is not before
# the first changed day (or after `day`) is probed live, one index-only read of
# ix_orders_store_last_sale.
_SOURCES = """
    WITH credit AS (
      SELECT store_id, @CREDIT@
      FROM invoices
      WHERE due_date < :day AND due_amount > 0 @AMONG@
      GROUP BY store_id),
    complaints AS (
      SELECT store_id, COUNT(*) AS complaints, MAX(occurred_at)::date AS latest
      FROM communications
      WHERE kind = 'complaint'
        AND occurred_at >= CAST(:since AS date) AND occurred_at < CAST(:until AS date)
        @AMONG_FEW@
      GROUP BY store_id),
    recent AS (
      SELECT store_id, max(order_date) AS last_sale
      FROM orders
      WHERE CAST(:stored AS boolean) AND order_date >= CAST(:changed AS date)
        AND order_date <= :day AND status IN ('placed', 'delivered')
      GROUP BY store_id)"""

# One row per store considered (`@FROM@`, its stored inputs as `c`, its id `@ID@`): the fields
# scored and `@FIELDS@`. A fenced subquery (OFFSET 0): the ranking uses each value several
# times, and a flattened query would compute the last order (a CASE around a subquery) once per
# use.
_ROWS = """
      SELECT @ID@ AS store_id, coalesce(c.predicted, false) AS predicted,
             c.next_probability, c.usual, c.expected, c.trained_last,
             CASE WHEN CAST(:stored AS boolean) AND (m.last_sale IS NULL
                       OR (m.last_sale <= :day AND m.last_sale < CAST(:changed AS date)))
                  THEN greatest(m.last_sale, recent.last_sale)
                  ELSE (SELECT o.order_date FROM orders o
                        WHERE o.store_id = @ID@ AND o.status IN ('placed', 'delivered')
                          AND o.order_date <= :day
                        ORDER BY o.order_date DESC LIMIT 1)
             END AS last_order,
             @FIELDS@
      FROM @FROM@
      LEFT JOIN credit ON credit.store_id = @ID@
      LEFT JOIN complaints ON complaints.store_id = @ID@
      LEFT JOIN store_last_sale m ON m.store_id = @ID@
      LEFT JOIN recent ON recent.store_id = @ID@
      WHERE @WHERE@
      OFFSET 0"""

_COLUMNS = (
    "store_id, predicted, next_probability, usual, expected, trained_last, last_order, overdue, "
    "days_overdue, invoices, flagged, risk, risk_reasons, complaints, latest_complaint"
)

# The ranking's first pass, in the database: `score_store`'s arithmetic on every store
# (float8, same operations in the same order), keeping only the stores that can reach the top
# `limit`: those scoring within 0.0001 of the limit-th best. Python's score is the same value
# rounded to 4 places, so this set holds Python's top `limit` whatever the rounding, and only
# those few (not a fleet's thousands) are sent back, gathered (`GATHER_SQL`), scored again and
# explained in Python. The tests compare both scores on every store.
#
# Each store's row carries only what is scored, and only its id and score are kept for the
# cut: a fleet's rows are neither widened with what explains them (at-risk reasons, amounts,
# dates) nor stored whole. The largest expected value (the value part's scale) is the first of
# ix_call_list_stores_expected among the stores considered, not a pass over all of them; it
# and the number of stores considered come back even when no store is listed.
_RANKED = (
    """,
    totals AS (
      SELECT (@COUNT@) AS considered,
             greatest(coalesce((
               SELECT c.expected FROM call_list_stores c
               WHERE c.expected IS NOT NULL AND @IN_SCOPE@
               ORDER BY c.expected DESC LIMIT 1), 0), 0) AS max_value),
    due AS (
      SELECT g.*,
             CASE WHEN g.predicted AND g.usual <> 0 AND g.last_order IS NOT NULL THEN
               CASE WHEN g.last_order <= g.trained_last
                    THEN greatest(r.due, coalesce(g.next_probability, 0))
                    ELSE r.due END
             ELSE 0 END AS due
      FROM ("""
    + _ROWS.replace(
        "@FIELDS@",
        # Money is overdue on `day` when the oldest unpaid invoice was due before it.
        "c.oldest_open_due < :day AS owing, :day - c.oldest_open_due AS days_overdue, "
        "coalesce(c.flagged, false) AS flagged, c.risk, complaints.complaints",
    )
    + """) g
      CROSS JOIN LATERAL (
        SELECT CASE WHEN CAST(:day - g.last_order AS float8) / greatest(g.usual, 1.0) >= 0.8
                    THEN least(CAST(:day - g.last_order AS float8)
                               / greatest(g.usual, 1.0) / 1.5, 1.0)
                    ELSE 0 END AS due) r
      OFFSET 0),
    scored AS MATERIALIZED (
      SELECT due.store_id,
             CAST(:w_due AS float8) * due.due
             + CAST(:w_value AS float8)
               * CASE WHEN due.expected <> 0 AND due.due > 0
                      THEN least(due.expected / greatest(t.max_value, 1.0), 1.0)
                      ELSE 0 END
             + CAST(:w_credit AS float8)
               * CASE WHEN due.owing
                      THEN least(1.0, 0.5 + CAST(due.days_overdue AS float8) / 120.0)
                      ELSE 0 END
             + CAST(:w_at_risk AS float8)
               * CASE WHEN due.flagged THEN coalesce(due.risk, 0) ELSE 0 END
             + CAST(:w_complaint AS float8)
               * CASE WHEN due.complaints > 0 THEN 1.0 ELSE 0 END AS score
      FROM due CROSS JOIN totals t
      WHERE due.due >= 0.5 OR (due.expected <> 0 AND due.due > 0) OR due.owing
            OR due.flagged OR due.complaints > 0),
    cutoff AS (
      SELECT score FROM scored WHERE score > 0
      ORDER BY score DESC LIMIT 1 OFFSET CAST(:offset AS integer))
    SELECT t.max_value, t.considered, c.store_id, c.score
    FROM totals t
    LEFT JOIN LATERAL (
      SELECT store_id, score FROM scored
      WHERE score > 0 AND score >= coalesce((SELECT score FROM cutoff), 0) - 0.0001) c ON true
"""
)


@dataclass(frozen=True)
class RepStores:
    """The active stores of `reps` (None: every active store), named by their reps rather
    than listed (see `_SOURCES`)."""

    reps: list[int] | None


Stores = list[int] | IntArray | RepStores

# How each kind of scope names its stores: the rows of `call_list_stores` (as `c`) and the
# store id (`@ID@`), which late invoices are read for them (`@AMONG@`: for a few, one probe of
# ix_invoices_open each; for many, a filter on the range), which complaints (`@AMONG_FEW@`:
# listed stores' only, the fortnight's few hundred otherwise), how many there are
# (`@COUNT@`) and which rows of `call_list_stores` are among them (`@IN_SCOPE@`).
_SCOPE_IDS = "CAST(:ids AS integer[])"
_SCOPE_REPS = "c.is_active AND c.rep_id = ANY(CAST(:reps AS integer[]))"
_SCOPES: dict[str, dict[str, str]] = {
    "ids": {
        "@FROM@": f"(SELECT DISTINCT unnest({_SCOPE_IDS}) AS id) ids "
        "LEFT JOIN call_list_stores c ON c.store_id = ids.id",
        "@ID@": "ids.id",
        "@WHERE@": "true",
        "@AMONG@": f"AND store_id = ANY({_SCOPE_IDS})",
        "@AMONG_FEW@": f"AND store_id = ANY({_SCOPE_IDS})",
        "@COUNT@": f"SELECT count(DISTINCT i) FROM unnest({_SCOPE_IDS}) i",
        "@IN_SCOPE@": f"c.store_id = ANY({_SCOPE_IDS})",
    },
    "reps": {
        "@FROM@": "call_list_stores c",
        "@ID@": "c.store_id",
        "@WHERE@": _SCOPE_REPS,
        "@AMONG@": "AND store_id IN "
        f"(SELECT c.store_id FROM call_list_stores c WHERE {_SCOPE_REPS})",
        "@AMONG_FEW@": "",
        "@COUNT@": f"SELECT count(*) FROM call_list_stores c WHERE {_SCOPE_REPS}",
        "@IN_SCOPE@": _SCOPE_REPS,
    },
    "all": {
        "@FROM@": "call_list_stores c",
        "@ID@": "c.store_id",
        "@WHERE@": "c.is_active",
        "@AMONG@": "",
        "@AMONG_FEW@": "",
        "@COUNT@": "SELECT count(*) FROM call_list_stores c WHERE c.is_active",
        "@IN_SCOPE@": "c.is_active",
    },
}


def _statements(tail: str, credit: str) -> dict[str, Any]:
    """`tail` after the sources, for each kind of scope, with `credit` the late invoices'
    figures per store."""
    statements = {}
    for name, parts in _SCOPES.items():
        sql = (_SOURCES + tail).replace("@CREDIT@", credit)
        for key, value in parts.items():
            sql = sql.replace(key, value)
        statements[name] = text(sql)
    return statements


GATHER_SQL = _statements(
    "\n    SELECT "
    + _COLUMNS
    + " FROM ("
    + _ROWS.replace(
        "@FIELDS@",
        "credit.overdue, credit.days_overdue, credit.invoices, "
        "coalesce(c.flagged, false) AS flagged, c.risk, "
        # The reasons of the at-risk prediction the row holds (the newest).
        "CASE WHEN c.flagged THEN (SELECT p.details -> 'reasons' FROM predictions p "
        "WHERE p.kind = 'at_risk' AND p.store_id = @ID@ ORDER BY p.id DESC LIMIT 1) END "
        "AS risk_reasons, complaints.complaints, complaints.latest AS latest_complaint",
    )
    + ") gathered",
    "SUM(due_amount) AS overdue, :day - MIN(due_date) AS days_overdue, COUNT(*) AS invoices",
)
# The ranking needs only how late each store's oldest unpaid invoice is, which it reads from
# `call_list_stores`; the few listed are gathered with their amounts and invoices.
RANK_SQL = _statements(
    _RANKED.replace("      LEFT JOIN credit ON credit.store_id = @ID@\n", ""),
    ":day - MIN(due_date) AS days_overdue",
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


def _scope(store_ids: Stores) -> str:
    if isinstance(store_ids, RepStores):
        return "all" if store_ids.reps is None else "reps"
    return "ids"


def gather(session: Session, store_ids: Stores, day: dt.date) -> dict[int, dict[str, Any]]:
    """Per store (keys of `FIELDS`): rhythm, value and risk from the stored predictions
    (None without one); last order, overdue credit and recent complaints read live."""
    if not _has_ids(store_ids):
        return {}
    return _gather(session, store_ids, _parameters(session, store_ids, day))


def _gather(
    session: Session, store_ids: Stores, parameters: dict[str, Any]
) -> dict[int, dict[str, Any]]:
    sql = GATHER_SQL[_scope(store_ids)]
    rows = session.execute(sql, {**parameters, **_stores_parameter(store_ids)}).all()
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
        trained_last = info["trained_last"]
        if trained_last is not None and last <= trained_last:
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


def _has_ids(store_ids: Stores) -> bool:
    if isinstance(store_ids, RepStores):
        return store_ids.reps is None or bool(store_ids.reps)
    return store_ids.size > 0 if isinstance(store_ids, IntArray) else bool(store_ids)


def _stores_parameter(store_ids: Stores) -> dict[str, Any]:
    if isinstance(store_ids, RepStores):
        reps = store_ids.reps
        return {} if reps is None else {"reps": IntArray.of(reps)}
    return {"ids": store_ids if isinstance(store_ids, IntArray) else IntArray.of(store_ids)}


def _parameters(session: Session, store_ids: Stores, day: dt.date) -> dict[str, Any]:
    # The earliest order day changed since the rollups were refreshed (none: the day after
    # `day`, so no order is read live). A value, not a subquery, so that the planner reads those
    # days' orders by date. When changes go back too far (`tools.orders.last_sale_changes`)
    # every store is probed.
    changed, stored = last_sale_changes(session, day)
    return {
        **_stores_parameter(store_ids),
        "day": day,
        "since": day - dt.timedelta(days=COMPLAINT_DAYS),
        "until": day + dt.timedelta(days=1),
        "changed": changed if changed is not None else day + dt.timedelta(days=1),
        "stored": stored,
    }


@dataclass(frozen=True)
class Candidates:
    """The first pass of the ranking (`RANK_SQL`)."""

    rows: dict[int, dict[str, Any]]
    """The gathered rows (keys of `FIELDS`) of the stores that can make the top `limit`."""
    max_value: float
    """The largest expected value over all the stores considered."""
    scores: dict[int, float]
    """Each candidate's unrounded score as the database computed it."""
    considered: int
    """How many stores were considered."""


def candidates(session: Session, store_ids: Stores, day: dt.date, limit: int) -> Candidates:
    """The stores that can make the top `limit`, scored in the database (see `RANK_SQL`)."""
    if not _has_ids(store_ids):
        return Candidates({}, 0.0, {}, 0)
    weights = {f"w_{name}": float(weight) for name, weight in WEIGHTS.items()}
    parameters = _parameters(session, store_ids, day)
    rows = session.execute(
        RANK_SQL[_scope(store_ids)],
        {**parameters, **weights, "offset": max(limit, 1) - 1},
    ).all()
    # Every row starts with the totals; without a listed store, one row of totals only.
    max_value, considered = float(rows[0][0] or 0), int(rows[0][1])
    scores = {row[2]: float(row[3]) for row in rows if row[2] is not None} if limit >= 1 else {}
    # The few candidates' rows, with what explains them, read by their ids (the same sources,
    # the same changed days).
    data = _gather(session, list(scores), parameters) if scores else {}
    return Candidates(data, max_value, scores, considered)


def ranked(
    session: Session,
    store_ids: Stores,
    day: dt.date,
    limit: int,
    currency: str = "Rs",
) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """The `limit` highest-scoring stores with at least one reason, best first, and how many
    stores were considered.

    The database scores every store and returns the few that can make the list
    (`candidates`); they are scored again here, ranked and explained.
    """
    first = candidates(session, store_ids, day, limit)
    data, max_value = first.rows, first.max_value
    scored = []
    for store_id, info in data.items():
        entry = score_store(info, day, max_value, currency, explain=False)
        if entry["listed"] and entry["score"] > 0:
            scored.append((entry["score"], store_id))
    top = heapq.nsmallest(limit, scored, key=lambda item: (-item[0], item[1]))
    return [
        (store_id, score_store(data[store_id], day, max_value, currency)) for _, store_id in top
    ], first.considered


def rank(
    session: Session,
    store_ids: Stores,
    day: dt.date,
    limit: int,
    currency: str = "Rs",
) -> list[tuple[int, dict[str, Any]]]:
    """The `limit` highest-scoring stores with at least one reason, best first (`ranked`)."""
    return ranked(session, store_ids, day, limit, currency)[0]
