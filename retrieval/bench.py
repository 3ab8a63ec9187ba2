"""Retrieval benchmark: indexing throughput, search latency, index size (`mangalm bench retrieval`).

Each size runs in a scratch database on the configured PostgreSQL server and a scratch Chroma
directory, both removed afterwards. The communications are synthetic (visit notes, order
messages, complaints, scheme requests and call transcripts, in English and Hinglish, over
stores split among reps) because the figures are about volume, not wording.

Search latency is measured end to end as the tool runs it: looking up the stores (and reps)
the searcher may see, embedding the query, the Chroma query, BM25, fusion and reading the cited
rows from Postgres. Three kinds of searcher: a rep (their ~200 stores), a manager (a team of
three reps) and an admin (no filter).

The generated texts repeat (a few templates over 16 products): the figures report how many
distinct communication texts, chunks and embedded texts (chunk with its store's name and kind)
there are, since a sync embeds each distinct text of a batch once.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from retrieval.chunking import chunk_text
from retrieval.index import embedding_text
from tools.bench import machine
from tools.context import Actor, ToolContext
from tools.db import database_url, make_engine
from tools.migrate import upgrade
from tools.settings import Settings, get_settings

Note = Callable[[str], None]

PRODUCTS = [
    "Parle-G 800g", "Tata Tea Gold 500g", "Maggi Noodles 70g", "Fortune Sunflower Oil 1L",
    "Surf Excel 1kg", "Dettol Soap 125g", "Amul Butter 500g", "Britannia Good Day",
    "Colgate Strong Teeth 200g", "Lifebuoy Handwash", "Aashirvaad Atta 5kg", "Red Label Tea",
    "Haldiram Bhujia 400g", "Kissan Ketchup 1kg", "Vim Bar 300g", "Horlicks 500g",
]  # fmt: skip
ISSUES = [
    "the cartons came torn and wet", "the stock is close to expiry", "the wrong pack size came",
    "delivery was three days late", "the invoice amount was wrong", "half the cases were missing",
]  # fmt: skip
HINGLISH = [
    "peti phati hui aayi", "maal expiry ke paas hai", "galat pack size aa gaya",
    "delivery phir se late hai", "bill mein galti hai", "aadha maal kam aaya",
]  # fmt: skip
SCHEMES = ["Diwali Dhamaka", "Monsoon Bonanza", "Summer Saver", "Holi Special", "Festive Combo"]


def _synthetic_text(rng: random.Random, store: str) -> tuple[str, str]:
    product = rng.choice(PRODUCTS)
    qty = rng.randint(2, 40)
    amount = rng.randint(5, 400) * 50
    roll = rng.random()
    if roll < 0.25:
        return (
            "complaint",
            f"{store} complained that {qty} cases of {product}: {rng.choice(ISSUES)}.",
        )
    if roll < 0.35:
        return "complaint", f"{product} ki {qty} peti, {rng.choice(HINGLISH)}. Jaldi replace karo."
    if roll < 0.5:
        scheme = rng.choice(SCHEMES)
        return "message", f"Is the {scheme} scheme open for us? We would take {qty} {product}."
    if roll < 0.7:
        return "note", f"Visit: owner promised to clear Rs {amount:,} by Friday; wants {product}."
    if roll < 0.9:
        return "message", f"Please send {qty} cases of {product} with the next delivery."
    lines = [
        f"Owner: We need {rng.randint(2, 30)} cases of {rng.choice(PRODUCTS)} this week."
        for _ in range(rng.randint(8, 30))
    ]
    return "call", " ".join(lines) + f" Rep: Noted, outstanding is Rs {amount:,}."


def _fill(engine: Any, communications: int, *, seed: int = 1) -> dict[str, Any]:
    """Reps, stores and `communications` synthetic communications, loaded with COPY."""
    rng = random.Random(seed)
    stores = max(50, communications // 20)
    reps = max(2, stores // 200)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (email, name, role) SELECT 'rep' || g || '@bench.local', "
                "'Rep ' || g, 'rep' FROM generate_series(1, :n) g"
            ),
            {"n": reps},
        )
        rep_ids = [r for (r,) in conn.execute(text("SELECT id FROM users ORDER BY id"))]
        # A manager over the first three reps.
        manager_id = conn.execute(
            text(
                "INSERT INTO users (email, name, role) "
                "VALUES ('manager@bench.local', 'Manager', 'manager') RETURNING id"
            )
        ).scalar_one()
        conn.execute(
            text("UPDATE users SET manager_id = :m WHERE id = ANY(:team)"),
            {"m": manager_id, "team": rep_ids[:3]},
        )
        conn.execute(
            text(
                "INSERT INTO stores (code, name, rep_id) SELECT 'B' || g, "
                "(ARRAY['Sharma','Gupta','Patel','Mehta','Khan','Reddy','Singh','Iyer'])"
                "[1 + g % 8] || ' Store ' || g, (:reps)[1 + g % :n] "
                "FROM generate_series(1, :s) g"
            ),
            {"reps": rep_ids, "n": len(rep_ids), "s": stores},
        )
        store_rows = list(conn.execute(text("SELECT id, name, rep_id FROM stores")))
    buffer = io.StringIO()
    bodies: set[str] = set()
    chunks: set[str] = set()
    embedded: set[str] = set()
    for i in range(communications):
        sid, name, _rep = store_rows[rng.randrange(len(store_rows))]
        kind, body = _synthetic_text(rng, name)
        bodies.add(body)
        for chunk in chunk_text(body) or [body]:
            chunks.add(chunk)
            embedded.add(embedding_text(name, kind, chunk))
        day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} 10:00:00+00"
        channel = "phone" if kind == "call" else "whatsapp"
        body = body.replace("\\", " ").replace("\t", " ").replace("\n", " ")
        buffer.write(f"{sid}\tRep\t{channel}\tinbound\t{kind}\t{body}\t{day}\n")
    buffer.seek(0)
    raw = engine.raw_connection()
    try:
        with (
            raw.cursor() as cur,
            cur.copy(
                "COPY communications (store_id, author_name, channel, direction, kind, text, "
                "occurred_at) FROM STDIN"
            ) as copy,
        ):
            copy.write(buffer.read())
        raw.commit()
    finally:
        raw.close()
    return {
        "stores": stores,
        "reps": reps,
        "rep_ids": rep_ids,
        "manager_id": manager_id,
        "distinct_texts": len(bodies),
        "distinct_chunks": len(chunks),
        "distinct_embedded_texts": len(embedded),
    }


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil comes with the test tools
        return 0


def _peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


@dataclass
class SizeResult:
    communications: int
    chunks: int
    distinct_texts: int
    distinct_chunks: int
    distinct_embedded_texts: int
    index_seconds: float
    docs_per_second: float
    incremental_noop_ms: float
    keyword_build_seconds: float  # keyword index and the in-memory copy of the vectors
    vector_copy_mb: float
    search_rep_p50_ms: float
    search_rep_p95_ms: float
    search_manager_p50_ms: float
    search_manager_p95_ms: float
    search_admin_p50_ms: float
    search_admin_p95_ms: float
    query_embedding_p50_ms: float
    query_embedding_p95_ms: float
    chroma_disk_mb: float
    process_memory_mb: float
    peak_memory_mb: float
    load_average_1m: float
    vector_paths: dict[str, dict[str, int]]


QUERIES = [
    "complaint about damaged Parle-G cartons",
    "did they ask for the Diwali Dhamaka scheme",
    "maal expiry ke paas hai",
    "payment promised Rs 4,500 by Friday",
    "late delivery of Tata Tea Gold",
    "wants Maggi noodles next delivery",
    "wrong invoice amount",
    "Fortune oil scheme",
    "missing cases of Amul butter",
    "sunflwer oil complant",
    "what did Sharma Store 8 complain about",  # a store named in the query (every size has it)
]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


def bench_size(
    settings: Settings, communications: int, *, searches: int = 200, note: Note = lambda _: None
) -> SizeResult:
    """One size: scratch database and Chroma directory, index, search, measure, clean up."""
    from retrieval import search as search_module
    from retrieval.chroma import forget_clients
    from retrieval.embeddings import get_embedder
    from retrieval.index import sync_index
    from retrieval.keyword import keyword_cache

    server = make_url(database_url(settings))
    name = f"mangalm_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    home = Path(tempfile.mkdtemp(prefix="mangalm-bench-"))
    local = settings.model_copy(update={"mangalm_home": home, "chroma_url": settings.chroma_url})
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        upgrade(engine)
        note(f"{communications:,}: generating communications")
        world = _fill(engine, communications)
        embedder = get_embedder(local)
        embedder.embed(["warm up"])
        rss_before = _rss_bytes()
        forget_clients()
        collection = f"bench_{uuid.uuid4().hex[:8]}"
        note(f"{communications:,}: indexing")

        def progress(done: int, total: int) -> None:
            if done and (done % 10_000 < 256 or done == total):
                seconds = time.perf_counter() - started
                note(
                    f"  indexed {done:,}/{total:,} in {seconds:,.0f} s "
                    f"({done / max(seconds, 1e-9):,.1f}/s, load {_load():.1f})"
                )

        started = time.perf_counter()
        report = sync_index(engine, local, collection_name=collection, progress=progress)
        index_seconds = time.perf_counter() - started
        started = time.perf_counter()
        sync_index(engine, local, collection_name=collection)
        noop_ms = (time.perf_counter() - started) * 1000

        rep_actor = Actor(id=world["rep_ids"][0], email="r@bench.local", name="r", role="rep")
        manager_actor = Actor(
            id=world["manager_id"], email="m@bench.local", name="m", role="manager"
        )
        admin_actor = Actor(id=0, email="a@bench.local", name="a", role="admin")
        loads = [_load()]
        with Session(engine) as session:
            actors = {"rep": rep_actor, "manager": manager_actor, "admin": admin_actor}
            started = time.perf_counter()
            search_module.run_search(
                ToolContext(session=session, actor=admin_actor),
                "warm up",
                store_ids=None,
                collection_name=collection,
                settings=local,
            )
            keyword_seconds = time.perf_counter() - started
            timings: dict[str, list[float]] = {"embed": [], **{who: [] for who in actors}}
            # Which way each role's vector searches went (see `search._vector_candidates`).
            paths: dict[str, dict[str, int]] = {who: {} for who in actors}
            for i in range(searches):
                q = QUERIES[i % len(QUERIES)]
                t0 = time.perf_counter()
                embedder.embed([q])
                timings["embed"].append((time.perf_counter() - t0) * 1000)
                for who, actor in actors.items():
                    # A fresh context per search, as each tool call gets one.
                    ctx = ToolContext(session=session, actor=actor)
                    search_module.vector_paths.clear()
                    t0 = time.perf_counter()
                    # As the tool does: the stores (and their reps) the searcher may see.
                    ids = search_module._permitted_store_ids(ctx)
                    search_module.run_search(
                        ctx,
                        q,
                        store_ids=ids,
                        rep_ids=ctx.rep_ids(),
                        collection_name=collection,
                        settings=local,
                    )
                    timings[who].append((time.perf_counter() - t0) * 1000)
                    for path, count in search_module.vector_paths.items():
                        paths[who][path] = paths[who].get(path, 0) + count
        loads.append(_load())
        rss_after = _rss_bytes()
        disk = _dir_bytes(home / "chroma") if not settings.chroma_url else 0
        return SizeResult(
            communications=communications,
            chunks=report.chunks,
            distinct_texts=world["distinct_texts"],
            distinct_chunks=world["distinct_chunks"],
            distinct_embedded_texts=world["distinct_embedded_texts"],
            index_seconds=round(index_seconds, 1),
            docs_per_second=round(communications / index_seconds, 1),
            incremental_noop_ms=round(noop_ms, 1),
            keyword_build_seconds=round(keyword_seconds, 2),
            vector_copy_mb=round(keyword_cache.vector_bytes() / 1024**2, 1),
            search_rep_p50_ms=_pct(timings["rep"], 0.5),
            search_rep_p95_ms=_pct(timings["rep"], 0.95),
            search_manager_p50_ms=_pct(timings["manager"], 0.5),
            search_manager_p95_ms=_pct(timings["manager"], 0.95),
            search_admin_p50_ms=_pct(timings["admin"], 0.5),
            search_admin_p95_ms=_pct(timings["admin"], 0.95),
            query_embedding_p50_ms=round(statistics.median(timings["embed"]), 1),
            query_embedding_p95_ms=_pct(timings["embed"], 0.95),
            chroma_disk_mb=round(disk / 1024**2, 1),
            process_memory_mb=round(max(0, rss_after - rss_before) / 1024**2, 1),
            peak_memory_mb=round(_peak_rss_bytes() / 1024**2, 1),
            load_average_1m=round(max(loads), 1),
            vector_paths=paths,
        )
    finally:
        keyword_cache.clear()
        forget_clients()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)


def run_benchmark(
    sizes: list[int], *, searches: int = 200, note: Note = lambda _: None
) -> dict[str, Any]:
    """Every size in turn; the figures with the machine they were measured on."""
    settings = get_settings()
    results = [bench_size(settings, n, searches=searches, note=note) for n in sizes]
    return {
        "machine": machine(),
        "embeddings": settings.embeddings,
        "chroma": "server " + settings.chroma_url if settings.chroma_url else "embedded",
        "load_average_1m": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "searches_per_size": searches,
        "sizes": [vars(r) for r in results],
    }
