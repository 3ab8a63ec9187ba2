"""The engine every part of the product uses."""

from __future__ import annotations

import time

from sqlalchemy import text

from tools.db import make_engine


def test_connections_run_without_jit(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW jit")).scalar() == "off"
    finally:
        engine.dispose()


def test_own_connection_options_are_kept(db_url: str) -> None:
    engine = make_engine(
        db_url, connect_args={"options": "-c statement_timeout=1234", "connect_timeout": 5}
    )
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW jit")).scalar() == "off"
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "1234ms"
    finally:
        engine.dispose()


def test_a_direct_statement_runs_as_sqlalchemy_would(db_url: str) -> None:
    """A `DirectStatement` binds its parameters through their types (JSONB here), reads rows
    and counts, stays in the caller's transaction (rolled back with it), and reports the
    driver's errors as SQLAlchemy's."""
    import uuid

    import pytest
    from sqlalchemy import bindparam, delete, insert, select, update
    from sqlalchemy.dialects.postgresql import JSONB
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from tools.db import DirectStatement
    from tools.models import ConversationTurn

    engine = make_engine(db_url)
    new = DirectStatement(
        insert(ConversationTurn)
        .values(
            turn_id=bindparam("turn_id", type_=ConversationTurn.turn_id.type),
            channel="sms",
            sender="+911234567890",
            message_id=bindparam("message_id"),
            text="hello",
            tool_calls=bindparam("tool_calls", type_=JSONB()),
        )
        .returning(ConversationTurn.id, ConversationTurn.tool_calls)
    )
    answer = DirectStatement(
        update(ConversationTurn)
        .where(ConversationTurn.message_id == bindparam("message_id"))
        .values(answer=bindparam("answer"))
    )
    message_id = "SM" + uuid.uuid4().hex
    try:
        with Session(engine) as session:
            connection = session.connection()
            params = {"turn_id": uuid.uuid4(), "message_id": message_id}
            rows, count = new.run(connection, {**params, "tool_calls": [{"name": "x", "n": 1}]})
            assert count == 1 and rows[0][1] == [{"name": "x", "n": 1}]
            assert answer.run(connection, {"message_id": message_id, "answer": "hi"}) == ([], 1)
            assert answer.run(connection, {"message_id": "none", "answer": "hi"}) == ([], 0)
            with pytest.raises(IntegrityError):
                new.run(connection, {**params, "tool_calls": None})
            session.rollback()
        # On a plain connection it begins the transaction as `execute` would: kept only when
        # the caller commits.
        for commit in (False, True):
            with engine.connect() as conn:
                new.run(conn, {"turn_id": uuid.uuid4(), "message_id": message_id})
                if commit:
                    conn.commit()
            with engine.connect() as conn:
                found = conn.execute(
                    select(ConversationTurn.id).where(ConversationTurn.message_id == message_id)
                ).all()
                assert len(found) == int(commit)
            with engine.begin() as conn:
                conn.execute(
                    delete(ConversationTurn).where(ConversationTurn.message_id == message_id)
                )
        with engine.connect() as conn:
            found = conn.execute(
                select(ConversationTurn.id).where(ConversationTurn.message_id == message_id)
            ).all()
            assert found == []
    finally:
        engine.dispose()


def test_a_direct_statement_on_a_dropped_connection_invalidates_it(db_url: str) -> None:
    """A connection the server dropped fails the statement with an error that
    `is_connection_error` recognises, and the pool replaces the connection."""
    import pytest
    from sqlalchemy import bindparam, literal, select
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    from tools.db import DirectStatement, is_connection_error

    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    one = DirectStatement(select(literal(1) + bindparam("n", type_=None)))
    try:
        with Session(engine) as session:
            connection = session.connection()
            assert one.run(connection, {"n": 1}) == ([(2,)], 1)
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            _terminate(db_url, pid)
            with pytest.raises(DBAPIError) as failure:
                one.run(connection, {"n": 1})
            assert is_connection_error(failure.value)
            assert connection.invalidated
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    finally:
        engine.dispose()


def test_run_direct_reports_errors_as_sqlalchemy_does(db_url: str) -> None:
    """Commands sent straight through libpq fail as any statement would: a bad command is a
    `ProgrammingError`, a dropped connection a connection error that replaces it."""
    import pytest
    from sqlalchemy.exc import DBAPIError, ProgrammingError

    from tools.db import is_connection_error, run_direct

    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            run_direct(conn, "BEGIN READ ONLY; SET LOCAL work_mem = '16MB'")
            assert conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
            run_direct(conn, "ROLLBACK")
            with pytest.raises(ProgrammingError):
                run_direct(conn, "SELEC 1")
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            _terminate(db_url, pid)
            with pytest.raises(DBAPIError) as failure:
                run_direct(conn, "BEGIN")
            assert is_connection_error(failure.value)
            assert conn.invalidated
    finally:
        engine.dispose()


def _terminate(db_url: str, pid: object) -> None:
    """End the server process `pid` (as an administrator or a restart would) and wait until
    it is gone."""
    admin = make_engine(db_url)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(200):
                alive = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar()
                if not alive:
                    break
                time.sleep(0.01)
    finally:
        admin.dispose()
