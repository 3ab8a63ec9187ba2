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

WEIGHTS = {"due": 0.35, "value": 0.20, "credit": 0.25, "at_risk": 0.10, "complaint": 0.10}
COMPLAINT_DAYS = 14


def _rows(session: Session, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(text(sql), params).mappings().all()]


def gather(session: Session, store_ids: list[int], day: dt.date) -> dict[int, dict[str, Any]]:
    """Per store: rhythm, value and risk from predictions; last order, credit, complaints live."""
    data: dict[int, dict[str, Any]] = {s: {} for s in store_ids}
    if not store_ids:
        return data
    for r in _rows(
        session,
        "SELECT store_id, kind, predicted_date, probability, details FROM predictions "
        "WHERE store_id = ANY(:ids) AND kind IN ('next_order', 'at_risk')",
        ids=store_ids,
    ):
        data[r["store_id"]][r["kind"]] = r
    for r in _rows(
        session,
        # One probe of ix_orders_store_date per store, not every order of every store.
        "SELECT s.id AS store_id, l.order_date AS last_order "
        "FROM unnest(CAST(:ids AS integer[])) AS s (id) CROSS JOIN LATERAL ("
        "  SELECT order_date FROM orders WHERE store_id = s.id "
        "  AND status IN ('placed', 'delivered') AND order_date <= :day "
        "  ORDER BY order_date DESC LIMIT 1) l",
        ids=store_ids,
        day=day,
    ):
        data[r["store_id"]]["last_order"] = r["last_order"]
    for r in _rows(
        session,
        "SELECT store_id, SUM(due_amount) AS overdue, "
        "MAX(:day - due_date) AS days_overdue, COUNT(*) AS invoices FROM invoices "
        "WHERE store_id = ANY(:ids) AND due_date < :day AND due_amount > 0 "
        "GROUP BY store_id",
        ids=store_ids,
        day=day,
    ):
        data[r["store_id"]]["credit"] = r
    for r in _rows(
        session,
        "SELECT store_id, COUNT(*) AS complaints, MAX(occurred_at)::date AS latest "
        "FROM communications WHERE store_id = ANY(:ids) AND kind = 'complaint' "
        "AND occurred_at >= CAST(:since AS date) AND occurred_at < CAST(:until AS date) "
        "GROUP BY store_id",
        ids=store_ids,
        since=day - dt.timedelta(days=COMPLAINT_DAYS),
        until=day + dt.timedelta(days=1),
    ):
        data[r["store_id"]]["complaints"] = r
    return data


def score_store(
    info: dict[str, Any], day: dt.date, max_value: float, currency: str, *, explain: bool = True
) -> dict[str, Any]:
    """Components, score and reasons for one store.

    Without `explain` the reasons list stays empty and `listed` says whether there would be
    any: ranking thousands of stores needs only the scores, and the few listed are explained.
    """
    reasons: list[dict[str, Any]] = []
    listed = False
    parts = dict.fromkeys(WEIGHTS, 0.0)
    nxt = info.get("next_order")
    details = (nxt or {}).get("details") or {}
    usual = details.get("median_interval_days")
    last = info.get("last_order")
    expected = details.get("expected_value")
    if nxt and usual and last:
        since = (day - last).days
        ratio = since / max(float(usual), 1.0)
        due = min(ratio / 1.5, 1.0) if ratio >= 0.8 else 0.0
        # The 7-day probability is "as of" training; it only counts if nothing was ordered since.
        if last.isoformat() <= details.get("last_order_date", ""):
            due = max(due, float(nxt["probability"] or 0.0))
        parts["due"] = due
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
    if expected and parts["due"] > 0:
        parts["value"] = min(float(expected) / max(max_value, 1.0), 1.0)
        listed = True
        if explain:
            reasons.append(
                {
                    "code": "expected_value",
                    "text": f"typical order {currency} {float(expected):,.0f}",
                    "expected_value": float(expected),
                }
            )
    credit = info.get("credit")
    if credit and float(credit["overdue"]) > 0:
        amount = float(credit["overdue"])
        days = int(credit["days_overdue"])
        parts["credit"] = min(1.0, 0.5 + days / 120)
        listed = True
        if explain:
            reasons.append(
                {
                    "code": "overdue_credit",
                    "text": f"{currency} {amount:,.0f} overdue {days} days",
                    "overdue_amount": round(amount, 2),
                    "days_overdue": days,
                    "invoices": int(credit["invoices"]),
                }
            )
    risk = info.get("at_risk")
    if risk:
        parts["at_risk"] = float(risk["probability"] or 0.0)
        listed = True
        if explain:
            texts = [r["text"] for r in (risk.get("details") or {}).get("reasons", [])]
            reasons.append(
                {
                    "code": "at_risk",
                    "text": "ordering has dropped: " + "; ".join(texts)
                    if texts
                    else "ordering has dropped",
                    "risk": round(parts["at_risk"], 3),
                }
            )
    complaints = info.get("complaints")
    if complaints:
        parts["complaint"] = 1.0
        listed = True
        if explain:
            n = int(complaints["complaints"])
            reasons.append(
                {
                    "code": "complaint",
                    "text": (
                        f"{n} complaint{'s' if n > 1 else ''} in the last {COMPLAINT_DAYS} days "
                        f"(latest {complaints['latest'].isoformat()})"
                    ),
                    "complaints": n,
                    "latest": complaints["latest"].isoformat(),
                }
            )
    score = sum(WEIGHTS[k] * v for k, v in parts.items())
    return {
        "score": round(score, 4),
        "components": {k: round(v, 3) for k, v in parts.items()},
        "reasons": reasons,
        "listed": listed,
    }


def rank(
    session: Session, store_ids: list[int], day: dt.date, limit: int, currency: str = "Rs"
) -> list[tuple[int, dict[str, Any]]]:
    """The `limit` highest-scoring stores with at least one reason, best first."""
    data = gather(session, store_ids, day)
    values = [
        float(((info.get("next_order") or {}).get("details") or {}).get("expected_value") or 0)
        for info in data.values()
    ]
    max_value = max(values, default=0.0)
    scored = []
    for store_id, info in data.items():
        entry = score_store(info, day, max_value, currency, explain=False)
        if entry["listed"] and entry["score"] > 0:
            scored.append((entry["score"], store_id))
    top = heapq.nsmallest(limit, scored, key=lambda item: (-item[0], item[1]))
    return [
        (store_id, score_store(data[store_id], day, max_value, currency)) for _, store_id in top
    ]
