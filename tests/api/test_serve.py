"""`mangalm serve --workers N`: each worker listens on a socket of its own, the kernel spreads
the connections over them, a worker that dies is replaced, and SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from api.serve import ServeError, Workers, reuse_port_socket
from tools.bench import free_port

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")


def _workers(server: psutil.Process) -> list[psutil.Process]:
    """The server's live uvicorn workers (multiprocessing's helper processes, and a worker
    that ended and is not yet reaped, left out)."""
    workers = []
    for child in server.children():
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:  # ended meanwhile, or a zombie until the server reaps it
            continue
        if "resource_tracker" not in command and "forkserver" not in command:
            workers.append(child)
    return workers


def _connections(worker: psutil.Process) -> list[Any]:
    try:
        return list(worker.net_connections("tcp"))
    except psutil.Error:
        return []


def _wait_up(base: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)


@pytest.fixture()
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "MANGALM_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "2"]
        + ["--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_up(f"http://127.0.0.1:{port}", process)
        # Both workers listening (the first answer may come before the second has started).
        deadline = time.monotonic() + 60
        while len(_listening(psutil.Process(process.pid), port)) < 2:
            assert time.monotonic() < deadline, "two workers never listened"
            time.sleep(0.2)
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _listening(server: psutil.Process, port: int) -> set[int]:
    return {
        worker.pid
        for worker in _workers(server)
        for conn in _connections(worker)
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
    }


def _held(server: psutil.Process, port: int) -> dict[int, int]:
    """Established connections to `port` per worker."""
    return {
        worker.pid: sum(
            1
            for conn in _connections(worker)
            if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == port
        )
        for worker in _workers(server)
    }


def test_kept_alive_connections_are_spread_over_the_workers(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = served
    server = psutil.Process(process.pid)
    # Thirty-two connections opened at once and kept open, as a webhook provider's are: with
    # one shared socket, the worker awake first would take most of them.
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}") for _ in range(32)]
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        held = _held(server, port)
        assert len(held) == 2
        assert sum(held.values()) == 32
        # A hash of 32 addresses puts all of them on one of two sockets with probability 2^-31.
        assert min(held.values()) > 0
    finally:
        for client in clients:
            client.close()


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_them_all(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = served
    server = psutil.Process(process.pid)
    first = _listening(server, port)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = _listening(server, port)
        if len(now) == 2 and victim not in now:
            break
        assert time.monotonic() < deadline, f"no replacement worker: {now}"
        time.sleep(0.2)
    for _ in range(10):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    workers = _workers(server)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive


def test_a_second_server_on_the_same_address_is_refused() -> None:
    # Another server started this way: its workers' sockets allow sharing the port, so the new
    # workers could join them; the check refuses before any worker starts.
    running = reuse_port_socket("127.0.0.1", 0)
    try:
        port = running.getsockname()[1]
        workers = Workers("127.0.0.1", port, 2)
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            workers.start()
        assert workers.processes == []
    finally:
        running.close()


def test_an_address_taken_by_another_program_is_refused_before_any_worker_starts() -> None:
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        workers = Workers("127.0.0.1", port, 2)
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            workers.start()
        assert workers.processes == []
        result = subprocess.run(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    finally:
        taken.close()


def test_a_worker_that_cannot_start_stops_the_server_instead_of_restarting_forever() -> None:
    workers = Workers("127.0.0.1", free_port(), 2, {"log_level": "critical"})
    workers.app = "tests.api.broken_app:create_app"
    started = time.monotonic()
    with pytest.raises(ServeError, match="could not start"):
        workers.run()
    assert time.monotonic() - started < 60
    assert all(not process.is_alive() for process in workers.processes)
