"""The store resolver's exact lookups (code, id, phone, full name) within each role's scope:
what a user may not see answers exactly as what does not exist."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import ctx_for, make_store, make_user
from tools.models import Store
from tools.registry import Ambiguous, NotFound, run_tool
from tools.resolve import resolve_store, resolve_store_row

pytest_plugins = ["tests.factories"]


def _references(store: Store) -> list[str | int]:
    """Every exact way to name `store`: id, code in any case, phone, full name in any case."""
    assert store.phone is not None
    return [
        store.id,
        str(store.id),
        store.code,
        store.code.lower(),
        store.phone,
        store.phone.replace(" ", "")[-10:],
        store.name,
        store.name.upper(),
    ]


def test_exact_lookups_see_only_the_actors_stores(db: Session) -> None:
    manager, other_manager = make_user(db, "manager"), make_user(db, "manager")
    rep = make_user(db, "rep", manager=manager)
    teammate = make_user(db, "rep", manager=manager)
    outsider = make_user(db, "rep", manager=other_manager)
    viewer = make_user(db, "viewer", manager=manager)
    orphan_viewer = make_user(db, "viewer")
    admin = make_user(db, "admin")
    own = make_store(db, rep, name="Kaveri Provision Stores")
    team = make_store(db, teammate, name="Godavari Medicos")
    foreign = make_store(db, outsider, name="Narmada Bakers")
    direct = make_store(db, manager, name="Tapti Cold Drinks")
    everyone = {own.id, team.id, foreign.id, direct.id}
    sees = {
        rep: {own.id},
        teammate: {team.id},
        manager: {own.id, team.id, direct.id},
        viewer: {own.id, team.id, direct.id},
        orphan_viewer: set(),
        admin: everyone,
    }
    for user, visible in sees.items():
        ctx = ctx_for(db, user)
        # The resolver sees exactly what the actor's scope holds.
        assert visible == set(db.scalars(select(Store.id).where(ctx.store_scope())))
        for store in (own, team, foreign, direct):
            for reference in _references(store):
                if store.id in visible:
                    assert resolve_store(ctx, reference).id == store.id, (user.role, reference)
                    # The read tools' form answers the same, as a row of the store's columns.
                    row = resolve_store_row(ctx, reference)
                    assert not isinstance(row, Store), (user.role, reference)
                    assert (row.id, row.code, row.credit_limit) == (
                        store.id,
                        store.code,
                        store.credit_limit,
                    )
                    continue
                for resolve in (resolve_store, resolve_store_row):
                    with pytest.raises(NotFound) as hidden:
                        resolve(ctx, reference)
                    assert hidden.value.message == f"No store found for '{reference}'."


def test_a_code_or_id_shared_by_two_visible_stores_is_asked_about(db: Session) -> None:
    rep = make_user(db, "rep")
    first = make_store(db, rep, name="Yamuna Traders")
    # Another store whose code is the first one's id: the number names both.
    second = make_store(db, rep, code=str(first.id), name="Sutlej Traders")
    for resolve in (resolve_store, resolve_store_row):
        with pytest.raises(Ambiguous) as info:
            resolve(ctx_for(db, rep), str(first.id))
        assert {c["id"] for c in info.value.candidates} == {first.id, second.id}
    # A misspelt name is matched fuzzily by either (the row form hands it to `resolve_store`).
    assert resolve_store_row(ctx_for(db, rep), "Yamuna Tradres").id == first.id
    # Seen by another rep, only their own store answers.
    other = make_user(db, "rep")
    mine = make_store(db, other, code=f"X{first.id}", name="Beas Traders")
    assert resolve_store(ctx_for(db, other), f"x{first.id}").id == mine.id


def test_tools_resolve_within_the_scope_as_the_resolver_does(db: Session) -> None:
    rep, outsider = make_user(db, "rep"), make_user(db, "rep")
    own = make_store(db, rep, name="Chenab General Store")
    foreign = make_store(db, outsider, name="Ravi General Store")
    ctx = ctx_for(db, rep)
    found = run_tool(ctx, "outstanding", {"store": own.code})
    assert found.ok and found.result["store"]["id"] == own.id
    missing = run_tool(ctx, "outstanding", {"store": foreign.code})
    absent = run_tool(ctx, "outstanding", {"store": "NOSUCH1"})
    assert not missing.ok and not absent.ok
    assert missing.error == {
        "error": "not_found",
        "message": f"No store found for '{foreign.code}'.",
    }
    assert absent.error == {"error": "not_found", "message": "No store found for 'NOSUCH1'."}
