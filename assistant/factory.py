"""Build the assistant the settings describe: planner, sessions, database."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from assistant.memory import make_session_store
from assistant.planners.offline import OfflinePlanner
from assistant.ratelimit import RateLimiter
from assistant.turn import Assistant, Planner
from tools.models import User
from tools.settings import Settings


def make_planner(settings: Settings) -> Planner:
    """The offline planner, or the hybrid LLM planner when `LLM_PROVIDER` is set."""
    offline = OfflinePlanner()
    if settings.llm_provider == "none":
        return offline
    from assistant.planners.llm import LLMPlanner, make_chat_model

    model = make_chat_model(settings)
    if model is None:
        return offline
    return LLMPlanner(model, offline=offline, max_steps=settings.llm_max_steps)


def build_assistant(
    settings: Settings, engine: Engine, *, today: dt.date | None = None
) -> Assistant:
    """An `Assistant` wired from settings."""
    return Assistant(
        engine=engine,
        planner=make_planner(settings),
        sessions=make_session_store(settings.redis_url),
        today=today,
        limiter=RateLimiter(
            per_user=settings.rate_limit_per_user,
            per_channel=settings.rate_limit_per_channel,
            redis_url=settings.redis_url,
        ),
    )


def warm_up(assistant: Assistant) -> None:
    """Load what the first turns would otherwise wait for: the tools' modules (imported on the
    first tool call otherwise: a fifth of a second of CPU), the intent classifier and the store
    and product name indexes (a few seconds at 10,000 stores)."""
    from assistant.nlu.entities import warm_name_indexes
    from tools.registry import load_all

    load_all()
    planner = getattr(assistant.planner, "offline", assistant.planner)
    getattr(planner, "classifier", None)
    with Session(assistant.engine) as session:
        warm_name_indexes(session)


def default_cli_user(engine: Engine) -> str | None:
    """The e-mail of the first active administrator (the local CLI acts as them)."""
    with Session(engine) as session:
        return session.scalars(
            select(User.email)
            .where(User.role == "admin", User.is_active.is_(True))
            .order_by(User.id)
            .limit(1)
        ).first()
