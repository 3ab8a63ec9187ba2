"""Benchmark of the Twilio SMS webhook path: acknowledgement latency and messages per second.

`run_benchmark(settings, ...)` serves the app with uvicorn in a child process on loopback (the
offline planner, the in-process turn queue, the database of `settings`), answers the Twilio
REST calls with a local recording server in this process, and sends signed inbound SMS from
the database's reps ("outstanding for <one of their stores>") with a bounded number of
concurrent senders. Every webhook is verified, deduplicated, planned, answered through the
Twilio client and recorded by the local server, so messages per second are end to end.

The figures: ack latency p50/p95/p99 (request sent to `200 <Response/>` received) and
sustained messages per second (first request sent to last reply recorded). Per-user rate
limits are lifted in the child process: the load comes from a handful of reps.

Two load shapes:
- closed loop (default): `concurrency` senders, each posting its next message as soon as the
  previous one is acknowledged. Acknowledgements are cheaper than turns, so the senders run
  ahead of the turns and the ack latency measured is that of a saturated machine.
- open loop (`rate`): messages are due at a fixed rate whatever the answers (as a provider
  delivers them), at most `concurrency` in flight; each ack latency counts from when the
  message was due, so a sender held back by a slow server is counted, not hidden. The figures
  say whether the machine kept up with that rate end to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from tools.bench import machine
from tools.models import Store, User
from tools.settings import Settings

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-" + "0" * 16
SMS_FROM = "+15005550006"


class RecordingTwilio:
    """Answers `POST .../Messages.json` like Twilio and notes when each reply arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with recorder.lock:
                    recorder.arrivals.append(time.perf_counter())
                body = json.dumps({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _senders(engine: Engine) -> list[tuple[str, str]]:
    """(phone, store name) pairs: each active rep with a phone and one of their stores."""
    with Session(engine) as session:
        rows = session.execute(
            select(User.phone, Store.name)
            .join(Store, Store.rep_id == User.id)
            .where(User.role == "rep", User.is_active.is_(True), User.phone.is_not(None))
            .order_by(User.id, Store.id)
        ).all()
    pairs = [(str(phone), str(name)) for phone, name in rows]
    if not pairs:
        raise RuntimeError("no reps with phones and stores: load data first (mangalm demo)")
    return pairs


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def _send_all(
    base: str,
    public: str,
    pairs: list[tuple[str, str]],
    count: int,
    concurrency: int,
    *,
    rate: float | None = None,
) -> tuple[list[float], float]:
    """Post `count` signed messages; the ack latencies and the messages actually sent per
    second (first to last post)."""
    validator = RequestValidator(AUTH_TOKEN)
    slots = asyncio.Semaphore(concurrency)
    acks: list[float] = []
    posted: list[float] = []
    origin = time.perf_counter()

    async def one(client: httpx.AsyncClient, i: int) -> None:
        phone, store = pairs[i % len(pairs)]
        sid = "SM" + uuid.uuid4().hex
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": phone,
            "To": SMS_FROM,
            "Body": f"outstanding for {store}",
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        signature = validator.compute_signature(public + "/twilio/sms", params)
        due: float | None = None
        if rate is not None:
            due = origin + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        async with slots:
            posted.append(time.perf_counter())
            started = posted[-1] if due is None else due
            response = await client.post(
                base + "/twilio/sms",
                content=urlencode(params),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            )
            acks.append(time.perf_counter() - started)
        response.raise_for_status()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        await asyncio.gather(*(one(client, i) for i in range(count)))
    span = max(posted) - min(posted)
    return acks, (count - 1) / span if count > 1 and span > 0 else float(count)


def run_benchmark(
    settings: Settings,
    engine: Engine,
    *,
    messages: int = 400,
    concurrency: int = 16,
    warmup: int = 20,
    redis_url: str | None = None,
    workers: int = 1,
    worker_nice: int = 0,
    rate: float | None = None,
    web_workers: int = 1,
) -> dict[str, Any]:
    """Run the load and return the figures (see the module docstring; `rate`: messages per
    second in the open-loop shape, else closed loop; `web_workers`: uvicorn processes serving
    the webhooks, each running its own turns when there is no Redis queue).

    With `redis_url` the turns go through the Redis queue to `workers` `mangalm worker` child
    processes (the production topology: the web process only verifies, deduplicates and
    enqueues), started with `--nice worker_nice`; without it they run in the web process.
    """
    if workers < 1 or not 0 <= worker_nice <= 19:
        raise ValueError("workers must be at least 1 and worker_nice within 0-19")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if web_workers < 1:
        raise ValueError("web_workers must be at least 1")
    pairs = _senders(engine)
    twilio = RecordingTwilio()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "PUBLIC_BASE_URL": base,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_SMS_FROM": SMS_FROM,
            "TWILIO_API_BASE_URL": twilio.url,
            "DIGEST_ENABLED": "false",
            "RATE_LIMIT_PER_USER": "1000000/minute",
            "RATE_LIMIT_PER_CHANNEL": "1000000/minute",
            "LOG_LEVEL": "WARNING",
            "MANGALM_HOME": str(settings.home),
        }
    )
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory"]
        + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        + (["--workers", str(web_workers)] if web_workers > 1 else []),
        env=env,
    )
    children = [server]
    if redis_url:
        command = [sys.executable, "-m", "api.cli", "worker", "--nice", str(worker_nice)]
        children += [subprocess.Popen(command, env=env) for _ in range(workers)]
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.2)
        asyncio.run(_send_all(base, base, pairs, warmup, min(concurrency, warmup), rate=rate))
        _wait_for(twilio, warmup, 120)
        started = time.perf_counter()
        acks, offered = asyncio.run(_send_all(base, base, pairs, messages, concurrency, rate=rate))
        sent = time.perf_counter()
        _wait_for(twilio, warmup + messages, 300)
        finished = max(twilio.arrivals)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        twilio.close()
    wall = finished - started
    ack_ms = [a * 1000 for a in acks]
    return {
        "messages": messages,
        "concurrency": concurrency,
        "queue": (
            f"redis + {workers} worker process{'es' if workers > 1 else ''}"
            + (f" at nice {worker_nice}" if worker_nice else "")
            if redis_url
            else "in process"
        )
        + (f", {web_workers} web processes" if web_workers > 1 else ""),
        "senders": len({phone for phone, _ in pairs}),
        "ack_ms": {
            "p50": round(statistics.median(ack_ms), 1),
            "p95": round(_percentile(ack_ms, 95), 1),
            "p99": round(_percentile(ack_ms, 99), 1),
        },
        "load": f"open loop at {rate:g} messages/s" if rate is not None else "closed loop",
        "offered_messages_per_second": round(offered, 1),
        "end_to_end_messages_per_second": round(messages / wall, 1),
        "wall_seconds": round(wall, 2),
        "last_reply_after_last_send_seconds": round(max(0.0, finished - sent), 2),
        "machine": machine(),
        "load_average_1m": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
    }


def _wait_for(twilio: RecordingTwilio, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while twilio.count() < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {twilio.count()} of {count} replies arrived")
        time.sleep(0.01)
