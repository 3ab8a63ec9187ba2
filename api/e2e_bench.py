"""`mangalm bench e2e`: the running product under concurrent users, against the simplest
alternative.

1. The real app (`mangalm serve`) runs in a child process on a free loopback port. Locust (in
   its own process, headless) simulates `users` people chatting for `seconds`: each is a rep
   or a manager of the configured database with a bearer token, asking the questions reps ask
   most (what a store owes, what it ordered last, who has not ordered, sales this month, whom
   to call) about stores they may see, through `POST /api/chat` with the offline planner.
2. The same load, the same people and stores, against `sql_app`: what a team would build
   without an assistant, one endpoint per question that runs the equivalent SQL and returns
   rows (no language understanding, permissions or audit). The assistant's overhead is the
   ratio of the two.
3. The server's resident memory (all its processes) is sampled through the run.

Locust runs as a separate process because it monkey-patches the standard library with gevent.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from tools.bench import BenchError, free_port, machine
from tools.models import Store, User

LOCUSTFILE = Path(__file__).with_name("e2e_locust.py")

# (question asked in chat, SQL endpoint with the same answer). `{store}` is a store's name.
QUESTIONS: list[tuple[str, str]] = [
    ("how much does {store} owe?", "/sql/outstanding?store_id={store_id}"),
    ("what did {store} order last time?", "/sql/last_order?store_id={store_id}"),
    ("which stores have not ordered for 30 days?", "/sql/lapsed?rep_id={rep_id}&days=30"),
    ("sales this month by region", "/sql/sales_by_region?rep_id={rep_id}"),
    ("which stores should I call today?", "/sql/call_list?rep_id={rep_id}"),
]


# --------------------------------------------------------------------------- the alternative


def sql_app() -> Any:
    """The simplest alternative: a FastAPI endpoint per question running hand-written SQL."""
    from fastapi import FastAPI

    from tools.db import get_engine

    engine = get_engine()
    app = FastAPI(title="Direct SQL endpoints")

    def rows(sql: str, **params: Any) -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]

    @app.get("/sql/outstanding")
    def outstanding(store_id: int) -> list[dict[str, Any]]:
        return rows(
            "SELECT number, due_date, amount, paid_amount, due_amount FROM invoices "
            "WHERE store_id = :s AND due_amount > 0 ORDER BY due_date",
            s=store_id,
        )

    @app.get("/sql/last_order")
    def last_order(store_id: int) -> list[dict[str, Any]]:
        return rows(
            "SELECT o.id, o.order_date, o.total_amount, p.name, l.quantity, l.amount "
            "FROM (SELECT * FROM orders WHERE store_id = :s AND status IN ('placed', 'delivered') "
            "ORDER BY order_date DESC, id DESC LIMIT 1) o "
            "JOIN order_lines l ON l.order_id = o.id JOIN products p ON p.id = l.product_id "
            "ORDER BY l.line_no",
            s=store_id,
        )

    @app.get("/sql/lapsed")
    def lapsed(rep_id: int, days: int) -> list[dict[str, Any]]:
        return rows(
            "SELECT s.id, s.name, last.order_date FROM stores s LEFT JOIN LATERAL ("
            "  SELECT order_date FROM orders WHERE store_id = s.id "
            "  AND status IN ('placed', 'delivered') ORDER BY order_date DESC LIMIT 1) last "
            "ON true "
            "WHERE s.rep_id = :r AND s.is_active "
            "AND (last.order_date IS NULL OR last.order_date <= CURRENT_DATE - :d) "
            "ORDER BY last.order_date NULLS LAST, s.id LIMIT 20",
            r=rep_id,
            d=days,
        )

    @app.get("/sql/sales_by_region")
    def sales_by_region(rep_id: int) -> list[dict[str, Any]]:
        return rows(
            "SELECT s.region, sum(l.amount) AS amount, count(DISTINCT o.id) AS orders "
            "FROM orders o JOIN order_lines l ON l.order_id = o.id "
            "JOIN stores s ON s.id = o.store_id "
            "WHERE s.rep_id = :r AND o.status IN ('placed', 'delivered') "
            "AND o.order_date >= date_trunc('month', CURRENT_DATE) GROUP BY s.region "
            "ORDER BY amount DESC",
            r=rep_id,
        )

    @app.get("/sql/call_list")
    def call_list(rep_id: int) -> list[dict[str, Any]]:
        return rows(
            "SELECT s.id, s.name, p.predicted_date, p.probability FROM predictions p "
            "JOIN stores s ON s.id = p.store_id WHERE s.rep_id = :r AND p.kind = 'next_order' "
            "ORDER BY p.probability DESC NULLS LAST LIMIT 20",
            r=rep_id,
        )

    return app


# --------------------------------------------------------------------------- plan and servers


def build_plan(engine: Engine, *, seed: int = 11, stores_per_user: int = 30) -> dict[str, Any]:
    """Who asks what: every active rep and manager with a token, and stores they may see."""
    from api.auth import create_access_token
    from tools.context import Actor, store_scope
    from tools.settings import get_settings

    settings = get_settings()
    rng = random.Random(seed)
    people: list[dict[str, Any]] = []
    with Session(engine) as session:
        users = session.scalars(
            select(User)
            .where(User.role.in_(("rep", "manager")), User.is_active.is_(True))
            .order_by(User.id)
        ).all()
        for user in users:
            actor = Actor.from_user(user)
            stores = session.execute(
                select(Store.id, Store.name, Store.rep_id)
                .where(store_scope(actor), Store.is_active.is_(True), Store.rep_id.is_not(None))
                .order_by(text("random()"))
                .limit(stores_per_user)
            ).all()
            if not stores:
                continue
            people.append(
                {
                    "email": user.email,
                    "token": create_access_token(user, settings, minutes=120).token,
                    "rep_id": user.id if user.role == "rep" else stores[0].rep_id,
                    "stores": [{"id": s.id, "name": s.name, "rep_id": s.rep_id} for s in stores],
                }
            )
    if not people:
        raise BenchError("no active rep or manager with stores in this database")
    rng.shuffle(people)
    return {"people": people, "questions": QUESTIONS}


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn workers)."""
    import psutil

    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            with suppress(psutil.Error):
                total += child.memory_info().rss
        return int(total)
    except psutil.Error:
        return 0


@contextmanager
def _server(command: list[str], ready_path: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                tail = (process.stderr.read() if process.stderr else "")[-2000:]
                raise BenchError(f"the server exited: {tail}")
            try:
                if httpx.get(base + ready_path, timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("the server did not get ready within 180 s")
            time.sleep(0.3)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _locust(
    base: str,
    mode: str,
    plan_path: Path,
    users: int,
    seconds: int,
    workdir: Path,
    think: float = 0.0,
) -> dict[str, Any]:
    """Run locust headless against `base`; the aggregated figures from its CSV."""
    prefix = workdir / f"locust-{mode}"
    env = dict(
        os.environ,
        MANGALM_E2E_PLAN=str(plan_path),
        MANGALM_E2E_MODE=mode,
        MANGALM_E2E_THINK=str(think),
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--users",
            str(users),
            "--spawn-rate",
            # All at once for the ceiling; with think time, people arrive over one pause (a
            # burst of everyone's first question at the same instant is not how people chat).
            str(users if think <= 0 else max(1.0, users / think)),
            "--run-time",
            f"{seconds}s",
            "--host",
            base,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--exit-code-on-error",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    stats_file = Path(f"{prefix}_stats.csv")
    if not stats_file.exists():
        raise BenchError(f"locust produced no statistics: {completed.stderr[-2000:]}")
    with stats_file.open() as handle:
        rows = list(csv.DictReader(handle))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    requests = int(total["Request Count"])
    if requests == 0:
        raise BenchError(f"no {mode} request finished within {seconds} s")

    def ms(value: str) -> float | None:
        return None if value in ("", "N/A") else float(value)

    per_question = {
        r["Name"]: {
            "requests": int(r["Request Count"]),
            "p50_ms": ms(r["50%"]),
            "p95_ms": ms(r["95%"]),
        }
        for r in rows
        if r["Name"] != "Aggregated"
    }
    errors: dict[str, int] = {}
    failures_file = Path(f"{prefix}_failures.csv")
    if failures_file.exists():
        with failures_file.open() as handle:
            for row in csv.DictReader(handle):
                errors[f"{row['Name']}: {row['Error']}"[:300]] = int(row["Occurrences"])
    return {
        "errors": errors,
        "requests": requests,
        "failures": int(total["Failure Count"]),
        "p50_ms": ms(total["50%"]) or 0.0,
        "p95_ms": ms(total["95%"]) or 0.0,
        "p99_ms": ms(total["99%"]) or 0.0,
        # Answered requests over the whole run (locust's own rate uses a shorter window).
        "throughput_per_s": round(requests / seconds, 1),
        "per_question": per_question,
    }


def _warm_up(base: str, plan: dict[str, Any]) -> None:
    """One turn of each question before timing: the classifier and caches load on first use."""
    import httpx

    person = plan["people"][0]
    store = person["stores"][0]
    with httpx.Client(base_url=base, timeout=120) as client:
        for question, _ in plan["questions"]:
            response = client.post(
                "/api/chat",
                json={"text": question.format(store=store["name"])},
                headers={"Authorization": f"Bearer {person['token']}"},
            )
            if response.status_code != 200:
                raise BenchError(f"warm-up turn failed: {response.status_code} {response.text}")


def run_benchmark(
    engine: Engine,
    *,
    users: int = 50,
    seconds: int = 60,
    workers: int = 1,
    compare: bool = True,
    think: float = 0.0,
    note: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """See the module docstring; returns the figures."""
    import importlib.util

    # Only look: importing locust would monkey-patch this process with gevent.
    if importlib.util.find_spec("locust") is None:
        raise BenchError("locust is not installed (pip install 'mangalm[bench]')")
    with engine.connect() as conn:
        size = {
            name: int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            for name in ("stores", "orders", "order_lines", "communications")
        }
        predictions = int(conn.execute(text("SELECT count(*) FROM predictions")).scalar_one())
    if predictions == 0:
        note("no predictions: 'whom to call' answers will say models are not trained")
    plan = build_plan(engine)
    figures: dict[str, Any] = {
        "machine": machine(),
        "data": size,
        "users": users,
        "seconds": seconds,
        "server_workers": workers,
        "think_seconds": think,
        "people": len(plan["people"]),
        "date": dt.date.today().isoformat(),
    }
    env = dict(
        os.environ,
        # Each simulated person asks far faster than a person types; the per-user rate limit
        # would answer most turns with "slow down" and measure nothing.
        RATE_LIMIT_PER_USER="1000000/minute",
        RATE_LIMIT_PER_CHANNEL="1000000/minute",
        LLM_PROVIDER="none",
    )
    with tempfile.TemporaryDirectory(prefix="mangalm-e2e-") as scratch:
        workdir = Path(scratch)
        plan_path = workdir / "plan.json"
        plan_path.write_text(json.dumps(plan))
        note(f"starting the app ({workers} worker(s))")
        serve = [sys.executable, "-m", "api.cli", "serve", "--workers", str(workers)]
        with _server(serve, "/readyz", env) as (base, pid):
            _warm_up(base, plan)
            idle_rss = _rss_bytes(pid)
            peak = [idle_rss]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.5):
                    peak[0] = max(peak[0], _rss_bytes(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            note(f"chat: {users} users for {seconds} s")
            try:
                figures["chat"] = _locust(base, "chat", plan_path, users, seconds, workdir, think)
            finally:
                stop.set()
                sampler.join()
            figures["server_rss_mb"] = {
                "after_start": round(idle_rss / 2**20),
                "peak": round(peak[0] / 2**20),
            }
        if compare:
            note(f"direct SQL endpoints: {users} users for {seconds} s")
            sql = [
                sys.executable,
                "-m",
                "uvicorn",
                "api.e2e_bench:sql_app",
                "--factory",
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ]
            with _server(sql, "/docs", env) as (base, _):
                figures["sql"] = _locust(base, "sql", plan_path, users, seconds, workdir, think)
            chat, direct = figures["chat"], figures["sql"]
            figures["overhead"] = {
                "p50_ratio": round(chat["p50_ms"] / max(direct["p50_ms"], 0.1), 1),
                "p95_ratio": round(chat["p95_ms"] / max(direct["p95_ms"], 0.1), 1),
                "throughput_ratio": round(
                    direct["throughput_per_s"] / max(chat["throughput_per_s"], 0.1), 1
                ),
            }
    return figures
