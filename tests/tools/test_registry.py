"""The registry: schemas from signatures and docstrings, validation, read-only reads."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tools.context import Actor, ToolContext
from tools.registry import (
    REGISTRY,
    InvalidArguments,
    NotFound,
    Refused,
    call_tool,
    run_tool,
    tool,
)


class Echo(BaseModel):
    word: str
    times: int


@tool(name="test_echo", category="test")
def _echo(ctx: ToolContext, *, word: str, times: int = 1) -> Echo:
    """Repeat a word.

    Args:
        word: The word to repeat.
        times: How many times.
    """
    if word == "missing":
        raise NotFound("no such word")
    return Echo(word=word * times, times=times)


@tool(name="test_sneaky_write", category="test")
def _sneaky(ctx: ToolContext, *, value: int) -> int:
    """A read tool that tries to write.

    Args:
        value: Anything.
    """
    ctx.session.execute(text("CREATE TEMP TABLE sneaky (x int)"))
    return value


@tool(name="test_read_settings", category="test")
def _read_settings(ctx: ToolContext) -> list[str]:
    """The settings a read tool runs with."""
    row = ctx.session.execute(
        text(
            "SELECT current_setting('max_parallel_workers_per_gather'), current_setting('work_mem')"
        )
    ).one()
    return [str(row[0]), str(row[1])]


@tool(name="test_write", category="test", writes=True)
def _write(ctx: ToolContext, *, value: int) -> int:
    """A write tool.

    Args:
        value: Anything.
    """
    return value


def _ctx(db, role: str = "admin") -> ToolContext:
    return ToolContext(session=db, actor=Actor(id=1, email="a@x", name="A", role=role))  # type: ignore[arg-type]


def test_schema_comes_from_signature_and_docstring() -> None:
    schema = REGISTRY["test_echo"].openai_schema()
    assert schema["function"]["description"] == "Repeat a word."
    params = schema["function"]["parameters"]
    assert params["required"] == ["word"]
    assert params["properties"]["word"]["description"] == "The word to repeat."
    assert params["properties"]["times"]["default"] == 1


def test_bad_arguments_name_the_field(db) -> None:
    with pytest.raises(InvalidArguments) as info:
        call_tool(_ctx(db), "test_echo", {"word": "a", "times": "many"})
    assert info.value.errors[0]["loc"] == ["times"]
    with pytest.raises(InvalidArguments):
        call_tool(_ctx(db), "test_echo", {"word": "a", "colour": "red"})


def test_tool_errors_come_back_as_data(db) -> None:
    result = run_tool(_ctx(db), "test_echo", {"word": "missing"})
    assert not result.ok and result.error == {"error": "not_found", "message": "no such word"}
    ok = run_tool(_ctx(db), "test_echo", {"word": "ab", "times": 2})
    assert ok.ok and ok.result == {"word": "abab", "times": 2}


def test_read_tools_cannot_write(db) -> None:
    with pytest.raises(DBAPIError, match="read-only transaction"):
        run_tool(_ctx(db), "test_sneaky_write", {"value": 1})
    # the session is still usable afterwards, and writable again
    assert db.execute(text("SELECT 1")).scalar() == 1
    assert db.execute(text("SHOW transaction_read_only")).scalar() == "off"


def test_a_read_tool_leaves_the_transaction_writable(db) -> None:
    """The read-only part ends with the tool, whether it answers or fails, and so do the
    settings read tools run with (no parallel workers, a larger work_mem)."""
    settings = (
        "SELECT current_setting('max_parallel_workers_per_gather'), current_setting('work_mem')"
    )
    before = db.execute(text(settings)).one()
    assert call_tool(_ctx(db), "test_read_settings") == ["0", "16MB"]
    run_tool(_ctx(db), "test_echo", {"word": "ab"})
    run_tool(_ctx(db), "test_echo", {"word": "missing"})
    assert db.execute(text("SHOW transaction_read_only")).scalar() == "off"
    assert db.execute(text(settings)).one() == before
    db.execute(text("CREATE TEMP TABLE after_read (x int)"))
    db.execute(text("INSERT INTO after_read VALUES (1)"))
    assert db.execute(text("SELECT count(*) FROM after_read")).scalar() == 1


def test_viewers_cannot_call_write_tools(db) -> None:
    with pytest.raises(Refused):
        call_tool(_ctx(db, "viewer"), "test_write", {"value": 1})
    assert call_tool(_ctx(db, "rep"), "test_write", {"value": 1}) == 1
