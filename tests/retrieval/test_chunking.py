"""Chunking long transcripts with overlap."""

from __future__ import annotations

from retrieval.chunking import MAX_WORDS, chunk_text


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("  Wants 10 cases\nof Parle-G.  ") == ["Wants 10 cases of Parle-G."]
    assert chunk_text("   ") == []


def test_long_text_is_cut_on_sentences_with_overlap_and_loses_nothing() -> None:
    sentences = [f"Sentence number {n} talks about item {n}." for n in range(80)]
    chunks = chunk_text(" ".join(sentences))
    assert len(chunks) > 2
    assert all(len(c.split()) <= MAX_WORDS * 1.5 for c in chunks)
    for sentence in sentences:  # every sentence is whole in some chunk
        assert any(sentence in c for c in chunks)
    for before, after in zip(chunks, chunks[1:], strict=False):  # consecutive chunks overlap
        assert before.split(". ")[-1].rstrip(".") in after


def test_a_run_on_text_without_punctuation_is_still_cut() -> None:
    chunks = chunk_text(" ".join(f"w{n}" for n in range(500)))
    assert len(chunks) >= 4
    assert all(len(c.split()) <= MAX_WORDS * 1.5 for c in chunks)
    assert chunks[0].startswith("w0 ") and chunks[-1].endswith("w499")
