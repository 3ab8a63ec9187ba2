"""The Twilio benchmark's harness: it serves the code it was imported from, whatever the
current directory; reads callgrind's totals; keeps sending when the app closes a connection."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from channels.twilio_bench import SOURCE, server_command


def test_the_served_app_is_imported_from_the_benchmarks_checkout(tmp_path: Path) -> None:
    # Another checkout's `api` package in the current directory must not be the one served.
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "__init__.py").write_text("")
    (tmp_path / "api" / "main.py").write_text("raise SystemExit('the wrong checkout')\n")
    command = server_command(8000)
    assert command[command.index("--app-dir") + 1] == str(SOURCE)
    assert "--workers" not in command
    # What uvicorn does with --app-dir before importing the app.
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import api.main; print(api.main.__file__)"
    found = subprocess.run(
        [sys.executable, "-P", "-c", probe, str(SOURCE)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found) == SOURCE / "api" / "main.py"
    # Several web processes: `mangalm serve --workers`, run with `-P` and SOURCE first on
    # PYTHONPATH (as the benchmark does); its spawned workers inherit that import path.
    command = server_command(8000, web_workers=2)
    assert command[:5] == [sys.executable, "-P", "-m", "api.cli", "serve"]
    assert command[command.index("--workers") + 1] == "2"
    spawned = (
        "import multiprocessing as m, sys\n"
        "def where():\n"
        "    import api.main; print(api.main.__file__)\n"
        "if __name__ == '__main__':\n"
        "    p = m.get_context('spawn').Process(target=where); p.start(); p.join()\n"
    )
    (tmp_path / "probe.py").write_text(spawned)
    found = subprocess.run(
        [sys.executable, "-P", str(tmp_path / "probe.py")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found) == SOURCE / "api" / "main.py"


CALLGRIND_DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 9009
cmd:  python -m uvicorn api.main:create_app
part: 1

desc: I1 cache:
positions: line
events: Ir Dr
summary: 3483073380 120
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
12 3483073380 120
totals: 3483073380 120
"""


def test_callgrind_totals_are_read_as_instructions() -> None:
    from channels.twilio_bench import callgrind_instructions

    assert callgrind_instructions(CALLGRIND_DUMP) == 3483073380
    # The column of Ir, wherever it is.
    swapped = CALLGRIND_DUMP.replace("events: Ir Dr", "events: Dr Ir").replace(
        "totals: 3483073380 120", "totals: 120 3483073380"
    )
    assert callgrind_instructions(swapped) == 3483073380
    with pytest.raises(ValueError, match="no instructions"):
        callgrind_instructions(CALLGRIND_DUMP.replace("events: Ir Dr", "events: Dr Dw"))
    with pytest.raises(ValueError, match="no totals"):
        callgrind_instructions("events: Ir\n")


def test_instructions_need_one_web_process_running_its_own_turns() -> None:
    from channels.twilio_bench import run_benchmark
    from tools.settings import load_settings

    with pytest.raises(ValueError, match="one web process"):
        run_benchmark(load_settings(), None, instructions=True, web_workers=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one web process"):
        run_benchmark(
            load_settings(),
            None,  # type: ignore[arg-type]
            instructions=True,
            redis_url="redis://127.0.0.1:6379/0",
        )


def test_the_load_generator_reconnects_when_the_app_closed_an_idle_connection() -> None:
    """uvicorn closes a kept-alive connection idle for 5 s; a slow open loop leaves them idle
    that long. Here the server closes every connection after one answer: each message still
    goes out (on a new connection) and is acknowledged."""
    from channels.twilio_bench import _send_all

    received: list[bytes] = []

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        received.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def run() -> tuple[list[float], float]:
        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        requests = [
            b"POST /twilio/sms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nn=%03d" % i
            for i in range(12)
        ]
        try:
            # (A post on a closed connection would wait for its answer forever.)
            return await asyncio.wait_for(
                _send_all(f"http://127.0.0.1:{port}", requests, 2, rate=40.0), 20
            )
        finally:
            server.close()
            await server.wait_closed()

    acks, _ = asyncio.run(run())
    assert len(acks) == 12
    assert sorted(received) == [b"n=%03d" % i for i in range(12)]
