"""The offline embedding model: same vectors as all-MiniLM-L6-v2, without torch or network."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from retrieval.embeddings import EmbeddingError, LocalMiniLM, get_embedder, make_embedder


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


def test_runs_without_torch_or_the_network() -> None:
    LocalMiniLM()
    assert "torch" not in sys.modules
    assert "sentence_transformers" not in sys.modules


def test_unknown_models_are_refused_clearly() -> None:
    with pytest.raises(EmbeddingError, match="all-MiniLM-L6-v2"):
        make_embedder("local:bge-large")
