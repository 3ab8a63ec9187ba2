"""The Chroma side: which client, which collection, and what the collection records.

`PersistentClient` under `MANGALM_HOME/chroma` by default; `HttpClient` when CHROMA_URL is set
(a server started with `chroma run`). The collection uses cosine distance, set explicitly, and
never Chroma's own embedding function (which would download a model): vectors are always
computed by `retrieval.embeddings` and passed in.

The collection's metadata records the embedding (name and dimension) it was built with; opening
it with another embedding is refused, because vectors of two models cannot be compared. The
sync state (watermark, communication count, version) lives there too, so it travels with the
collection whether it is on disk or on a server.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tools.registry import ToolError
from tools.settings import Settings

COLLECTION = "communications"
# Bumped when the document layout (chunking, metadata fields) changes: old collections rebuild.
LAYOUT_VERSION = 1

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


class RetrievalUnavailable(ToolError):
    """The vector store cannot be reached; everything that needs no history still works."""

    code = "unavailable"


class IndexMismatch(RuntimeError):
    """The collection was built with another embedding or layout; it must be rebuilt."""


UNAVAILABLE = "communication history is temporarily unavailable"


@dataclass(frozen=True)
class Target:
    """Where the collection lives: a server URL or a directory."""

    url: str | None
    path: str | None

    @property
    def key(self) -> str:
        return self.url or f"file:{self.path}"

    def describe(self) -> str:
        return f"Chroma server at {self.url}" if self.url else f"Chroma at {self.path}"


def target_of(settings: Settings) -> Target:
    if settings.chroma_url:
        return Target(url=settings.chroma_url, path=None)
    return Target(url=None, path=str(settings.home / "chroma"))


def unavailable(error: BaseException) -> RetrievalUnavailable:
    """The error to raise when Chroma fails; the cause is kept for the log, not the person."""
    return RetrievalUnavailable(UNAVAILABLE, reason=type(error).__name__)


def get_client(settings: Settings) -> Any:
    """The Chroma client for the settings (one per location per process)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    target = target_of(settings)
    with _clients_lock:
        client = _clients.get(target.key)
        if client is not None:
            return client
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if target.url:
                parts = urlsplit(target.url)
                client = chromadb.HttpClient(
                    host=parts.hostname or "127.0.0.1",
                    port=parts.port or (443 if parts.scheme == "https" else 8000),
                    ssl=parts.scheme == "https",
                    settings=chroma_settings,
                )
            else:
                assert target.path is not None
                client = chromadb.PersistentClient(path=target.path, settings=chroma_settings)
        except Exception as error:
            raise unavailable(error) from error
        _clients[target.key] = client
        return client


def forget_clients() -> None:
    """Drop cached clients (tests point settings at new locations)."""
    with _clients_lock:
        _clients.clear()


def expected_metadata(embedding: str, dim: int) -> dict[str, Any]:
    return {"embedding": embedding, "dim": dim, "layout": LAYOUT_VERSION}


def check_compatible(metadata: dict[str, Any] | None, embedding: str, dim: int) -> None:
    """Refuse a collection built with another embedding model or document layout."""
    metadata = metadata or {}
    built_with = metadata.get("embedding")
    if built_with is None:
        raise IndexMismatch(
            "The communication index was not built by this product (no embedding recorded); "
            "rebuild it with `mangalm index --rebuild`"
        )
    if built_with != embedding or metadata.get("dim") != dim:
        raise IndexMismatch(
            f"The communication index was built with {built_with} ({metadata.get('dim')} "
            f"dimensions) but EMBEDDINGS is {embedding} ({dim} dimensions); vectors of different "
            "models cannot be mixed. Rebuild it with `mangalm index --rebuild` "
            "(or set EMBEDDINGS back)"
        )
    if metadata.get("layout") != LAYOUT_VERSION:
        raise IndexMismatch(
            "The communication index has an older layout; rebuild it with `mangalm index --rebuild`"
        )


def open_collection(
    client: Any, embedding: str, dim: int, *, name: str = COLLECTION, create: bool = True
) -> Any | None:
    """The collection, checked against the embedding; created when missing (if `create`).

    Returns None when it does not exist and `create` is false.
    """
    try:
        existing = {c if isinstance(c, str) else c.name for c in client.list_collections()}
        if name not in existing:
            if not create:
                return None
            return client.get_or_create_collection(
                name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=expected_metadata(embedding, dim),
                embedding_function=None,
            )
        collection = client.get_collection(name, embedding_function=None)
    except IndexMismatch:
        raise
    except Exception as error:
        raise unavailable(error) from error
    check_compatible(collection.metadata, embedding, dim)
    return collection


def drop_collection(client: Any, name: str = COLLECTION) -> None:
    """Delete the collection if it exists."""
    try:
        existing = {c if isinstance(c, str) else c.name for c in client.list_collections()}
        if name in existing:
            client.delete_collection(name)
    except Exception as error:
        raise unavailable(error) from error
