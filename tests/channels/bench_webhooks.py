"""Benchmark of the WhatsApp (Meta) webhook: acknowledgement latency and end-to-end throughput.

    .venv/bin/python -m tests.channels.bench_webhooks [--messages 2000] [--concurrency 32]
        [--redis redis://127.0.0.1:6379/14 --workers 2]

What it does, all on loopback: makes a fresh database on the local PostgreSQL with reps and
stores, starts the app (`uvicorn api.main:create_app --factory`) in its own process with the
offline planner, and a fake Graph API in this process that records each reply. A bounded
asyncio/httpx loop then posts signed webhook bodies (each a new message id, from one of the
reps, asking a store's outstanding), timing each acknowledgement, and waits until every reply
has reached the fake Graph API. With `--redis` the app only enqueues and `--workers` processes
of `mangalm worker` run the turns.

Each message goes the whole way: signature check, window record, dedup claim, offline plan
and tool call on Postgres, audit row, reply POSTed to the provider.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from tests.channels.support import FakeGraphApi, free_port, serve
from tests.factories import make_product, make_stock, make_store, make_user
from tools.db import make_engine
from tools.migrate import upgrade

APP_SECRET = "bench-app-secret"
TOKEN = "bench-access-token"
PHONE_ID = "1000000001"
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def make_database(reps: int) -> tuple[str, list[tuple[str, str]]]:
    """A migrated database with `reps` reps (phone numbers) and a store each."""
    name = f"mangalm_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    people: list[tuple[str, str]] = []
    with Session(engine) as session:
        product = make_product(session, sku="BENCH-1", name="Bench Biscuits")
        make_stock(session, product, 100000)
        for i in range(reps):
            rep = make_user(session, "rep", name=f"Bench Rep {i}")
            rep.phone = f"+91 90000 {i:05d}"
            store = make_store(session, rep, name=f"Bench Store {i}", credit_limit=Decimal("90000"))
            people.append((f"919000{i:06d}"[-12:], store.name))
        session.commit()
    engine.dispose()
    return url, people


def drop_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def body_for(sender: str, question: str) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "+91 80 0000 0000",
                                    "phone_number_id": PHONE_ID,
                                },
                                "contacts": [{"profile": {"name": "Rep"}, "wa_id": sender}],
                                "messages": [
                                    {
                                        "from": sender,
                                        "id": f"wamid.bench.{uuid.uuid4().hex}",
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": question},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the app exited during start-up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("the app did not start")


async def load(
    url: str, bodies: list[bytes], concurrency: int, graph: FakeGraphApi, timeout: float
) -> dict[str, float]:
    acks: list[float] = []
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=url, limits=httpx.Limits(max_connections=concurrency), timeout=30
    ) as http:

        async def one(body: bytes) -> None:
            signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
            async with slots:
                started = time.perf_counter()
                response = await http.post(
                    "/whatsapp/meta/webhook",
                    content=body,
                    headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
                )
                acks.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(body) for body in bodies))
        sent = time.perf_counter() - started
        while len(graph.messages) < len(bodies):
            if time.perf_counter() - started > timeout:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    acks.sort()
    return {
        "messages": len(bodies),
        "replies": len(graph.messages),
        "ack_p50_ms": statistics.median(acks),
        "ack_p99_ms": acks[min(len(acks) - 1, int(len(acks) * 0.99))],
        "ack_max_ms": acks[-1],
        "enqueue_seconds": sent,
        "end_to_end_seconds": elapsed,
        "messages_per_second": len(graph.messages) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    db_url, people = make_database(args.reps)
    graph = FakeGraphApi(TOKEN)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with serve(graph.app()) as graph_url:
            env = {
                **os.environ,
                "DATABASE_URL": db_url,
                "ENVIRONMENT": "test",
                "SECRET_KEY": "bench-secret-key-0123456789-0123456789",
                "META_APP_SECRET": APP_SECRET,
                "META_VERIFY_TOKEN": "bench-verify",
                "META_ACCESS_TOKEN": TOKEN,
                "META_PHONE_NUMBER_ID": PHONE_ID,
                "META_GRAPH_BASE_URL": graph_url,
                "RATE_LIMIT_PER_USER": "100000/minute",
                "RATE_LIMIT_PER_CHANNEL": "1000000/minute",
                "DIGEST_ENABLED": "false",
                "LOG_LEVEL": "WARNING",
                "MANGALM_HOME": os.path.abspath(".mangalm-bench"),
            }
            if args.redis:
                env["REDIS_URL"] = args.redis
            port = free_port()
            app_url = f"http://127.0.0.1:{port}"
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "api.main:create_app",
                        "--factory",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    env=env,
                )
            )
            if args.redis:
                for _ in range(args.workers):
                    processes.append(
                        subprocess.Popen([sys.executable, "-m", "api.cli", "worker"], env=env)
                    )
            wait_until_up(app_url, processes[0])

            def bodies(n: int) -> list[bytes]:
                return [
                    body_for(
                        people[i % len(people)][0],
                        f"how much does {people[i % len(people)][1]} owe?",
                    )
                    for i in range(n)
                ]

            # Warm-up: the planner's classifier is fitted on the first turn.
            asyncio.run(load(app_url, bodies(args.warmup), 4, graph, args.timeout))
            sample = graph.messages[-1]
            graph.messages.clear()
            figures = asyncio.run(
                load(app_url, bodies(args.messages), args.concurrency, graph, args.timeout)
            )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        drop_database(db_url)
    report = {
        "mode": f"redis + {args.workers} worker(s)" if args.redis else "in process",
        "concurrency": args.concurrency,
        "reps": args.reps,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "sample_reply": sample,
        **{k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()},
    }
    sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
