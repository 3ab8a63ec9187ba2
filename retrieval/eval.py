"""Retrieval evaluation: labelled queries from the demo generator's ground truth.

The demo generator records which communication carries each complaint (late delivery, damaged,
near-expiry or wrong goods) and each scheme request (`ground_truth` rows with a
`communication_id`). Each becomes a question a rep would ask, written from the facts (store,
product, scheme, issue), never from the message's own words:

- with the store filter: `store=<the store>`, query "complaint about damaged <product>";
- without it: the store's name goes into the query instead. Hybrid search (the product's)
  recognises it and ranks that store's history first; BM25 only and vector only stay the pure
  single methods they are compared with (the name is just words of the query to them).

The relevant set of a query is every communication with the same facts (a store may have
complained about late deliveries several times). Metrics per method (hybrid, BM25 only, vector
only), all from one run over one index:

- recall@5: found relevant / min(relevant, 5), averaged over queries;
- MRR: 1 / rank of the first relevant result (0 when none in the top 10), averaged.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from retrieval.index import sync_index
from retrieval.search import Method, run_search
from tools.context import Actor, ToolContext
from tools.settings import Settings, get_settings

METHODS: tuple[Method, ...] = ("hybrid", "keyword", "vector")
K = 5
MRR_DEPTH = 10

_ISSUE_WORDS = {
    "late_delivery": "late delivery, order not arrived",
    "damaged": "damaged torn cartons",
    "near_expiry": "stock close to expiry",
    "wrong_item": "wrong pack size delivered",
}


@dataclass(frozen=True)
class LabelledQuery:
    """A question, the store it is about, and the communications that answer it."""

    query: str
    store_query: str
    store_id: int
    relevant: frozenset[int]
    kind: str


@dataclass
class MethodScore:
    recall_at_5: float
    mrr: float
    queries: int
    p50_ms: float
    p95_ms: float


@dataclass
class EvalReport:
    queries: int
    communications: int
    results: dict[str, dict[str, MethodScore]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "communications": self.communications,
            "k": K,
            "results": {
                mode: {m: vars(s) for m, s in by_method.items()}
                for mode, by_method in self.results.items()
            },
        }


_TRUTH_SQL = """
    SELECT g.kind, g.store_id, g.communication_id, g.details, s.name AS store_name,
           p.name AS product_name, pr.name AS promotion_name
    FROM ground_truth g
    JOIN stores s ON s.id = g.store_id
    LEFT JOIN products p ON p.id = g.product_id
    LEFT JOIN promotions pr ON pr.id = g.promotion_id
    WHERE g.communication_id IS NOT NULL
      AND g.kind IN ('complaint_about_order', 'scheme_request')
    ORDER BY g.id
"""


def build_queries(session: Session, *, limit: int = 300, seed: int = 7) -> list[LabelledQuery]:
    """Labelled queries from the ground truth (at most `limit`, a fixed sample)."""
    groups: dict[tuple[str, int, str], set[int]] = defaultdict(set)
    phrasing: dict[tuple[str, int, str], tuple[str, str, str]] = {}
    for row in session.execute(text(_TRUTH_SQL)):
        details = row.details or {}
        if row.kind == "scheme_request":
            topic = row.promotion_name or details.get("code") or "scheme"
            key = ("scheme_request", row.store_id, str(topic))
            store_q = f"asked for the {topic} scheme"
            full_q = f"did {row.store_name} ask for the {topic} scheme"
        else:
            issue = str(details.get("issue", "complaint"))
            product = row.product_name if issue != "late_delivery" else None
            key = ("complaint", row.store_id, f"{issue}:{product or ''}")
            about = _ISSUE_WORDS.get(issue, issue.replace("_", " "))
            target = f" of {product}" if product else ""
            store_q = f"complaint about {about}{target}"
            full_q = f"what did {row.store_name} complain about: {about}{target}"
        groups[key].add(int(row.communication_id))
        phrasing[key] = (store_q, full_q, key[0])
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    return [
        LabelledQuery(
            query=phrasing[k][1],
            store_query=phrasing[k][0],
            store_id=k[1],
            relevant=frozenset(groups[k]),
            kind=phrasing[k][2],
        )
        for k in keys[:limit]
    ]


def score(ranked: Sequence[int], relevant: frozenset[int]) -> tuple[float, float]:
    """(recall@5, reciprocal rank) of one ranked list."""
    found = len(set(ranked[:K]) & relevant)
    recall = found / min(len(relevant), K)
    rr = 0.0
    for rank, comm_id in enumerate(ranked[:MRR_DEPTH], start=1):
        if comm_id in relevant:
            rr = 1.0 / rank
            break
    return recall, rr


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def evaluate(
    engine: Engine,
    queries: Sequence[LabelledQuery],
    *,
    collection_name: str | None = None,
) -> EvalReport:
    """Run every query with every method, with and without the store filter."""
    extra: dict[str, Any] = {"collection_name": collection_name} if collection_name else {}
    admin = Actor(id=0, email="evaluation@localhost", name="evaluation", role="admin")
    with Session(engine) as session:
        ctx = ToolContext(session=session, actor=admin)
        communications = int(session.execute(text("SELECT count(*) FROM communications")).one()[0])
        report = EvalReport(queries=len(queries), communications=communications)
        for mode in ("with_store_filter", "without_store_filter"):
            report.results[mode] = {}
            for method in METHODS:
                recalls, rrs, times = [], [], []
                for q in queries:
                    filtered = mode == "with_store_filter"
                    started = time.perf_counter()
                    hits = run_search(
                        ctx,
                        q.store_query if filtered else q.query,
                        store_ids=[q.store_id] if filtered else None,
                        limit=MRR_DEPTH,
                        method=method,
                        **extra,
                    )
                    times.append((time.perf_counter() - started) * 1000)
                    recall, rr = score([h.communication_id for h in hits], q.relevant)
                    recalls.append(recall)
                    rrs.append(rr)
                n = max(len(queries), 1)
                report.results[mode][method] = MethodScore(
                    recall_at_5=round(sum(recalls) / n, 4),
                    mrr=round(sum(rrs) / n, 4),
                    queries=len(queries),
                    p50_ms=round(_percentile(times, 0.5), 1),
                    p95_ms=round(_percentile(times, 0.95), 1),
                )
    return report


def run_evaluation(
    engine: Engine, settings: Settings | None = None, *, limit: int = 300
) -> EvalReport:
    """Sync the index, build the labelled queries and evaluate (what `mangalm eval` runs)."""
    settings = settings or get_settings()
    sync_index(engine, settings)
    with Session(engine) as session:
        queries = build_queries(session, limit=limit)
    return evaluate(engine, queries)
