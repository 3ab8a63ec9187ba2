"""The in-memory copy of the collection's vectors: read from real Chroma, aligned with the
keyword index, and its nearest chunks are the exact nearest (up to int8 rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.chroma import COLLECTION, get_client
from retrieval.embeddings import get_embedder
from retrieval.index import sync_index
from retrieval.keyword import build_keyword_index
from retrieval.vectors import VectorCopy, quantise_rows
from tests.retrieval.conftest import World
from tools.settings import get_settings


def _copy(rows: int, dim: int, seed: int = 0) -> tuple[np.ndarray, VectorCopy]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes, scales = quantise_rows(vectors)
    return vectors, VectorCopy(codes, scales, np.ones(rows, dtype=bool))


def test_quantised_rows_round_trip_within_half_a_step() -> None:
    vectors, copy = _copy(500, 384)
    restored = copy.codes.astype(np.float32) * copy.scales[:, None]
    assert np.all(np.abs(restored - vectors) <= copy.scales[:, None] / 2 + 1e-7)
    zero, scale = quantise_rows(np.zeros((1, 8), dtype=np.float32))
    assert not zero.any() and scale[0] == 1.0  # an all-zero vector does not divide by zero


def test_nearest_matches_brute_force_under_a_mask() -> None:
    vectors, copy = _copy(5000, 64, seed=1)
    rng = np.random.default_rng(2)
    for _ in range(20):
        query = vectors[rng.integers(5000)] + rng.normal(0, 0.3, 64).astype(np.float32)
        query /= np.linalg.norm(query)
        keep = rng.random(5000) < rng.choice([0.01, 0.1, 0.5])
        got = copy.nearest(query, keep, 10)
        assert all(keep[r] for r in got)
        allowed = np.flatnonzero(keep)
        exact = allowed[np.argsort(-(vectors[allowed] @ query))][:10]
        # Same chunks, or a near-tie swapped at the edge: compare by true similarity.
        true = vectors @ query
        assert np.allclose(np.sort(true[got]), np.sort(true[exact]), atol=0.02)
        assert len(set(got) & set(exact.tolist())) >= 9
        assert got[0] == exact[0] or abs(true[got[0]] - true[exact[0]]) < 0.02


def test_nearest_skips_rows_without_a_vector_and_handles_small_sets() -> None:
    _, copy = _copy(10, 16)
    copy.present[3] = False
    keep = np.zeros(10, dtype=bool)
    keep[[1, 3, 7]] = True
    assert sorted(copy.nearest(np.ones(16, dtype=np.float32), keep, 5)) == [1, 7]
    assert copy.nearest(np.ones(16, dtype=np.float32), np.zeros(10, dtype=bool), 5) == []


@pytest.fixture()
def synced(world: World) -> World:
    for n in range(12):
        world.add("S001" if n % 2 else "S005", f"Visit {n}: owner wants {n + 2} cases of Parle-G.")
    # A long transcript: several chunks, each with its own vector.
    world.add("S002", " ".join(f"Line {i} of a long call about Tata Tea Gold." for i in range(200)))
    sync_index(world.engine)
    return world


def test_the_copy_holds_every_chunk_of_the_collection(synced: World) -> None:
    settings = get_settings()
    embedder = get_embedder(settings)
    collection = get_client(settings).get_collection(COLLECTION)
    with synced.session() as session:
        index = build_keyword_index(session, collection, embedder.dim)
    copy = index.vectors
    assert copy is not None and copy.present.all()
    assert len(index) > 13  # the transcript was chunked
    got = collection.get(ids=index.chunk_ids, include=["embeddings"])
    stored = np.asarray(got["embeddings"], dtype=np.float32)
    rows = [index.row_of[i] for i in got["ids"]]
    restored = copy.codes[rows].astype(np.float32) * copy.scales[rows, None]
    assert np.abs(restored - stored).max() <= copy.scales.max() / 2 + 1e-7
    # The nearest allowed chunk is the one an exact comparison picks.
    query = embedder.embed(["owner wants cases of Parle-G"])[0]
    keep = index.mask([synced.stores["S001"].id], None, None)
    best = copy.nearest(query, keep, 3)
    allowed = np.flatnonzero(keep)
    pairs = zip(got["ids"], stored, strict=True)
    similarity = {index.row_of[i]: float(v @ query) for i, v in pairs}
    exact = sorted(allowed.tolist(), key=lambda r: -similarity[r])[:3]
    assert [similarity[r] for r in best] == pytest.approx([similarity[r] for r in exact], abs=0.01)
    assert {int(index.store_ids[r]) for r in best} == {synced.stores["S001"].id}


def test_a_chunk_not_yet_in_the_collection_has_no_vector(synced: World) -> None:
    new = synced.add("S001", "Owner asked for a Holi Special display.")  # not synced
    settings = get_settings()
    collection = get_client(settings).get_collection(COLLECTION)
    with synced.session() as session:
        index = build_keyword_index(session, collection, get_embedder(settings).dim)
    assert index.vectors is not None
    assert not index.vectors.present[index.row_of[f"{new}:0"]]
    assert int(index.vectors.present.sum()) == len(index) - 1


def test_an_unreadable_collection_leaves_no_copy(synced: World) -> None:
    class Broken:
        def get(self, **_: object) -> dict[str, object]:
            raise RuntimeError("Chroma is down")

    with synced.session() as session:
        index = build_keyword_index(session, Broken(), 384)
    assert index.vectors is None  # searches fall back to asking Chroma
    assert len(index) > 0
