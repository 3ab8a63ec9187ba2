"""Keyword search over communication chunks: BM25 (the `bm25s` library) with a spelling net.

Exact words matter in a distributor's notes: store names, SKU names, amounts ("Rs 4,500"),
Hinglish words an embedding model has rarely seen ("khatam", "udhaar"). BM25 finds them where
vectors blur them. A query word that is not in the index's vocabulary is also matched to the
vocabulary words one edit away (a typo: "complaned", "Sharmaa"), found through an index of
single-character deletions.

The index covers every communication and is filtered per query with a mask (store ids, date,
kind), so a rep's search scores only their stores' chunks. It is built from the
`communications` table with the same chunking as the Chroma sync, and rebuilt when the Chroma
collection's version changes (each sync that changed something bumps it). A small index is
rebuilt in place; a large one in a background thread while the previous one keeps serving.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from retrieval.chunking import chunk_text
from retrieval.mentions import StoreNames
from retrieval.vectors import VectorCopy, load_vectors

log = logging.getLogger(__name__)

# Rebuild in the caller's thread up to this many chunks (well under a second).
SYNC_REBUILD_LIMIT = 20_000

_TOKEN = re.compile(r"\w+", re.UNICODE)
_DIGIT_GROUPS = re.compile(r"(?<=\d)[,.](?=\d{2,3}\b)")
# English and Hinglish function words that carry no meaning for search.
STOPWORDS = frozenset(
    """a an and are as at be been but by did do does for from had has have he her his how i if
    in into is it its me my no not of on or our she so that the their them then there they this
    to was we were what when where which who why will with would you your about any all can
    ka ki ke ko ne se hai hain tha thi the ho bhi to aur ya kya""".split()
)


def _stem(token: str) -> str:
    # Light suffix stripping so "complained", "complaints" and "complain" meet.
    for suffix in ("ing", "ed", "es", "s"):
        if len(token) > len(suffix) + 3 and token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def tokenize(text_: str) -> list[str]:
    """Lower-case word tokens, amounts without thousands separators, stop words dropped."""
    text_ = _DIGIT_GROUPS.sub("", text_.lower())
    return [_stem(t) for t in _TOKEN.findall(text_) if t not in STOPWORDS]


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


@dataclass
class KeywordHit:
    row: int
    score: float


class KeywordIndex:
    """BM25 over chunks, with per-chunk store, day and kind for filtering."""

    def __init__(self, rows: Iterable[Any]) -> None:
        import bm25s

        chunk_ids: list[str] = []
        comm_ids: list[int] = []
        store_ids: list[int] = []
        days: list[int] = []
        kinds: list[str] = []
        texts: list[str] = []
        corpus: list[list[str]] = []
        names: dict[int, str] = {}
        codes: dict[int, str] = {}
        for row in rows:
            names[int(row.store_id)] = str(row.store_name)
            codes[int(row.store_id)] = str(getattr(row, "store_code", "") or "")
            for n, chunk in enumerate(chunk_text(row.text) or [row.text]):
                chunk_ids.append(f"{row.id}:{n}")
                comm_ids.append(int(row.id))
                store_ids.append(int(row.store_id))
                days.append(row.occurred_at.date().toordinal())
                kinds.append(str(row.kind))
                texts.append(chunk)
                # The store's name is part of what a chunk is about.
                corpus.append(tokenize(f"{row.store_name} {row.kind} {chunk}") or ["_"])
        self.chunk_ids = chunk_ids
        # Where each chunk sits, to look up a vector search's hits (ids only) in memory.
        self.row_of = {chunk: row for row, chunk in enumerate(chunk_ids)}
        self.texts = texts
        self.comm_ids = np.array(comm_ids, dtype=np.int64)
        self.store_ids = np.array(store_ids, dtype=np.int64)
        self.days = np.array(days, dtype=np.int64)
        self.kinds = np.array(kinds, dtype=object)
        # The stores that have history, to find the ones a query names.
        self.store_names = StoreNames(names, codes)
        # The chunks' vectors, when the index was built next to a collection (see
        # `retrieval.vectors`): exact vector search among a searcher's chunks.
        self.vectors: VectorCopy | None = None
        self._bm25: Any = None
        self._vocab: set[str] = set()
        self._near: dict[str, set[str]] = defaultdict(set)
        if corpus:
            self._bm25 = bm25s.BM25()
            self._bm25.index(corpus, show_progress=False)
            self._vocab = {w for w in self._bm25.vocab_dict if w}
            for word in self._vocab:
                if len(word) >= 4 and not word.isdigit():
                    for deleted in _deletes(word):
                        self._near[deleted].add(word)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def expand(self, tokens: Sequence[str]) -> list[str]:
        """The query's tokens, with words not in the index replaced by those one edit away."""
        out: list[str] = []
        for token in tokens:
            if token in self._vocab or len(token) < 4 or token.isdigit():
                out.append(token)
                continue
            near = set(self._near.get(token, set()))
            for deleted in _deletes(token):
                if deleted in self._vocab:
                    near.add(deleted)
                near |= self._near.get(deleted, set())
            out.extend(sorted(near)[:5] or [token])
        return out

    def mask(
        self, store_ids: Sequence[int] | None, since_day: int | None, kind: str | None
    ) -> np.ndarray:
        """Which chunks the filters allow (a boolean per chunk)."""
        keep = np.ones(len(self.chunk_ids), dtype=bool)
        if store_ids is not None:
            wanted = np.asarray(list(store_ids), dtype=np.int64)
            if len(self.store_ids) == 0 or len(wanted) == 0:
                keep[:] = False
            else:
                # A lookup table by store id: one gather instead of a sort of every chunk.
                top = int(self.store_ids.max())
                table = np.zeros(top + 1, dtype=bool)
                table[wanted[(wanted >= 0) & (wanted <= top)]] = True
                keep &= table[self.store_ids]
        if since_day is not None:
            keep &= self.days >= since_day
        if kind is not None:
            keep &= self.kinds == kind
        return keep

    def search(
        self,
        query: str,
        *,
        k: int,
        store_ids: Sequence[int] | None = None,
        since_day: int | None = None,
        kind: str | None = None,
        keep: np.ndarray | None = None,
    ) -> list[KeywordHit]:
        """The best `k` chunks (by BM25, score > 0) among those the filters allow.

        `keep` is the filters' mask when the caller has already computed it (see `mask`).
        """
        if self._bm25 is None:
            return []
        tokens = [t for t in self.expand(tokenize(query)) if t in self._vocab]
        if not tokens:
            return []
        if keep is None:
            keep = self.mask(store_ids, since_day, kind)
        allowed = int(keep.sum())
        if allowed == 0:
            return []
        scores = self._bm25.get_scores(tokens, weight_mask=keep.astype(np.float32))
        # The top k among the chunks that score at all. (bm25s's own top-k partitions every
        # chunk, and numpy's argpartition slows down on the sea of equal zeros: 33 ms at
        # 230,000 chunks, against about 1 ms for the few thousand that match.)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            matched = matched[np.argpartition(-scores[matched], k - 1)[:k]]
        ranked = matched[np.argsort(-scores[matched], kind="stable")]
        return [KeywordHit(int(r), float(scores[r])) for r in ranked if keep[int(r)]]


_ROWS_SQL = """
    SELECT c.id, c.store_id, c.kind, c.occurred_at, c.text, s.name AS store_name,
           s.code AS store_code
    FROM communications c JOIN stores s ON s.id = c.store_id
    ORDER BY c.id
"""


def build_keyword_index(
    bind: Session | Connection | Engine, collection: Any = None, dim: int = 0
) -> KeywordIndex:
    """A keyword index over every communication in the database, with a copy of the chunks'
    vectors from `collection` (of `dim` dimensions) when one is given."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            index = KeywordIndex(conn.execute(text(_ROWS_SQL)))
    else:
        index = KeywordIndex(bind.execute(text(_ROWS_SQL)))
    if collection is not None and dim > 0:
        index.vectors = load_vectors(collection, index.chunk_ids, index.row_of, dim)
    return index


class KeywordCache:
    """One keyword index per collection, refreshed when the collection's version changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[str, tuple[Any, KeywordIndex]] = {}
        self._building: set[str] = set()

    def get(
        self, key: str, version: Any, session: Session, collection: Any = None, dim: int = 0
    ) -> KeywordIndex:
        """The index for `key` at `version`; built with a copy of the vectors of `collection`
        (of `dim` dimensions) when one is given."""
        with self._lock:
            cached = self._indexes.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        bind = session.get_bind()
        if cached is not None and len(cached[1]) > SYNC_REBUILD_LIMIT and isinstance(bind, Engine):
            self._rebuild_in_background(key, version, bind, collection, dim)
            return cached[1]
        index = build_keyword_index(session, collection, dim)
        with self._lock:
            self._indexes[key] = (version, index)
        return index

    def _rebuild_in_background(
        self, key: str, version: Any, engine: Engine, collection: Any, dim: int
    ) -> None:
        with self._lock:
            if key in self._building:
                return
            self._building.add(key)

        def work() -> None:
            try:
                index = build_keyword_index(engine, collection, dim)
                with self._lock:
                    self._indexes[key] = (version, index)
            except Exception:  # the old index keeps serving; the next search tries again
                log.exception("keyword index rebuild failed")
            finally:
                with self._lock:
                    self._building.discard(key)

        threading.Thread(target=work, name="keyword-index", daemon=True).start()

    def vector_bytes(self) -> int:
        """Memory held by the cached indexes' copies of the vectors."""
        with self._lock:
            indexes = [index for _, index in self._indexes.values()]
        return sum(index.vectors.nbytes for index in indexes if index.vectors is not None)

    def clear(self) -> None:
        with self._lock:
            self._indexes.clear()


keyword_cache = KeywordCache()
