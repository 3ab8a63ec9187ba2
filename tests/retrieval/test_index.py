"""Syncing communications into Chroma: incremental, edits, deletions, chunks, late commits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from retrieval.chroma import COLLECTION, IndexMismatch, get_client
from retrieval.chunking import MAX_WORDS
from retrieval.index import index_status, sync_index
from retrieval.search import run_search
from tests.retrieval.conftest import World
from tools.models import Communication
from tools.settings import get_settings


def _collection() -> Any:
    return get_client(get_settings()).get_collection(COLLECTION)


def _texts(world: World, query: str, store: str | None = None) -> list[str]:
    ctx = world.ctx(world.admin)
    ids = [world.stores[store].id] if store else None
    return [h.snippet for h in run_search(ctx, query, store_ids=ids, limit=5)]


def test_first_sync_indexes_every_communication_with_its_metadata(world: World) -> None:
    first = world.add("S001", "Owner wants 10 cases of Parle-G before Diwali.", kind="note")
    world.add("S004", "Payment of Rs 4,500 will be made next Monday.", kind="message")

    report = sync_index(world.engine)

    assert (report.indexed, report.total, report.deleted) == (2, 2, 0)
    got = _collection().get(ids=[f"{first}:0"], include=["metadatas", "documents"])
    meta = got["metadatas"][0]
    assert got["documents"][0] == "Owner wants 10 cases of Parle-G before Diwali."
    assert meta["communication_id"] == first
    assert meta["store_id"] == world.stores["S001"].id
    assert meta["store_name"] == "Sharma General Store"
    assert meta["rep_id"] == world.rep_a.id
    assert (meta["kind"], meta["channel"], meta["direction"]) == ("note", "whatsapp", "inbound")
    assert meta["date"] == "2024-01-02"
    assert meta["day"] == np.datetime64("2024-01-02").astype(object).toordinal()
    assert meta["author"] == "Ravi Kumar"


def test_rerunning_the_sync_changes_nothing(world: World) -> None:
    world.add("S001", "Asked for the Diwali scheme on Tata Tea.")
    sync_index(world.engine)
    before = _collection().get(include=["documents", "metadatas", "embeddings"])
    version = _collection().metadata["version"]

    again = sync_index(world.engine)

    assert (again.indexed, again.deleted, again.changed) == (0, 0, False)
    after = _collection().get(include=["documents", "metadatas", "embeddings"])
    assert after["ids"] == before["ids"]
    assert after["documents"] == before["documents"]
    assert after["metadatas"] == before["metadatas"]
    assert np.array_equal(after["embeddings"], before["embeddings"])
    assert _collection().metadata["version"] == version


def test_only_new_rows_are_embedded_on_the_next_sync(world: World) -> None:
    for n in range(5):
        world.add("S002", f"Routine visit number {n}, shelf looks fine.")
    sync_index(world.engine)
    new = world.add("S002", "Complained that the Maggi cartons arrived crushed.", kind="complaint")

    report = sync_index(world.engine)

    assert report.indexed == 1
    # Rows of transactions that were running at the last sync are re-checked, not re-embedded.
    assert report.unchanged == report.scanned - 1
    assert _collection().get(ids=[f"{new}:0"])["ids"] == [f"{new}:0"]


def test_an_edit_replaces_the_old_text(world: World) -> None:
    comm = world.add("S003", "Wants 5 boxes of Dettol soap next week.")
    sync_index(world.engine)
    world.edit(comm, "Cancelled the soap order; wants Savlon handwash instead.")

    report = sync_index(world.engine)

    assert report.indexed == 1
    doc = _collection().get(ids=[f"{comm}:0"], include=["documents"])["documents"][0]
    assert "Savlon" in doc and "Dettol" not in doc
    assert any("Savlon" in t for t in _texts(world, "Savlon handwash", "S003"))


def test_a_deleted_communication_disappears_from_the_index_and_search(world: World) -> None:
    keep = world.add("S001", "Happy with the new Surf Excel offer.")
    gone = world.add("S001", "Threatened to switch distributor over late deliveries.")
    sync_index(world.engine)
    world.delete(gone)

    report = sync_index(world.engine)

    assert report.deleted == 1
    assert report.full_compare
    ids = set(_collection().get(include=[])["ids"])
    assert ids == {f"{keep}:0"}
    assert not any("switch distributor" in t for t in _texts(world, "switch distributor"))


def test_delete_and_insert_between_syncs_is_still_caught(world: World) -> None:
    gone = world.add("S001", "Old note about Colgate stock.")
    sync_index(world.engine)
    world.delete(gone)
    new = world.add("S001", "New note about Pepsodent stock.")

    report = sync_index(world.engine)

    assert (report.indexed, report.deleted) == (1, 1)
    assert set(_collection().get(include=[])["ids"]) == {f"{new}:0"}


def test_long_transcripts_are_chunked_with_citations_to_their_communication(world: World) -> None:
    sentences = [f"Sentence {n} of the call is about routine stock counts." for n in range(60)]
    sentences[45] = "The owner said the Amul butter delivery on Tuesday was short by 3 cases."
    comm = world.add("S002", " ".join(sentences), kind="call", channel="phone")

    sync_index(world.engine)

    got = _collection().get(where={"communication_id": comm}, include=["metadatas", "documents"])
    assert len(got["ids"]) > 1
    assert sorted(got["ids"]) == sorted(f"{comm}:{n}" for n in range(len(got["ids"])))
    assert all(len(d.split()) <= MAX_WORDS * 1.5 for d in got["documents"])
    hits = run_search(world.ctx(world.admin), "Amul butter short delivery", store_ids=None, limit=3)
    assert hits[0].communication_id == comm
    assert hits[0].chunk > 0
    assert "Amul butter" in hits[0].snippet
    assert f"communication {comm}" in hits[0].citation


def test_shortened_transcript_drops_its_extra_chunks(world: World) -> None:
    comm = world.add("S002", " ".join(f"Point {n} discussed." for n in range(200)), kind="call")
    sync_index(world.engine)
    assert len(_collection().get(where={"communication_id": comm})["ids"]) > 1

    world.edit(comm, "Short summary only.")
    sync_index(world.engine)

    assert _collection().get(where={"communication_id": comm})["ids"] == [f"{comm}:0"]


def test_a_row_committed_late_by_an_older_transaction_is_not_missed(world: World) -> None:
    world.add("S001", "First note.")
    # A writer starts its transaction (its updated_at is fixed at now()) ...
    slow = Session(world.engine)
    late = Communication(
        store_id=world.stores["S004"].id,
        channel="sms",
        direction="inbound",
        kind="message",
        text="Late writer: needs 20 packs of Lays.",
        occurred_at=world.stores["S004"].created_at,
    )
    slow.add(late)
    slow.flush()
    # ... a newer row commits and is synced while the writer is still open ...
    world.add("S002", "Second note.")
    assert sync_index(world.engine).indexed == 2
    # ... then the writer commits a row older than the watermark.
    slow.commit()
    late_id = late.id
    slow.close()

    report = sync_index(world.engine)

    assert report.indexed == 1
    assert _collection().get(ids=[f"{late_id}:0"])["ids"] == [f"{late_id}:0"]


def test_rebuild_starts_from_scratch(world: World) -> None:
    world.add("S001", "Note one.")
    world.add("S002", "Note two.")
    sync_index(world.engine)

    report = sync_index(world.engine, rebuild=True)

    assert report.indexed == 2
    assert index_status()["communications"] == 2


class _OtherModel:
    """A different embedding model (same interface)."""

    name = "test:other-model"
    dim = 8

    def embed(self, texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(len(texts), self.dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_an_index_built_with_another_embedding_is_refused(world: World) -> None:
    world.add("S001", "Some note.")
    sync_index(world.engine, embedder=_OtherModel())

    with pytest.raises(IndexMismatch, match="mangalm index --rebuild"):
        sync_index(world.engine)
    # Rebuilding with the configured model fixes it.
    assert sync_index(world.engine, rebuild=True).indexed == 1


def test_sync_against_a_chroma_server(world: World, use_chroma_server: str) -> None:
    comm = world.add("S005", "Khan bhai ne bola Rin ka stock khatam ho gaya.")

    report = sync_index(world.engine, rebuild=True)

    assert report.indexed == 1
    assert _collection().get(ids=[f"{comm}:0"])["ids"] == [f"{comm}:0"]
    hits = run_search(world.ctx(world.admin), "Rin stock khatam", store_ids=None)
    assert [h.communication_id for h in hits] == [comm]


def test_repeated_texts_are_embedded_once_with_the_same_vector() -> None:
    from retrieval.embeddings import get_embedder
    from retrieval.index import embed_distinct

    class Counting:
        """The real model, counting the texts it is asked to embed."""

        def __init__(self) -> None:
            self.model = get_embedder()
            self.name, self.dim = self.model.name, self.model.dim
            self.texts = 0

        def embed(self, texts: list[str]) -> np.ndarray:
            self.texts += len(texts)
            return self.model.embed(texts)

    texts = ["Send 10 cases of Parle-G", "Payment done", "Send 10 cases of Parle-G", "Payment done"]
    counting = Counting()
    vectors = embed_distinct(counting, texts)
    assert counting.texts == 2
    assert vectors.shape == (4, 384)
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[1], vectors[3])
    assert np.allclose(vectors[:2], counting.model.embed(texts[:2]), atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
