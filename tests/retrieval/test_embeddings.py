"""The offline embedding model: same vectors as all-MiniLM-L6-v2, without torch or network."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from retrieval.embeddings import (
    BATCH_SIZE,
    BATCH_TOKENS,
    EmbeddingError,
    LocalMiniLM,
    _batches,
    get_embedder,
    make_embedder,
)


def test_reproduces_the_published_all_minilm_similarities() -> None:
    # The similarities sentence-transformers documents for all-MiniLM-L6-v2 (0.6660, 0.1046,
    # 0.1411); the int8 model must stay within 0.01 of them.
    model = get_embedder()
    vectors = model.embed(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    sims = vectors @ vectors.T
    assert model.name == "local:all-MiniLM-L6-v2"
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert sims[0, 1] == pytest.approx(0.6660, abs=0.01)
    assert sims[0, 2] == pytest.approx(0.1046, abs=0.01)
    assert sims[1, 2] == pytest.approx(0.1411, abs=0.01)


def test_batching_does_not_change_a_vector() -> None:
    model = get_embedder()
    texts = ["short", "a much longer text about Parle-G biscuits " * 20, "Sharma ji ka order"]
    together = model.embed(texts)
    alone = np.vstack([model.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)
    assert model.embed([]).shape == (0, 384)


def test_many_texts_of_mixed_lengths_keep_their_order_and_vectors() -> None:
    # Enough long and short texts for several batches by word pieces; each row must be the
    # vector of its own text, whatever it was batched and padded with.
    model = get_embedder()
    texts = [
        f"Visit {n}: " + "owner wants Tata Tea Gold and Parle-G before Diwali. " * (1 + n % 9)
        for n in range(40)
    ]
    together = model.embed(texts)
    alone = np.vstack([model.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)
    with ThreadPoolExecutor(2) as pool:  # one model serves concurrent callers
        halves = list(pool.map(model.embed, [texts[:20], texts[20:]]))
    assert np.allclose(np.vstack(halves), together, atol=1e-4)


def test_batches_fit_the_word_piece_budget() -> None:
    lengths = sorted([3, 9, 40, 41, 60, 100, 100, 250, 256, 256] * 7)
    batches = _batches(lengths, BATCH_TOKENS, BATCH_SIZE)
    assert [i for b in batches for i in b] == list(range(len(lengths)))
    for batch in batches:
        rows = len(batch)
        assert rows <= BATCH_SIZE
        assert rows == 1 or rows * lengths[batch[-1]] <= BATCH_TOKENS
    assert _batches([], BATCH_TOKENS, BATCH_SIZE) == []
    assert _batches([5] * 200, BATCH_TOKENS, BATCH_SIZE)[0] == range(0, BATCH_SIZE)


def test_runs_without_torch_or_the_network() -> None:
    LocalMiniLM()
    assert "torch" not in sys.modules
    assert "sentence_transformers" not in sys.modules


def test_unknown_models_are_refused_clearly() -> None:
    with pytest.raises(EmbeddingError, match="all-MiniLM-L6-v2"):
        make_embedder("local:bge-large")
