"""Benchmark of the Twilio SMS webhook path: acknowledgement latency and messages per second.

`run_benchmark(settings, ...)` serves the app with uvicorn in a child process on loopback (the
offline planner, the in-process turn queue, the database of `settings`), answers the Twilio
REST calls with a local recording server in this process, and sends signed inbound SMS from
the database's reps ("outstanding for <one of their stores>") with a bounded number of
concurrent senders. Every webhook is verified, deduplicated, planned, answered through the
Twilio client and recorded by the local server, so messages per second are end to end.

The harness shares the machine's cores with the app, so it is kept cheap: the load generator
and the fake Twilio run on one event loop (uvloop when installed), speak HTTP/1.1 over
kept-alive connections parsed by httptools, and the webhooks are signed before the clock
starts (each with a new MessageSid, signed with twilio's `RequestValidator` as Twilio would).

The figures: ack latency p50/p95/p99 (request sent to `200 <Response/>` received),
sustained messages per second (first request sent to last reply recorded), and the CPU time
per message of every process involved (`CpuMeter`: the web server, the workers, the
PostgreSQL backends of the database, this process), with the machine's busy time per message
beside them (other work on the machine included). CPU per message is the steadier figure on
a shared machine. Per-user rate limits are lifted in the child process: the load comes from
a handful of reps.

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
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httptools
import httpx
import psutil
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from tools.bench import machine
from tools.models import Store, User
from tools.settings import Settings

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token-" + "0" * 16
SMS_FROM = "+15005550006"


class RecordingTwilio:
    """Answers `POST .../Messages.json` like Twilio and notes when each reply arrived.

    A small HTTP/1.1 server on the benchmark's event loop (httptools parses the requests;
    connections are kept alive, as the twilio client's session expects): the harness's own
    CPU is spent on the same cores as the app's, so it is kept to little per reply.
    """

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self._target = 0
        self._reached: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self.connections: set[_TwilioConnection] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    async def start(self) -> None:
        """Serve on the listening socket (requests sent earlier wait in its backlog)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TwilioConnection(self), sock=self.sock)

    def arrived(self) -> None:
        self.arrivals.append(time.perf_counter())
        if self._reached is not None and len(self.arrivals) >= self._target:
            self._reached.set()

    def count(self) -> int:
        return len(self.arrivals)

    async def wait_for(self, count: int, timeout: float) -> None:
        """Wait until `count` replies have arrived in all (RuntimeError after `timeout`)."""
        self._target, self._reached = count, asyncio.Event()
        if self.count() >= count:
            return
        try:
            await asyncio.wait_for(self._reached.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(f"only {self.count()} of {count} replies arrived") from None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.close()
            await self._server.wait_closed()
        self.sock.close()


class _TwilioConnection(asyncio.Protocol):
    """One connection to `RecordingTwilio`: each POST to the Messages resource is recorded
    and answered 201 with a new message SID; anything else gets 404."""

    def __init__(self, recorder: RecordingTwilio) -> None:
        self.recorder = recorder
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.recorder.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.recorder.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        assert self.transport is not None
        url, self.url = self.url, b""
        if self.parser.get_method() == b"POST" and url.endswith(b"/Messages.json"):
            self.recorder.arrived()
            status = b"201 Created"
            body = json.dumps({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}).encode()
        else:
            status, body = b"404 Not Found", b'{"status": 404}'
        keep_alive = self.parser.should_keep_alive()
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (status, len(body), b"" if keep_alive else b"Connection: close\r\n", body)
        )
        if not keep_alive:
            self.transport.close()


class _WebhookConnection(asyncio.Protocol):
    """A kept-alive connection of the load generator: posts one request at a time and
    returns the status code of its response (httptools parses the responses)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the app closed the connection"))

    async def post(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


class CpuMeter:
    """CPU seconds used by the processes of a run, read with psutil before, during and after.

    `watch(name, pids)` says which processes count under `name` (a callable, asked at every
    sample: child processes and database backends come and go); the sampler notes each
    process's user + system time every `interval` seconds, so a process that ends during the
    run (a closed database connection) still counts up to its last sample. A process that
    started after `start()` counts from zero. The machine's busy time (all processes, other
    work included) is read from the kernel's counters over the same span.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self._sources: dict[str, Callable[[], list[int]]] = {}
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._started = 0.0
        self._machine_start: Any = None
        self._machine_busy = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, name: str, pids: Callable[[], list[int]]) -> None:
        self._sources[name] = pids

    def _sample(self) -> None:
        for name, source in self._sources.items():
            try:
                pids = source()
            except Exception:  # a source that cannot answer (a closing database) skips a beat
                continue
            for pid in pids:
                try:
                    process = psutil.Process(pid)
                    times = process.cpu_times()
                    created = process.create_time()
                except psutil.Error:
                    continue
                used = times.user + times.system
                key = (name, pid)
                if key not in self._first:
                    self._first[key] = 0.0 if created >= self._started else used
                self._last[key] = used

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._started = time.time()
        self._machine_start = psutil.cpu_times()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        end = psutil.cpu_times()
        idle = ("idle", "iowait")
        self._machine_busy = sum(
            getattr(end, f) - getattr(self._machine_start, f)
            for f in end._fields
            if f not in idle and f not in ("guest", "guest_nice")
        )

    def seconds(self) -> dict[str, float]:
        """CPU seconds by watched name, "total" (their sum) and "machine" (every process)."""
        used: dict[str, float] = dict.fromkeys(self._sources, 0.0)
        for key, last in self._last.items():
            used[key[0]] += max(0.0, last - self._first[key])
        used["total"] = sum(used.values())
        used["machine"] = self._machine_busy
        return used


SOURCE = Path(__file__).resolve().parent.parent
"""The checkout this benchmark was imported from: the app and workers it starts run its code."""


class InstructionCounter:
    """The instructions the web process runs for the measured messages (`instructions=True`):
    the process runs under valgrind's callgrind with instrumentation off (start-up and warm-up
    at valgrind's lighter pace), switched on with `callgrind_control` for the measured messages
    and dumped once their replies are in.

    Instructions do not depend on how fast the machine is at the moment or on what else it
    runs, so they compare two versions of the code where messages per second and CPU time
    cannot: on this benchmark's machine the same code cost 5.6 to 9.8 ms of CPU per message
    from one run to the next, and the same instruction count within 0.2%. The web process
    runs 30 to 50 times slower meanwhile: use a low open-loop rate (about 2 messages a second)
    and a few hundred messages. Counted in the web process only (its threads included); the
    database's and the harness's work is not.
    """

    def __init__(self) -> None:
        for tool in ("valgrind", "callgrind_control"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"counting instructions needs valgrind ({tool} not found)")
        self._directory = tempfile.TemporaryDirectory(prefix="mangalm-callgrind-")
        self.out = Path(self._directory.name) / "callgrind.out"
        self.pid: int | None = None

    def wrap(self, command: list[str]) -> list[str]:
        """`command` run under callgrind, instrumentation off until `start`."""
        return [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={self.out}",
            *command,
        ]

    def _control(self, *options: str) -> None:
        assert self.pid is not None
        subprocess.run(
            ["callgrind_control", *options, str(self.pid)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self._control("--instr=on")

    def stop(self) -> None:
        self._control("--dump")
        self._control("--instr=off")

    def cleanup(self) -> None:
        """Remove callgrind's output files."""
        self._directory.cleanup()

    def count(self) -> int:
        """The instructions in the dump that `stop` asked for."""
        dumps = sorted(self.out.parent.glob(self.out.name + ".*"))
        if not dumps:
            raise RuntimeError("callgrind wrote no dump")
        return callgrind_instructions(dumps[0].read_text())


def callgrind_instructions(dump: str) -> int:
    """The total instructions (`Ir`) of a callgrind output file."""
    events: list[str] = []
    found: dict[str, int] = {}
    for line in dump.splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("totals:", "summary:")):
            if "Ir" not in events:
                raise ValueError("the callgrind output counts no instructions (Ir)")
            found[line.split(":")[0]] = int(line.split()[1 + events.index("Ir")])
    if not found:
        raise ValueError("the callgrind output has no totals")
    return found.get("totals", found.get("summary", 0))


def server_command(port: int, web_workers: int = 1) -> list[str]:
    """The command that serves the app for the benchmark on loopback, importing the app from
    `SOURCE` whatever the current directory: uvicorn for one process (uvicorn puts its
    `--app-dir`, by default the current directory, first on the import path), `mangalm serve
    --workers N` for several (each with a socket of its own, as in production; the caller
    puts `SOURCE` first on PYTHONPATH and `-P` keeps the current directory off)."""
    if web_workers > 1:
        return [sys.executable, "-P", "-m", "api.cli", "serve", "--host", "127.0.0.1"] + [
            "--port",
            str(port),
            "--workers",
            str(web_workers),
            "--log-level",
            "warning",
        ]
    return (
        [sys.executable, "-P", "-m", "uvicorn", "api.main:create_app", "--factory"]
        + ["--app-dir", str(SOURCE), "--host", "127.0.0.1", "--port", str(port)]
        + ["--log-level", "warning"]
    )


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


def _signed_requests(
    base: str, pairs: list[tuple[str, str]], count: int, channel: str = "sms"
) -> list[bytes]:
    """`count` inbound SMS (or WhatsApp) webhooks as raw HTTP/1.1 requests, each with a new
    MessageSid and Twilio's signature over the public URL (signed before the clock starts)."""
    validator = RequestValidator(AUTH_TOKEN)
    path = f"/twilio/{channel}"
    url = base + path
    host = base.removeprefix("http://")
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    requests = []
    for i in range(count):
        phone, store = pairs[i % len(pairs)]
        sid = "SM" + uuid.uuid4().hex
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": prefix + phone,
            "To": prefix + SMS_FROM,
            "Body": f"outstanding for {store}",
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        body = urlencode(params).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {validator.compute_signature(url, params)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


async def _send_all(
    base: str,
    requests: list[bytes],
    concurrency: int,
    *,
    rate: float | None = None,
) -> tuple[list[float], float]:
    """Post the signed `requests` over `concurrency` kept-alive connections; the ack
    latencies and the messages actually sent per second (first to last post)."""
    loop = asyncio.get_running_loop()
    host, port = base.removeprefix("http://").rsplit(":", 1)
    idle: asyncio.Queue[_WebhookConnection] = asyncio.Queue()
    opened = []
    for _ in range(min(concurrency, len(requests))):
        _, connection = await loop.create_connection(_WebhookConnection, host, int(port))
        opened.append(connection)
        idle.put_nowait(connection)
    acks: list[float] = []
    posted: list[float] = []
    origin = time.perf_counter()

    async def one(i: int, request: bytes) -> None:
        due: float | None = None
        if rate is not None:
            due = origin + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        connection = await idle.get()
        if connection.closed:
            # The app closed it while it was idle (uvicorn's keep-alive timeout, 5 s: a slow
            # open loop leaves connections idle that long): a new one, as a client would.
            _, connection = await loop.create_connection(_WebhookConnection, host, int(port))
            opened.append(connection)
        try:
            posted.append(time.perf_counter())
            started = posted[-1] if due is None else due
            status = await connection.post(request)
            acks.append(time.perf_counter() - started)
        finally:
            idle.put_nowait(connection)
        if status != 200:
            raise RuntimeError(f"the webhook answered {status}")

    try:
        await asyncio.gather(*(one(i, request) for i, request in enumerate(requests)))
    finally:
        for connection in opened:
            if connection.transport is not None:
                connection.transport.close()
    count = len(requests)
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
    channel: str = "sms",
    instructions: bool = False,
) -> dict[str, Any]:
    """Run the load and return the figures (see the module docstring; `rate`: messages per
    second in the open-loop shape, else closed loop; `web_workers`: uvicorn processes serving
    the webhooks, each running its own turns when there is no Redis queue; `channel`: "sms",
    or "whatsapp" for Twilio's WhatsApp webhook, whose turns also record each sender's 24-hour
    window).

    With `redis_url` the turns go through the Redis queue to `workers` `mangalm worker` child
    processes (the production topology: the web process only verifies, deduplicates and
    enqueues), started with `--nice worker_nice`; without it they run in the web process.

    With `instructions` the one web process (turns in process) runs under callgrind and the
    figures add the instructions it ran per measured message (see `InstructionCounter`).
    """
    if workers < 1 or not 0 <= worker_nice <= 19:
        raise ValueError("workers must be at least 1 and worker_nice within 0-19")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if web_workers < 1:
        raise ValueError("web_workers must be at least 1")
    if channel not in ("sms", "whatsapp"):
        raise ValueError("channel must be sms or whatsapp")
    if instructions and (redis_url or web_workers != 1):
        raise ValueError("instructions are counted in one web process running its own turns")
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
            "TWILIO_WHATSAPP_FROM": SMS_FROM,
            "TWILIO_API_BASE_URL": twilio.url,
            "DIGEST_ENABLED": "false",
            "RATE_LIMIT_PER_USER": "1000000/minute",
            "RATE_LIMIT_PER_CHANNEL": "1000000/minute",
            "LOG_LEVEL": "WARNING",
            "LLM_PROVIDER": "none",
            "MANGALM_HOME": str(settings.home),
        }
    )
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    # The children run the code this benchmark was imported from, whatever the current
    # directory (`python -m` would otherwise put it first on the import path: `-P`).
    source = str(SOURCE)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    python = [sys.executable, "-P", "-m"]
    counter = InstructionCounter() if instructions else None
    command = server_command(port, web_workers)
    server = subprocess.Popen(counter.wrap(command) if counter else command, env=env)
    if counter is not None:
        counter.pid = server.pid
    children = [server]
    if redis_url:
        command = [*python, "api.cli", "worker", "--nice", str(worker_nice)]
        children += [subprocess.Popen(command, env=env) for _ in range(workers)]
    try:
        # (Under valgrind the app starts several times slower.)
        deadline = time.monotonic() + (600 if counter else 120)
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.2)
        warmup_requests = _signed_requests(base, pairs, warmup, channel)
        requests = _signed_requests(base, pairs, messages, channel)
        meter, lookup = _meter(engine, server, children[1:])
        try:
            with _event_loop() as runner:
                started, sent, acks, offered = runner.run(
                    _drive(
                        twilio, base, warmup_requests, requests, concurrency, rate, meter, counter
                    )
                )
        finally:
            lookup.close()
        finished = max(twilio.arrivals)
        counted = counter.count() if counter is not None else None
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        twilio.sock.close()
        if counter is not None:
            counter.cleanup()
    wall = finished - started
    ack_ms = [a * 1000 for a in acks]
    cpu = {name: round(used * 1000 / messages, 2) for name, used in meter.seconds().items()}
    figures = {
        "channel": channel,
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
        "cpu_ms_per_message": cpu,
        "machine": machine(),
        "load_average_1m": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
    }
    if counted is not None:
        figures["web_instructions_per_message"] = round(counted / messages)
    return figures


def _event_loop() -> asyncio.Runner:
    """The harness's event loop: uvloop when installed (as uvicorn uses), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _drive(
    twilio: RecordingTwilio,
    base: str,
    warmup: list[bytes],
    requests: list[bytes],
    concurrency: int,
    rate: float | None,
    meter: CpuMeter,
    counter: InstructionCounter | None = None,
) -> tuple[float, float, list[float], float]:
    """Serve the fake Twilio, send the warm-up and wait for its replies, then the measured
    messages: (start, end of sending, ack latencies, offered messages per second). The
    meter (and the instruction counter) run while the measured messages are handled."""
    await twilio.start()
    try:
        if warmup:
            await _send_all(base, warmup, min(concurrency, len(warmup)), rate=rate)
            await twilio.wait_for(len(warmup), 120)
        meter.start()
        if counter is not None:
            counter.start()
        try:
            started = time.perf_counter()
            acks, offered = await _send_all(base, requests, concurrency, rate=rate)
            sent = time.perf_counter()
            await twilio.wait_for(len(warmup) + len(requests), 300)
        finally:
            if counter is not None:
                counter.stop()
            meter.stop()
    finally:
        await twilio.close()
    return started, sent, acks, offered


def _meter(
    engine: Engine, server: subprocess.Popen[bytes], workers: list[Any]
) -> tuple[CpuMeter, Connection]:
    """A `CpuMeter` over this process (the load generator and the fake Twilio), the web
    server's processes, the workers and the PostgreSQL backends of the benchmark's database."""
    meter = CpuMeter()

    def tree(pid: int) -> list[int]:
        try:
            return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []

    lookup = engine.connect()

    def backends() -> list[int]:
        rows = lookup.execute(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        pids = [int(pid) for (pid,) in rows]
        lookup.rollback()
        return pids

    meter.watch("load generator and fake Twilio", lambda: [os.getpid()])
    meter.watch("web", lambda: tree(server.pid))
    if workers:
        meter.watch("workers", lambda: [pid for w in workers for pid in tree(w.pid)])
    meter.watch("postgres", backends)
    return meter, lookup
