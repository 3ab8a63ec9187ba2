"""Sync the `communications` table into the Chroma collection.

One document per chunk (see `retrieval.chunking`), id `<communication id>:<chunk number>`, with
metadata to filter and cite by: communication id, store id and name, rep id, channel, kind,
direction, date (ISO, and as a day number for range filters), author.

Incremental by watermark. Each sync reads inside one snapshot and records in the collection's
metadata the newest `updated_at` it saw and the oldest transaction still running at that
moment (`pg_snapshot_xmin`). The next sync reads rows changed after the watermark, plus rows
written by transactions that were still running (they may carry an older `updated_at` but
commit later), and skips any whose stored `updated_at` already matches, so re-running changes
nothing. Writers must set `updated_at` when they edit a row (the ORM model does).

Reassigned stores: each chunk's metadata carries its store's rep, so a rep's search can filter
on one rep id rather than on hundreds of store ids. When a store changes rep (`stores.rep_id`;
a trigger stamps `rep_assigned_at`), the next sync re-tags the store's chunks: the stores
stamped after the recorded `rep_watermark` (and, as for communications, those written by
transactions still running at the last sync) have their chunks' `rep_id` compared and
updated. Search always checks hits against the stores the user may see now, so a tag that is
stale until that sync can hide a passage from the store's new rep but never show it to the old
one.

Deletions: the collection also records how many communications it holds. When the table's
count differs from what the sync expects, the ids in Chroma are compared with the ids in the
table and the missing ones are deleted with all their chunks. A sync that stops half-way
leaves a `dirty` mark, and the next one does the full comparison.

`sync_index(engine_or_session, settings)` is what imports and `log_note` call afterwards; it
costs a few milliseconds when nothing changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from retrieval.chroma import (
    COLLECTION,
    RetrievalUnavailable,
    drop_collection,
    expected_metadata,
    get_client,
    open_collection,
    unavailable,
)
from retrieval.chunking import chunk_text
from retrieval.embeddings import Embedder, get_embedder
from tools.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Rows embedded and written per Chroma call.
BATCH = 256
# Stores whose chunks are read per Chroma call when re-tagging reassigned stores.
RETAG_STORES = 200
# A transaction still running at the last sync is looked for this far behind the watermark.
LATE_COMMIT_WINDOW = dt.timedelta(days=1)

Progress = Callable[[int, int], None]

_sync_lock = threading.Lock()

_ROW_COLUMNS = """
    c.id, c.store_id, c.author_id, c.author_name, c.channel, c.direction, c.kind, c.text,
    c.occurred_at, c.updated_at, s.name AS store_name, s.code AS store_code, s.rep_id,
    u.name AS user_name
"""
_ROW_FROM = """
    FROM communications c
    JOIN stores s ON s.id = c.store_id
    LEFT JOIN users u ON u.id = c.author_id
"""


@dataclass
class SyncReport:
    """What one sync did."""

    collection: str
    scanned: int = 0
    indexed: int = 0
    chunks: int = 0
    deleted: int = 0
    retagged: int = 0
    unchanged: int = 0
    total: int = 0
    full_compare: bool = False
    rebuilt: bool = False
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.indexed or self.deleted)


def embedding_text(store_name: str, kind: str, chunk: str) -> str:
    """What is embedded for a chunk: the store's name and the kind give the chunk its context."""
    return f"{store_name} ({kind}): {chunk}"


def chunk_id(communication_id: int, chunk_no: int) -> str:
    return f"{communication_id}:{chunk_no}"


def communication_of(chunk_id_: str) -> int:
    """The communication a chunk id points back to."""
    return int(chunk_id_.split(":", 1)[0])


def utc_iso(moment: dt.datetime) -> str:
    """A timestamp as UTC ISO text: equal times give equal text whatever the session's zone."""
    return moment.astimezone(dt.UTC).isoformat()


def author_of(row: Any) -> str:
    return str(row.author_name or row.user_name or "")


def row_metadata(row: Any, chunk_no: int, chunks: int) -> dict[str, Any]:
    occurred: dt.datetime = row.occurred_at
    meta: dict[str, Any] = {
        "communication_id": int(row.id),
        "chunk": chunk_no,
        "chunks": chunks,
        "store_id": int(row.store_id),
        "store_name": str(row.store_name),
        "store_code": str(row.store_code),
        "channel": str(row.channel),
        "kind": str(row.kind),
        "direction": str(row.direction),
        "date": occurred.date().isoformat(),
        "day": occurred.date().toordinal(),
        "occurred_at": occurred.isoformat(),
        "author": author_of(row),
        "updated_at": utc_iso(row.updated_at),
    }
    # Chroma metadata has no null: absent means "no rep".
    if row.rep_id is not None:
        meta["rep_id"] = int(row.rep_id)
    return meta


@contextmanager
def _snapshot(bind: Engine | Session | Connection) -> Iterator[Connection]:
    """A connection whose reads all see one snapshot (for an engine: a read-only transaction)."""
    if isinstance(bind, Session):
        # The caller's own transaction: it sees the caller's uncommitted rows too.
        yield bind.connection()
    elif isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.execute(text("SET TRANSACTION READ ONLY"))
                yield conn


def _changed_rows(conn: Connection, state: dict[str, Any], full: bool) -> list[Any]:
    if full or "watermark" not in state or "xmin" not in state:
        sql = f"SELECT {_ROW_COLUMNS} {_ROW_FROM} ORDER BY c.id"
        return list(conn.execute(text(sql)))
    sql = f"""
        SELECT {_ROW_COLUMNS} {_ROW_FROM}
        WHERE c.updated_at > CAST(:wm AS timestamptz) - CAST(:window AS interval)
          AND (c.updated_at > CAST(:wm AS timestamptz)
               OR age(c.xmin) <= age(CAST(CAST(:xmin AS text) AS xid)))
        ORDER BY c.id
    """
    return list(
        conn.execute(
            text(sql),
            {
                "wm": state["watermark"],
                "window": f"{int(LATE_COMMIT_WINDOW.total_seconds())} seconds",
                "xmin": int(state["xmin"]),
            },
        )
    )


def embed_distinct(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """The vectors of `texts`, each distinct text embedded once (repeats share its vector)."""
    position: dict[str, int] = {}
    slots = [position.setdefault(t, len(position)) for t in texts]
    if len(position) == len(texts):
        return embedder.embed(list(texts))
    return embedder.embed(list(position))[slots]


def _existing(collection: Any, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Chunk-0 metadata of those communications that are in the collection."""
    if not ids:
        return {}
    got = collection.get(ids=[chunk_id(i, 0) for i in ids], include=["metadatas"])
    out = {}
    for cid, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
        out[communication_of(cid)] = dict(meta or {})
    return out


def _index_rows(
    collection: Any,
    embedder: Embedder,
    rows: Sequence[Any],
    existing: dict[int, dict[str, Any]],
    report: SyncReport,
) -> None:
    ids: list[str] = []
    docs: list[str] = []
    embed_texts: list[str] = []
    metas: list[dict[str, Any]] = []
    stale_chunks: list[str] = []
    for row in rows:
        chunks = chunk_text(row.text) or [row.text.strip() or "(empty)"]
        for n, chunk in enumerate(chunks):
            ids.append(chunk_id(row.id, n))
            docs.append(chunk)
            embed_texts.append(embedding_text(row.store_name, row.kind, chunk))
            metas.append(row_metadata(row, n, len(chunks)))
        before = int(existing.get(row.id, {}).get("chunks", 0))
        stale_chunks.extend(chunk_id(row.id, n) for n in range(len(chunks), before))
    vectors = embed_distinct(embedder, embed_texts)
    collection.upsert(ids=ids, embeddings=vectors, documents=docs, metadatas=metas)
    if stale_chunks:
        collection.delete(ids=stale_chunks)
    report.indexed += len(rows)
    report.chunks += len(ids)


def _reassigned_stores(
    conn: Connection, state: dict[str, Any], full: bool
) -> dict[int, int | None]:
    """The stores whose rep may have changed since the last sync, with their rep now.

    Every store when the collection has no `rep_watermark` yet (built before rep tags were
    kept current) or after an interrupted sync.
    """
    if full or "rep_watermark" not in state or "xmin" not in state:
        sql = "SELECT id, rep_id FROM stores"
        params: dict[str, Any] = {}
    else:
        sql = """
            SELECT id, rep_id FROM stores
            WHERE rep_assigned_at > CAST(:wm AS timestamptz) - CAST(:window AS interval)
              AND (rep_assigned_at > CAST(:wm AS timestamptz)
                   OR age(xmin) <= age(CAST(CAST(:xmin AS text) AS xid)))
        """
        params = {
            "wm": state["rep_watermark"],
            "window": f"{int(LATE_COMMIT_WINDOW.total_seconds())} seconds",
            "xmin": int(state["xmin"]),
        }
    return {int(i): (None if r is None else int(r)) for i, r in conn.execute(text(sql), params)}


def _stale_rep_tags(
    conn: Connection, collection: Any, state: dict[str, Any], *, full: bool
) -> tuple[list[str], list[dict[str, Any]]]:
    """The chunks of reassigned stores whose `rep_id` differs from their store's rep now,
    with the metadata update for each."""
    stores = _reassigned_stores(conn, state, full)
    ids: list[str] = []
    metas: list[dict[str, Any]] = []
    store_ids = sorted(stores)
    for start in range(0, len(store_ids), RETAG_STORES):
        part = store_ids[start : start + RETAG_STORES]
        got = collection.get(
            where={"store_id": part[0]} if len(part) == 1 else {"store_id": {"$in": part}},
            include=["metadatas"],
        )
        for cid, meta in zip(got["ids"], got["metadatas"] or [], strict=False):
            meta = meta or {}
            rep = stores.get(int(meta.get("store_id", -1)))
            if meta.get("rep_id") != rep:
                ids.append(cid)
                # Chroma merges metadata on update; None removes the key (a store with no rep).
                metas.append({"rep_id": rep})
    return ids, metas


def _indexed_communications(collection: Any) -> set[int]:
    """Every communication id in the collection (by its first chunk)."""
    out: set[int] = set()
    page = 5000
    offset = 0
    while True:
        got = collection.get(where={"chunk": 0}, include=[], limit=page, offset=offset)
        batch = got["ids"]
        out.update(communication_of(i) for i in batch)
        if len(batch) < page:
            return out
        offset += page


def _delete_communications(collection: Any, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), 500):
        part = [int(i) for i in ids[start : start + 500]]
        collection.delete(where={"communication_id": {"$in": part}})


def sync_index(
    bind: Engine | Session | Connection,
    settings: Settings | None = None,
    *,
    rebuild: bool = False,
    progress: Progress | None = None,
    collection_name: str = COLLECTION,
    embedder: Embedder | None = None,
) -> SyncReport:
    """Bring the Chroma collection up to date with the `communications` table.

    `rebuild` drops the collection and indexes everything again (needed after changing
    EMBEDDINGS). Raises `RetrievalUnavailable` when Chroma cannot be reached and
    `IndexMismatch` when the collection was built with another embedding.
    """
    import time

    started = time.perf_counter()
    settings = settings or get_settings()
    embedder = embedder or get_embedder(settings)
    report = SyncReport(collection=collection_name, rebuilt=rebuild)
    with _sync_lock:
        client = get_client(settings)
        if rebuild:
            drop_collection(client, collection_name)
        collection = open_collection(client, embedder.name, embedder.dim, name=collection_name)
        assert collection is not None
        state = dict(collection.metadata or {})
        try:
            with _snapshot(bind) as conn:
                _sync(conn, collection, embedder, state, report, progress)
        except RetrievalUnavailable:
            raise
        except Exception as error:
            if _is_chroma_error(error):
                raise unavailable(error) from error
            raise
    report.seconds = time.perf_counter() - started
    log.info(
        "index sync: %d scanned, %d indexed (%d chunks), %d deleted, %d chunks re-tagged, "
        "%d total in %.2fs",
        report.scanned,
        report.indexed,
        report.chunks,
        report.deleted,
        report.retagged,
        report.total,
        report.seconds,
    )
    return report


def _is_chroma_error(error: Exception) -> bool:
    module = type(error).__module__
    return module.startswith(("chromadb", "httpx", "httpcore")) or isinstance(
        error, ConnectionError
    )


def _sync(
    conn: Connection,
    collection: Any,
    embedder: Embedder,
    state: dict[str, Any],
    report: SyncReport,
    progress: Progress | None,
) -> None:
    head = conn.execute(
        text(
            "SELECT CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text), "
            "(SELECT count(*) FROM communications), (SELECT max(updated_at) FROM communications), "
            "(SELECT max(rep_assigned_at) FROM stores)"
        )
    ).one()
    xmin = int(head[0]) % 2**32
    table_count = int(head[1])
    newest: dt.datetime | None = head[2]
    newest_assignment: dt.datetime | None = head[3]
    dirty = bool(state.get("dirty"))
    rows = _changed_rows(conn, state, full=dirty)
    report.scanned = len(rows)
    total = len(rows)
    if progress:
        progress(0, total)

    was_empty = "communications" not in state
    added = 0
    marked_dirty = False
    done = 0
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        existing = _existing(collection, [r.id for r in batch])
        todo = [
            r
            for r in batch
            if r.id not in existing or existing[r.id].get("updated_at") != utc_iso(r.updated_at)
        ]
        report.unchanged += len(batch) - len(todo)
        if todo:
            if not marked_dirty:
                collection.modify(metadata={**state, "dirty": True})
                marked_dirty = True
            added += sum(1 for r in todo if r.id not in existing)
            _index_rows(collection, embedder, todo, existing, report)
        done += len(batch)
        if progress:
            progress(done, total)

    expected = None if (dirty or was_empty) else int(state["communications"]) + added
    if expected != table_count:
        report.full_compare = True
        in_table = {int(i) for (i,) in conn.execute(text("SELECT id FROM communications"))}
        stale = sorted(_indexed_communications(collection) - in_table)
        if stale:
            if not marked_dirty:
                collection.modify(metadata={**state, "dirty": True})
                marked_dirty = True
            _delete_communications(collection, stale)
            report.deleted = len(stale)

    if not was_empty or dirty:
        retag, tags = _stale_rep_tags(conn, collection, state, full=dirty)
        if retag and not marked_dirty:
            collection.modify(metadata={**state, "dirty": True})
            marked_dirty = True
        for start in range(0, len(retag), 5000):
            collection.update(ids=retag[start : start + 5000], metadatas=tags[start : start + 5000])
        report.retagged = len(retag)

    report.total = table_count
    rep_watermark = state.get("rep_watermark")
    if newest_assignment is not None and (
        rep_watermark is None or newest_assignment > dt.datetime.fromisoformat(str(rep_watermark))
    ):
        rep_watermark = utc_iso(newest_assignment)
    watermark = state.get("watermark")
    if newest is not None and (
        watermark is None or newest > dt.datetime.fromisoformat(str(watermark))
    ):
        watermark = utc_iso(newest)
    new_state: dict[str, Any] = {
        **expected_metadata(embedder.name, embedder.dim),
        "communications": table_count,
        "xmin": xmin,
        "version": int(state.get("version", 0)) + (1 if report.changed else 0),
        "dirty": False,
    }
    if watermark is not None:
        new_state["watermark"] = watermark
    if rep_watermark is not None:
        new_state["rep_watermark"] = rep_watermark
    if new_state != {k: state.get(k) for k in new_state} or marked_dirty:
        collection.modify(metadata=new_state)


def index_status(
    settings: Settings | None = None, collection_name: str = COLLECTION
) -> dict[str, Any]:
    """What the collection holds (for `mangalm index --status` and health checks)."""
    settings = settings or get_settings()
    client = get_client(settings)
    embedder = get_embedder(settings)
    collection = open_collection(
        client, embedder.name, embedder.dim, name=collection_name, create=False
    )
    if collection is None:
        return {"exists": False}
    try:
        chunks = collection.count()
    except Exception as error:
        raise unavailable(error) from error
    return {"exists": True, "chunks": chunks, **dict(collection.metadata or {})}
