"""An in-memory copy of the collection's vectors, for exact search among a searcher's chunks.

Chroma's HNSW index answers an unfiltered query in milliseconds, but any metadata filter
(embedded Chroma 1.x) costs 200-400 ms at 230,000 chunks whatever it matches. A rep sees about
2% of a large collection, and the nearest chunks of an unfiltered query are often all some
other store's (real embeddings cluster by store: a query naming another rep's store finds
that store's history first). So the chunks a searcher may see are compared exactly here, in
memory, instead of asking Chroma to filter.

The copy is aligned with the keyword index's rows (which know each chunk's store, day and
kind, so the permission and filter mask is the same array for both), read from the collection
when the keyword index is built and rebuilt with it whenever the collection's version changes.
Vectors are stored as int8 with one scale per row: a quarter of float32's memory (about 90 MB
at 232,690 chunks of 384 dimensions), and the nearest chunks come out in the same order except
between near-ties (quantisation error below 0.5% of a unit vector's length per coordinate).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Vectors read from the collection per request.
READ_BATCH = 5000


class VectorCopy:
    """Int8 copies of the vectors of the keyword index's chunks (row i = the index's row i)."""

    def __init__(self, codes: np.ndarray, scales: np.ndarray, present: np.ndarray) -> None:
        self.codes = codes
        self.scales = scales
        # Chunks known to the keyword index but not (yet) to the collection have no vector.
        self.present = present

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scales.nbytes + self.present.nbytes)

    @classmethod
    def load(
        cls, collection: Any, chunk_ids: Sequence[str], row_of: Mapping[str, int], dim: int
    ) -> VectorCopy:
        """Read every chunk's vector from the collection, in batches of ids."""
        codes = np.zeros((len(chunk_ids), dim), dtype=np.int8)
        scales = np.zeros(len(chunk_ids), dtype=np.float32)
        present = np.zeros(len(chunk_ids), dtype=bool)
        for start in range(0, len(chunk_ids), READ_BATCH):
            got = collection.get(
                ids=list(chunk_ids[start : start + READ_BATCH]), include=["embeddings"]
            )
            ids = got["ids"]
            if not ids:
                continue
            vectors = np.asarray(got["embeddings"], dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[1] != dim:
                raise ValueError(f"vectors of shape {vectors.shape} in a {dim}-dimension index")
            rows = np.fromiter((row_of[i] for i in ids), dtype=np.int64, count=len(ids))
            codes[rows], scales[rows] = quantise_rows(vectors)
            present[rows] = True
        return cls(codes, scales, present)

    def nearest(self, vector: Any, keep: np.ndarray, n: int) -> list[int]:
        """The rows of the `n` chunks most similar to `vector` among those `keep` allows."""
        rows = np.flatnonzero(keep & self.present)
        if len(rows) == 0 or n <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32)
        # Unit vectors: cosine similarity is the dot product (up to each row's scale).
        similarity = (self.codes[rows].astype(np.float32) @ query) * self.scales[rows]
        best = np.argpartition(-similarity, n - 1)[:n] if len(rows) > n else np.arange(len(rows))
        best = best[np.argsort(-similarity[best], kind="stable")]
        return [int(r) for r in rows[best]]


def quantise_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes and a scale per row, so that row ~= codes * scale."""
    peak = np.abs(vectors).max(axis=1)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def load_vectors(
    collection: Any, chunk_ids: Sequence[str], row_of: Mapping[str, int], dim: int
) -> VectorCopy | None:
    """The copy, or None (searches then ask Chroma) when the collection cannot be read."""
    try:
        return VectorCopy.load(collection, chunk_ids, row_of, dim)
    except Exception:
        log.warning("vector copy not loaded; searches filter through Chroma", exc_info=True)
        return None
