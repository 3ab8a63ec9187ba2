"""The registry as LangChain tools: same schemas, same scoping, errors as readable JSON."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from tests.factories import ctx_for, make_product, make_stock, make_store, make_user
from tools.registry import available_tools, langchain_tools


def test_langchain_tools_run_the_registry_as_the_actor(db: Session) -> None:
    manager = make_user(db, "manager")
    rep = make_user(db, "rep", manager=manager)
    outsider = make_user(db, "rep")
    own = make_store(db, rep, name="Langchain Own Store")
    foreign = make_store(db, outsider, name="Langchain Foreign Store")
    product = make_product(db, sku="LC-1")
    make_stock(db, product, 50)
    tools = {t.name: t for t in langchain_tools(ctx_for(db, rep))}
    assert set(tools) == {t.name for t in available_tools()}
    assert tools["store_profile"].args_schema is not None

    mine = json.loads(tools["store_profile"].invoke({"store": own.code}))
    assert mine["store"]["id"] == own.id
    theirs = json.loads(tools["store_profile"].invoke({"store": foreign.code}))
    assert theirs["error"] == "not_found"
    # Nested arguments (order lines) reach the tool intact.
    draft = json.loads(
        tools["draft_order"].invoke(
            {"store": own.code, "lines": [{"product": "LC-1", "quantity": 2}]}
        )
    )
    assert "error" not in draft, draft
    with pytest.raises(ValidationError):
        tools["recent_orders"].invoke({"store": own.code, "limit": "many"})


def test_read_only_users_get_no_write_tools(db: Session) -> None:
    viewer = make_user(db, "viewer", manager=make_user(db, "manager"))
    names = {t.name for t in langchain_tools(ctx_for(db, viewer))}
    assert names == {t.name for t in available_tools() if not t.writes}
