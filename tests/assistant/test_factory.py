"""Building the assistant from settings, and its warm-up before the first turn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def test_warm_up_loads_what_the_first_turn_would_wait_for(db_url: str) -> None:
    """After `warm_up` the tools' modules, the intent classifier and the name indexes are
    loaded: the first message pays for none of them (checked in a fresh interpreter, where
    nothing is imported yet)."""
    script = textwrap.dedent(
        """
        import sys
        from tools.db import make_engine
        from tools.settings import get_settings
        from assistant.factory import build_assistant, warm_up
        from tools.registry import TOOL_MODULES

        engine = make_engine(get_settings().database_url)
        assistant = build_assistant(get_settings(), engine)
        warm_up(assistant)
        from assistant.nlu import entities, intents

        missing = [m for m in TOOL_MODULES if m not in sys.modules]
        assert not missing, missing
        assert intents._classifier is not None
        assert {kind for _, kind in entities._INDEXES} == {"store", "product"}
        print("warm")
        """
    )
    env = {**os.environ, "DATABASE_URL": db_url}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "warm"
