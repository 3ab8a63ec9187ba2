"""Who is acting, and what they may see.

Every tool receives a `ToolContext` (database session + acting user + "today"); the model never
sees it. Data scoping is enforced here, inside the tools, whichever path called them:

- admin: every store;
- manager: the stores of the reps who report to them (and any assigned to them directly);
- rep: only the stores assigned to them;
- viewer: read-only over what their manager sees.

A store the user may not see behaves exactly like a store that does not exist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, false, select, true
from sqlalchemy.orm import Session

from tools.models import Store, User

Role = Literal["admin", "manager", "rep", "viewer"]


@dataclass(frozen=True)
class Actor:
    """The acting user, as the tools need them."""

    id: int
    email: str
    name: str
    role: Role
    manager_id: int | None = None

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "manager", "rep")

    @classmethod
    def from_user(cls, user: User) -> Actor:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,  # type: ignore[arg-type]
            manager_id=user.manager_id,
        )


@dataclass
class ToolContext:
    """What a tool runs with: a session, the acting user, and the date to treat as today."""

    session: Session
    actor: Actor
    today: dt.date = field(default_factory=dt.date.today)
    turn_id: str | None = None
    # The channel the request came through (web, whatsapp, api, ...); orders record it.
    channel: str | None = None
    # Facts a tool call looks up more than once (e.g. how far the sales rollups reach).
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def store_scope(self) -> ColumnElement[bool]:
        """A WHERE clause over `Store` limiting rows to what the actor may see.

        A manager's (or viewer's) team is looked up once and given as a list of rep ids: the
        planner then knows how few stores that is and can combine the rep index with another
        index (a trigram match over thousands of names), which it cannot do for the team as a
        subquery."""
        if self.actor.role in ("manager", "viewer"):
            reps = self.rep_ids()
            return Store.rep_id.in_(reps) if reps else false()
        return store_scope(self.actor)

    def begin_call(self) -> None:
        """Forget what an earlier tool call looked up (the data may have changed since, by a
        write in the same turn or another user's); whom the actor sees is kept."""
        kept = {key: self.memo[key] for key in ("rep_ids",) if key in self.memo}
        self.memo.clear()
        self.memo.update(kept)

    def rep_ids(self) -> list[int] | None:
        """The reps whose stores the actor sees (None = all), looked up once per context."""
        if "rep_ids" not in self.memo:
            self.memo["rep_ids"] = visible_rep_ids(self.session, self.actor)
        reps: list[int] | None = self.memo["rep_ids"]
        return reps


def _team_of(manager_id: int) -> Select[int]:
    return select(User.id).where(User.manager_id == manager_id, User.role == "rep")


def store_scope(actor: Actor) -> ColumnElement[bool]:
    """SQL condition on `Store` for the stores `actor` may see."""
    if actor.role == "admin":
        return true()
    if actor.role == "rep":
        return Store.rep_id == actor.id
    if actor.role == "manager":
        return (Store.rep_id == actor.id) | Store.rep_id.in_(_team_of(actor.id))
    if actor.role == "viewer":
        if actor.manager_id is None:
            return false()
        return (Store.rep_id == actor.manager_id) | Store.rep_id.in_(_team_of(actor.manager_id))
    return false()


def visible_rep_ids(session: Session, actor: Actor) -> list[int] | None:
    """The reps (user ids) whose stores `actor` sees; None means everyone (admin)."""
    if actor.role == "admin":
        return None
    if actor.role == "rep":
        return [actor.id]
    lead = actor.id if actor.role == "manager" else actor.manager_id
    if lead is None:
        return []
    return [lead, *session.scalars(_team_of(lead)).all()]


def load_actor(session: Session, *, email: str | None = None, user_id: int | None = None) -> Actor:
    """Load an active user as an `Actor`; raises LookupError when there is none."""
    query = select(User).where(User.is_active.is_(True))
    if email is not None:
        query = query.where(User.email == email.strip().lower())
    elif user_id is not None:
        query = query.where(User.id == user_id)
    else:
        raise ValueError("email or user_id is required")
    user = session.scalars(query).first()
    if user is None:
        raise LookupError(f"no active user {email or user_id}")
    return Actor.from_user(user)
