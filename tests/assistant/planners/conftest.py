"""Shared fixtures for planner tests: a database with one rep, and a tool with a figure."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from tools.context import ToolContext
from tools.models import User
from tools.registry import NotFound, tool


class Dues(BaseModel):
    store: str
    outstanding: float


@tool(name="test_planner_dues", category="test")
def _dues(ctx: ToolContext, *, store: str) -> Dues:
    """How much a store owes.

    Args:
        store: The store's name or code.
    """
    if store.lower() != "sharma":
        raise NotFound(f"No store found for '{store}'.")
    return Dues(store="Sharma General Store", outstanding=18400.0)


@pytest.fixture()
def planner_engine(create_database: Callable[..., str]) -> Iterator[Engine]:
    engine = create_engine(create_database(migrate=True))
    with Session(engine) as session:
        session.add(User(email="rep@example.com", name="Ravi Rep", role="rep"))
        session.commit()
    yield engine
    engine.dispose()
