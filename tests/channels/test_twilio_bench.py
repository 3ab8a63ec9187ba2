"""The Twilio benchmark serves the code it was imported from, whatever the current directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
