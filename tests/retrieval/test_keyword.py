"""BM25 keyword search: its own top-k agrees with bm25s's, and honours the mask."""

from __future__ import annotations

import datetime as dt
import random
from types import SimpleNamespace

import numpy as np

from retrieval.bench import QUERIES, _synthetic_text
from retrieval.keyword import KeywordIndex, tokenize


def _index(n: int = 600) -> KeywordIndex:
    rng = random.Random(7)
    rows = []
    for i in range(n):
        store = 1 + i % 30
        kind, body = _synthetic_text(rng, f"Sharma Store {store}")
        rows.append(
            SimpleNamespace(
                id=i + 1,
                store_id=store,
                kind=kind,
                occurred_at=dt.datetime(2024, 1 + i % 12, 1 + i % 28, tzinfo=dt.UTC),
                text=body,
                store_name=f"Sharma Store {store}",
                store_code=f"B{store}",
            )
        )
    return KeywordIndex(rows)


def test_top_k_matches_bm25s_ranking_and_the_mask() -> None:
    index = _index()
    bm25 = index._bm25
    stores = [3, 7, 11]
    keep = index.mask(stores, None, None)
    for query in QUERIES:
        tokens = [t for t in index.expand(tokenize(query)) if t in index._vocab]
        hits = index.search(query, k=10, keep=keep)
        if not tokens:
            assert hits == []
            continue
        expected = bm25.get_scores(tokens, weight_mask=keep.astype(np.float32))
        best = np.sort(expected[expected > 0])[::-1][:10]
        # The same scores, best first, only from the allowed stores.
        assert np.allclose([h.score for h in hits], best), query
        assert all(int(index.store_ids[h.row]) in stores for h in hits), query
        assert all(expected[h.row] == h.score for h in hits), query
    assert index.search("Parle-G", k=5, keep=np.zeros(len(index), dtype=bool)) == []
