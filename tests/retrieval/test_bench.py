"""`mangalm bench retrieval` on a small size: every figure is filled in, and the searches of a
rep and a manager compare their chunks in the in-memory copy of the vectors."""

from __future__ import annotations

from retrieval.bench import bench_size
from tools.settings import get_settings


def test_bench_size_measures_indexing_search_and_memory(pg_admin_url: str) -> None:
    settings = get_settings().model_copy(update={"database_url": pg_admin_url})
    notes: list[str] = []
    result = bench_size(settings, 300, searches=4, note=notes.append)
    assert result.communications == 300
    assert result.chunks >= 300
    assert result.docs_per_second > 0
    assert result.vector_copy_mb > 0
    for who in ("rep", "manager", "admin"):
        p50, p95 = (getattr(result, f"search_{who}_{q}_ms") for q in ("p50", "p95"))
        assert 0 < p50 <= p95
    # A rep and a manager see a few hundred chunks: compared exactly in memory, never filtered
    # by Chroma.
    for who in ("rep", "manager"):
        assert result.vector_paths[who].get("copy", 0) >= 4, result.vector_paths
        assert "chroma filter" not in result.vector_paths[who]
    assert any("indexing" in note for note in notes)
