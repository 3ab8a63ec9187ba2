"""Serving the app from several processes, each with a listening socket of its own.

uvicorn's `--workers N` binds one socket in its parent and hands it to every worker; all of them
accept from it, and whichever is awake first takes the connections waiting. Clients that keep
their connections open (webhook providers, load balancers, proxies) then stay with the worker
that took them: a burst of new connections usually lands on one worker, and since each worker
runs the webhook turns it receives (without `REDIS_URL`), one process does most of the work
while the other cores idle. Measured with `mangalm bench twilio --web-workers 2`: one worker
took 80-90% of the turns in some runs.

Here each worker binds its own socket to the same address with `SO_REUSEPORT`, and the kernel
spreads new connections over the sockets by a hash of their addresses, so the connections (and
with them the turns) divide evenly whichever worker is awake. uvicorn's supervisor hands its
one socket to every worker, so the supervision is done here as uvicorn does it: start the
workers, start a worker again when one ends (unless it could not start at all), and stop them
all on SIGINT or SIGTERM. Each worker is a `uvicorn.Server` running the app factory
`api.main:create_app`, as with `--workers`.

Linux shares a port between sockets with `SO_REUSEPORT` only among sockets of the same user.
Elsewhere (macOS and the BSDs accept the option but do not spread connections) the shared
socket of uvicorn's `--workers` is used instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("mangalm.serve")

APP = "api.main:create_app"
# A worker that ends with this code could not start (uvicorn's own code for it): starting it
# again would fail the same way, so the server stops instead.
STARTUP_FAILURE = 3
CHECK_SECONDS = 0.5


class ServeError(RuntimeError):
    """The server cannot listen (the address is taken, or not available here)."""


def reuse_port_supported() -> bool:
    """Whether the kernel spreads connections over sockets sharing a port: Linux does (macOS
    and the BSDs accept the option but give the connections to one socket)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _tcp_socket(host: str) -> socket.socket:
    """A TCP socket for `host` (IPv6 for an address with colons), with `SO_REUSEADDR`."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def reuse_port_socket(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A TCP socket listening on (host, port) with `SO_REUSEPORT`."""
    sock = _tcp_socket(host)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _worker(app: str, host: str, port: int, options: dict[str, Any]) -> None:  # pragma: no cover
    """One worker process: its own socket, then uvicorn serving the app on it until stopped.
    A worker that never started serving (the app could not be loaded or its start-up failed)
    ends with `STARTUP_FAILURE`."""
    import uvicorn

    try:
        sock = reuse_port_socket(host, port)
    except OSError as error:
        logging.getLogger("uvicorn.error").error("cannot listen on %s:%s: %s", host, port, error)
        raise SystemExit(STARTUP_FAILURE) from None
    config = uvicorn.Config(app, factory=True, host=host, port=port, **options)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except BaseException:
        if server.started:
            raise
        logging.getLogger("uvicorn.error").exception("the app could not start")
    if not server.started:
        # At once: whatever the failed start left running must not keep the process alive.
        os._exit(STARTUP_FAILURE)


@dataclass
class Workers:
    """`count` worker processes serving the app on (host, port), each with its own socket."""

    host: str
    port: int
    count: int
    options: dict[str, Any] = field(default_factory=dict)
    app: str = APP
    processes: list[multiprocessing.process.BaseProcess] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    failed: bool = False

    def check_address(self) -> None:
        """Fail now, named, if anything listens on the address already. The probe does not ask
        for `SO_REUSEPORT`, so it fails even against another server started this way (which
        the workers' sockets would otherwise join, splitting the traffic between the two)."""
        probe = _tcp_socket(self.host)
        try:
            probe.bind((self.host, self.port))
        except OSError as error:
            raise ServeError(f"cannot listen on {self.host}:{self.port}: {error}") from None
        finally:
            probe.close()

    def _start_one(self) -> multiprocessing.process.BaseProcess:
        process = multiprocessing.get_context("spawn").Process(
            target=_worker,
            args=(self.app, self.host, self.port, self.options),
            name="mangalm-web",
        )
        process.start()
        return process

    def start(self) -> None:
        self.check_address()
        self.processes = [self._start_one() for _ in range(self.count)]

    def keep_alive(self) -> None:
        """Start again each worker that ended; stop everything if one could not start."""
        for index, process in enumerate(self.processes):
            if process.is_alive() or self.stopping.is_set():
                continue
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %s could not start: stopping the server", process.pid)
                self.failed = True
                self.stopping.set()
                return
            log.warning(
                "worker %s ended (exit code %s): starting another", process.pid, process.exitcode
            )
            self.processes[index] = self._start_one()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to every worker (uvicorn finishes the requests in hand), then wait."""
        self.stopping.set()
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM (or a worker that cannot start)."""
        previous = {
            sig: signal.signal(sig, lambda *_: self.stopping.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.start()
            while not self.stopping.wait(CHECK_SECONDS):
                self.keep_alive()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.failed:
            raise ServeError("a worker could not start (see the log above)")


def serve_workers(host: str, port: int, workers: int, **options: Any) -> None:
    """Serve the app from `workers` processes (see the module docstring); `options` go to
    `uvicorn.Config` (log_level, timeout_keep_alive, ...)."""
    if not reuse_port_supported():  # pragma: no cover - not Linux
        import uvicorn

        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, **options)
        return
    Workers(host, port, workers, options).run()
