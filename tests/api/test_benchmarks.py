"""`mangalm bench tools` and `mangalm bench e2e` run for real on a small demo database: the
figures come out complete and nothing fails (the timings themselves belong in BENCHMARKS.md)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine

from tools.db import make_engine
from tools.settings import get_settings

TODAY = dt.date(2026, 3, 31)


@pytest.fixture(scope="module")
def demo_url(create_database: Callable[..., str]) -> str:
    from tools.data.demo import load_demo

    url = create_database(migrate=True)
    engine = make_engine(url)
    load_demo(engine, stores=30, products=40, months=6, seed=7, today=TODAY)
    engine.dispose()
    return url


@pytest.fixture()
def demo_engine(demo_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # The servers the benchmarks start in child processes read the same settings.
    monkeypatch.setenv("DATABASE_URL", demo_url)
    monkeypatch.setenv("SECRET_KEY", "benchmark-secret-key-of-at-least-32-chars")
    get_settings.cache_clear()
    engine = make_engine(demo_url)
    yield engine
    engine.dispose()


def test_bench_tools_times_every_read_tool_through_python_and_rest(demo_engine: Engine) -> None:
    from tools.bench import run_benchmark
    from tools.registry import available_tools

    figures = run_benchmark(
        demo_engine, calls=5, roles=["rep", "admin"], explain_over_ms=0.0, today=TODAY
    )
    # Tools registered by other tests (module `tests...`) have no argument maker: skipped.
    read_tools = {
        t.name
        for t in available_tools()
        if not t.writes and not t.func.__module__.startswith("tests.")
    }
    assert all(name not in read_tools for name in figures["skipped"])
    assert set(figures["tools"]) == {"rep", "admin"}
    assert figures["data"]["stores"] == 30
    for role, rows in figures["tools"].items():
        assert set(rows) == read_tools, role
        for name, row in rows.items():
            assert 0 <= row["python_p50_ms"] <= row["python_p95_ms"], (role, name)
            assert 0 < row["rest_p50_ms"] <= row["rest_p95_ms"], (role, name)
            assert "http_5xx" not in row["errors"], (role, name, row["errors"])
    # Every tool ran over the (zero) threshold, so each has its slowest statement's plan.
    plan = figures["plans"]["sales_summary"][0]
    assert "Execution Time" in plan["plan"] and "SELECT" in plan["sql"]


def test_bench_tools_names_unknown_tools(demo_engine: Engine) -> None:
    from tools.bench import BenchError, run_benchmark

    with pytest.raises(BenchError, match="not read tools: draft_order, nonsense"):
        run_benchmark(demo_engine, tools=["draft_order", "nonsense"], rest=False)


def test_bench_e2e_loads_chat_and_direct_sql(demo_engine: Engine) -> None:
    from api.e2e_bench import run_benchmark

    figures = run_benchmark(demo_engine, users=3, seconds=3)
    for mode in ("chat", "sql"):
        result = figures[mode]
        assert result["requests"] > 0 and result["failures"] == 0, (mode, result)
        assert result["p50_ms"] <= result["p95_ms"]
        assert len(result["per_question"]) >= 1
    assert figures["server_rss_mb"]["peak"] >= figures["server_rss_mb"]["after_start"] > 0
    assert figures["overhead"]["p50_ratio"] > 0


def test_bench_twilio_through_niced_queue_workers(demo_engine: Engine) -> None:
    """The webhook benchmark with the Redis queue and two `mangalm worker --nice` processes:
    every message is answered (the run waits for each reply) and the setup is reported."""
    import redis

    from channels.twilio_bench import run_benchmark

    url = "redis://127.0.0.1:6379/14"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        figures = run_benchmark(
            get_settings(),
            demo_engine,
            # Enough messages for the web process's share (verify, claim, enqueue: about a
            # millisecond each) to span several of the kernel's 10 ms CPU-time ticks.
            messages=40,
            concurrency=4,
            warmup=4,
            redis_url=url,
            workers=2,
            worker_nice=5,
        )
    finally:
        client.flushdb()
        client.close()
    assert figures["queue"] == "redis + 2 worker processes at nice 5"
    assert figures["load"] == "closed loop"
    assert figures["messages"] == 40 and figures["end_to_end_messages_per_second"] > 0
    assert figures["ack_ms"]["p50"] <= figures["ack_ms"]["p99"]
    # The CPU of every process of the run, the workers and their database backends included.
    cpu = figures["cpu_ms_per_message"]
    assert cpu["workers"] > 0 and cpu["postgres"] > 0 and cpu["web"] > 0
    assert cpu["total"] == pytest.approx(
        sum(v for k, v in cpu.items() if k not in ("total", "machine")), abs=0.05
    )
    with pytest.raises(ValueError, match="worker_nice"):
        run_benchmark(get_settings(), demo_engine, redis_url=url, worker_nice=25)
    with pytest.raises(ValueError, match="rate"):
        run_benchmark(get_settings(), demo_engine, rate=0)
    with pytest.raises(ValueError, match="web_workers"):
        run_benchmark(get_settings(), demo_engine, web_workers=0)


def test_bench_twilio_open_loop_paces_the_messages(demo_engine: Engine) -> None:
    """At a fixed rate the messages are spread over count / rate seconds (not sent as fast as
    they are acknowledged), and every one is answered, here by two web processes that each
    run their own turns."""
    from channels.twilio_bench import run_benchmark

    figures = run_benchmark(
        get_settings(), demo_engine, messages=10, concurrency=8, warmup=2, rate=5.0, web_workers=2
    )
    assert figures["load"] == "open loop at 5 messages/s"
    assert figures["queue"] == "in process, 2 web processes"
    # Ten messages due 0.2 s apart: the last is due 1.8 s after the first.
    assert 4.5 <= figures["offered_messages_per_second"] <= 5.5
    assert figures["wall_seconds"] >= 1.8
    assert figures["messages"] == 10 and figures["end_to_end_messages_per_second"] > 0


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_bench_twilio_counts_the_web_processs_instructions_per_message(
    demo_engine: Engine,
) -> None:
    """With `instructions` the web process runs under callgrind: every message is still
    answered, and the instructions of the measured messages come out per message (a turn
    is millions of them)."""
    from channels.twilio_bench import run_benchmark

    figures = run_benchmark(
        get_settings(),
        demo_engine,
        messages=8,
        concurrency=2,
        warmup=2,
        rate=2.0,
        instructions=True,
    )
    assert figures["messages"] == 8 and figures["end_to_end_messages_per_second"] > 0
    assert 1_000_000 < figures["web_instructions_per_message"] < 1_000_000_000


def test_bench_twilio_whatsapp_answers_every_message_and_records_the_windows(
    demo_engine: Engine,
) -> None:
    """Twilio's WhatsApp webhook under the same load: every message answered, each sender's
    24-hour window recorded (by the turn, after the acknowledgement)."""
    from sqlalchemy import text

    from channels.twilio_bench import _senders, run_benchmark

    with demo_engine.begin() as conn:
        conn.execute(text("DELETE FROM channel_windows"))
    figures = run_benchmark(
        get_settings(), demo_engine, messages=20, concurrency=4, warmup=2, channel="whatsapp"
    )
    assert figures["channel"] == "whatsapp"
    assert figures["messages"] == 20 and figures["end_to_end_messages_per_second"] > 0
    phones = {phone.lstrip("+") for phone, _ in _senders(demo_engine)[:20]}
    with demo_engine.connect() as conn:
        windows = set(
            conn.execute(
                text("SELECT address FROM channel_windows WHERE channel = 'whatsapp'")
            ).scalars()
        )
    assert phones <= windows
    with pytest.raises(ValueError, match="channel"):
        run_benchmark(get_settings(), demo_engine, channel="telegram")
