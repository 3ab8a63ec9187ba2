"""The registry: schemas from signatures and docstrings, validation, read-only reads."""

from __future__ import annotations

import uuid

import pytest
from psycopg.pq import TransactionStatus
from pydantic import BaseModel
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tools.context import Actor, ToolContext
from tools.models import User
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


@tool(name="test_count_users", category="test")
def _count_users(ctx: ToolContext) -> int:
    """How many users there are."""
    return int(ctx.session.execute(text("SELECT count(*) FROM users")).scalar_one())


@tool(name="test_add_user", category="test", writes=True)
def _add_user(ctx: ToolContext, *, email: str) -> int:
    """A write tool that adds a user.

    Args:
        email: The new user's e-mail.
    """
    user = User(email=email, name="Added", role="rep")
    ctx.session.add(user)
    ctx.session.flush()
    return user.id


def _open_transaction(session: Session) -> bool:
    driver = session.connection().connection.driver_connection
    return driver.pgconn.transaction_status != TransactionStatus.IDLE  # type: ignore[union-attr]


SETTINGS = "SELECT current_setting('max_parallel_workers_per_gather'), current_setting('work_mem')"


@pytest.mark.parametrize("autocommit", [True, False])
def test_a_read_tool_outside_a_transaction_gets_a_read_only_one_of_its_own(
    db_engine: Engine, autocommit: bool
) -> None:
    """Where no transaction is open (a turn before it writes, in autocommit; a session that
    has not run a statement yet), a read tool runs in a read-only transaction of its own,
    with the read tools' settings, and leaves no transaction open behind it."""
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    with db_engine.connect().execution_options(**options) as conn, Session(bind=conn) as session:
        defaults = session.execute(text(SETTINGS)).one()
        session.commit()
        assert not _open_transaction(session)
        with pytest.raises(DBAPIError, match="read-only transaction"):
            run_tool(_ctx(session), "test_sneaky_write", {"value": 1})
        assert not _open_transaction(session)
        assert call_tool(_ctx(session), "test_read_settings") == ["0", "16MB"]
        assert not _open_transaction(session)
        assert call_tool(_ctx(session), "test_count_users") >= 0
        assert session.execute(text("SHOW transaction_read_only")).scalar() == "off"
        assert session.execute(text(SETTINGS)).one() == defaults
        table = f"after_read_{uuid.uuid4().hex[:8]}"
        session.execute(text(f"CREATE TEMP TABLE {table} (x int)"))
        session.execute(text(f"INSERT INTO {table} VALUES (1)"))
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 1
        session.execute(text(f"DROP TABLE {table}"))
        session.rollback()


def test_a_repeatable_read_transaction_keeps_one_snapshot_across_a_read_tool(
    db_engine: Engine,
) -> None:
    """A caller who asked for repeatable read sees the data as of its first statement, the
    read tool's included: the tool does not get a transaction of its own."""
    conn = db_engine.connect().execution_options(isolation_level="REPEATABLE READ")
    try:
        with Session(bind=conn) as session:
            seen = call_tool(_ctx(session), "test_count_users")
            email = f"rr-{uuid.uuid4().hex[:8]}@example.com"
            with db_engine.begin() as other:
                other.execute(
                    text("INSERT INTO users (email, name, role) VALUES (:e, 'Other', 'rep')"),
                    {"e": email},
                )
            try:
                assert call_tool(_ctx(session), "test_count_users") == seen
                assert session.execute(text("SELECT count(*) FROM users")).scalar() == seen
                session.rollback()
                assert session.execute(text("SELECT count(*) FROM users")).scalar() == seen + 1
                session.rollback()
            finally:
                with db_engine.begin() as other:
                    other.execute(text("DELETE FROM users WHERE email = :e"), {"e": email})
    finally:
        conn.close()


def test_a_write_tool_in_autocommit_opens_a_transaction(db_engine: Engine) -> None:
    """On a connection in autocommit (a turn's), a write tool's writes and what follows them
    commit together, or not at all; a read tool after it runs inside that transaction."""
    email = f"w-{uuid.uuid4().hex[:8]}@example.com"
    with (
        db_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        Session(bind=conn) as session,
    ):
        user_id = call_tool(_ctx(session), "test_add_user", {"email": email})
        assert _open_transaction(session)
        # The read tool sees the transaction's own write, and leaves it open.
        assert call_tool(_ctx(session), "test_count_users") >= 1
        assert (
            session.execute(
                text("SELECT count(*) FROM users WHERE id = :id"), {"id": user_id}
            ).scalar()
            == 1
        )
        assert _open_transaction(session)
        session.rollback()
        assert not _open_transaction(session)
    with db_engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email}).scalar()
            == 0
        )


@tool(name="test_plan_mode_generic", category="test", generic_plans=True)
def _plan_mode_generic(ctx: ToolContext) -> str:
    """The plan cache mode of a tool that lets its statements reuse generic plans."""
    return str(ctx.session.execute(text("SELECT current_setting('plan_cache_mode')")).scalar())


@tool(name="test_plan_mode", category="test")
def _plan_mode(ctx: ToolContext) -> str:
    """The plan cache mode of a tool that plans every execution."""
    return str(ctx.session.execute(text("SELECT current_setting('plan_cache_mode')")).scalar())


@pytest.mark.parametrize("in_transaction", [True, False])
def test_generic_plans_only_for_the_tools_that_ask(db_engine: Engine, in_transaction: bool) -> None:
    """A tool declared with `generic_plans` runs with PostgreSQL's automatic choice of plan;
    every other statement, before and after it, plans each execution for its parameters."""
    options = {} if in_transaction else {"isolation_level": "AUTOCOMMIT"}
    with db_engine.connect().execution_options(**options) as conn, Session(bind=conn) as session:
        if in_transaction:
            session.execute(text("SELECT 1"))
            assert _open_transaction(session)
        mode = "SELECT current_setting('plan_cache_mode')"
        assert session.execute(text(mode)).scalar() == "force_custom_plan"
        assert call_tool(_ctx(session), "test_plan_mode") == "force_custom_plan"
        assert call_tool(_ctx(session), "test_plan_mode_generic") == "auto"
        assert session.execute(text(mode)).scalar() == "force_custom_plan"
        assert call_tool(_ctx(session), "test_plan_mode") == "force_custom_plan"
        session.rollback()
