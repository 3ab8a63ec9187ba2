"""The retrieval evaluation: labelled queries from ground truth, recall@5 and MRR per method."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from retrieval.eval import build_queries, evaluate, score
from retrieval.index import sync_index
from tests.retrieval.conftest import World
from tools.models import GroundTruth, Product, Promotion


def test_score_counts_recall_at_5_and_reciprocal_rank() -> None:
    assert score([9, 8, 1, 7, 6], frozenset({1})) == (1.0, pytest.approx(1 / 3))
    assert score([9, 8, 7, 6, 5, 1], frozenset({1})) == (0.0, pytest.approx(1 / 6))
    assert score([1, 2, 3], frozenset({1, 2, 3, 4, 5, 6, 7})) == (pytest.approx(3 / 5), 1.0)
    assert score([], frozenset({1})) == (0.0, 0.0)


def test_evaluation_on_labelled_history(world: World) -> None:
    with world.session() as session:
        biscuits = Product(sku="P1", name="Parle-G 800g", price=10)
        oil = Product(sku="P2", name="Fortune Sunflower Oil 1L", price=150)
        session.add_all([biscuits, oil])
        session.flush()
        diwali = Promotion(
            code="DIW24",
            name="Diwali Dhamaka",
            product_id=oil.id,
            starts_on="2024-10-01",
            ends_on="2024-11-15",
        )
        session.add(diwali)
        session.commit()
        product_ids = {"biscuits": biscuits.id, "oil": oil.id, "diwali": diwali.id}
    labelled = [
        world.add("S001", "4 peti Parle-G ki phati hui aayi, geeli bhi thi.", kind="complaint"),
        world.add("S004", "Parle-G cartons arrived torn and wet again.", kind="complaint"),
        world.add("S002", "Bhaiya Diwali Dhamaka wala scheme hamein bhi do, 10 case oil lenge."),
        world.add("S005", "Is the Diwali Dhamaka offer open for us? We'd take Fortune oil."),
    ]
    for n in range(12):  # distractors
        world.add(["S001", "S002", "S004", "S005"][n % 4], f"Routine visit {n}: paid Rs {n}00.")
    with world.session() as session:
        for comm, store, kind, extra in [
            (labelled[0], "S001", "complaint_about_order", {"product_id": product_ids["biscuits"]}),
            (labelled[1], "S004", "complaint_about_order", {"product_id": product_ids["biscuits"]}),
            (labelled[2], "S002", "scheme_request", {"promotion_id": product_ids["diwali"]}),
            (labelled[3], "S005", "scheme_request", {"promotion_id": product_ids["diwali"]}),
        ]:
            session.add(
                GroundTruth(
                    kind=kind,
                    store_id=world.stores[store].id,
                    communication_id=comm,
                    details={"issue": "damaged"} if kind != "scheme_request" else {},
                    **extra,
                )
            )
        session.commit()
    sync_index(world.engine)
    with Session(world.engine) as session:
        queries = build_queries(session)

    report = evaluate(world.engine, queries)

    assert report.queries == 4
    assert {q.kind for q in queries} == {"complaint", "scheme_request"}
    assert all(len(q.relevant) == 1 for q in queries)
    assert "Sharma General Store" in next(
        q.query for q in queries if q.store_id == world.stores["S001"].id
    )
    for mode in ("with_store_filter", "without_store_filter"):
        assert set(report.results[mode]) == {"hybrid", "keyword", "vector"}
        hybrid = report.results[mode]["hybrid"]
        assert hybrid.recall_at_5 == 1.0
        assert hybrid.mrr >= 0.75
    assert report.to_dict()["results"]["with_store_filter"]["hybrid"]["queries"] == 4
