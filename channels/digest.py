"""The morning digest: each active rep gets their call list on their preferred channel.

`send_digests(now, ...)` sends one round: for every active rep it runs the `call_list` tool as
that rep (through the tool registry, so the rep's own data scope applies), writes a short
message, and sends it on `users.preferred_channel` (sms, whatsapp or telegram) through the
outbound channel configured for it. Without trained forecasts the rep gets a clear short note
instead of a list.

- Once per rep and day: each digest is claimed in `conversation_turns` under the message id
  `digest:<date>:<user id>` (the table's unique constraint), so several app processes, or a
  `mangalm digest --now` after the scheduled run, never send it twice. A failed send releases
  the claim so a later run can retry.
- WhatsApp's 24-hour rule: free text only while the rep's window is open (they wrote to us on
  WhatsApp in the last 24 hours); outside it only an approved template may be sent
  (`TWILIO_WHATSAPP_DIGEST_CONTENT_SID` for Twilio; a channel offering
  `send_digest_template`). Without a template the rep is skipped and it is logged.

`DigestScheduler` sleeps until the next `DIGEST_TIME` (in `DIGEST_TIMEZONE`) and calls the
send function; `digest_scheduler(app)` runs it inside the API's lifespan.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy import Engine, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from assistant.messages import Reply
from channels.base import OutboundChannel, phone_digits
from tools.context import Actor, ToolContext
from tools.models import ChannelWindow, ConversationTurn, User
from tools.registry import run_tool
from tools.settings import Settings

log = logging.getLogger(__name__)

WINDOW = dt.timedelta(hours=24)
MAX_REASONS = 2

Status = Literal["sent", "template", "skipped", "already_sent", "failed"]


@runtime_checkable
class TemplateSender(Protocol):
    """An outbound channel that can send the approved digest template (WhatsApp)."""

    def has_digest_template(self) -> bool: ...

    async def send_digest_template(self, recipient: str, variables: list[str]) -> None: ...


@dataclass
class DigestOutcome:
    """What happened to one rep's digest."""

    email: str
    channel: str | None
    status: Status
    detail: str = ""


# --------------------------------------------------------------------------- composing


def _day(day: dt.date) -> str:
    return f"{day.strftime('%A')} {day.day} {day.strftime('%B')}"


def _first_name(user: User) -> str:
    return (user.name or "").split(" ")[0] or "there"


def compose(user: User, day: dt.date, result: Any) -> tuple[str, list[str]]:
    """The digest text for `user` from the `call_list` tool result, and the template variables
    (first name, day, a one-line summary) for channels that may only send a template."""
    hello = f"Good morning, {_first_name(user)}."
    if not result.ok:
        error = result.error or {}
        if error.get("error") == "no_forecasts":
            note = "Your call list is not ready yet: no forecasts have been trained."
        else:
            note = f"Your call list could not be prepared today: {error.get('message', '')}"
        return f"{hello} {note}".strip(), [_first_name(user), _day(day), note]
    data = result.result or {}
    entries = data.get("entries") or []
    considered = data.get("stores_considered", 0)
    if not entries:
        note = f"None of your {considered} stores needs a call on {_day(day)}."
        return f"{hello} {note}", [_first_name(user), _day(day), note]
    lines = [f"{hello} Your calls for {_day(day)} ({len(entries)} of {considered} stores):"]
    for entry in entries:
        store = entry.get("store") or {}
        reasons = "; ".join(r.get("text", "") for r in (entry.get("reasons") or [])[:MAX_REASONS])
        phone = f", {entry['phone']}" if entry.get("phone") else ""
        line = f"{entry.get('rank')}. {store.get('name')} ({store.get('code')}){phone}"
        lines.append(f"{line} - {reasons}" if reasons else line)
    lines.append("Ask me about any of them for details.")
    names = ", ".join(str((e.get("store") or {}).get("name")) for e in entries[:3])
    summary = f"{len(entries)} stores to call, starting with {names}."
    return "\n".join(lines), [_first_name(user), _day(day), summary]


# --------------------------------------------------------------------------- one round


def recipient(user: User, channel: str) -> str | None:
    """The address of `user` on `channel`."""
    if channel in ("sms", "whatsapp"):
        return user.phone or None
    if channel == "telegram":
        return str(user.telegram_id) if user.telegram_id else None
    return None


def whatsapp_window_open(session: Session, user: User, now: dt.datetime) -> bool:
    """Whether `user` wrote to us on WhatsApp in the last 24 hours (free text allowed)."""
    since = now - WINDOW
    if user.phone:
        opened = session.scalar(
            select(func.max(ChannelWindow.last_inbound_at)).where(
                ChannelWindow.channel == "whatsapp",
                ChannelWindow.address == phone_digits(user.phone),
            )
        )
        if opened is not None and opened > since:
            return True
    last = session.scalar(
        select(func.max(ConversationTurn.created_at)).where(
            ConversationTurn.user_id == user.id,
            ConversationTurn.channel == "whatsapp",
            ConversationTurn.created_at > since,
            or_(
                ConversationTurn.message_id.is_(None),
                ~ConversationTurn.message_id.like("digest:%"),
            ),
        )
    )
    return last is not None


def _claim(engine: Engine, user: User, channel: str, address: str, day: dt.date) -> int | None:
    with Session(engine) as session:
        claimed = session.execute(
            insert(ConversationTurn)
            .values(
                user_id=user.id,
                channel=channel,
                sender=address[:100],
                message_id=f"digest:{day.isoformat()}:{user.id}",
                text="(morning digest)",
                intent="digest",
            )
            .on_conflict_do_nothing(constraint="uq_conversation_turns_channel_message")
            .returning(ConversationTurn.id)
        ).scalar()
        session.commit()
        return claimed


def _release(engine: Engine, claim: int) -> None:
    with Session(engine) as session:
        session.execute(delete(ConversationTurn).where(ConversationTurn.id == claim))
        session.commit()


@dataclass
class Prepared:
    text: str
    variables: list[str]
    window_open: bool
    tool_call: dict[str, Any]


def _prepare(
    engine: Engine, user_id: int, day: dt.date, now: dt.datetime, settings: Settings
) -> Prepared:
    with Session(engine) as session:
        user = session.get(User, user_id)
        assert user is not None
        ctx = ToolContext(session=session, actor=Actor.from_user(user), today=day, channel="digest")
        result = run_tool(ctx, "call_list", {"limit": settings.digest_limit})
        text, variables = compose(user, day, result)
        window = whatsapp_window_open(session, user, now)
        session.rollback()
        return Prepared(text, variables, window, result.to_dict())


def _record(engine: Engine, claim: int, prepared: Prepared, answer: str, started: float) -> None:
    import time

    with Session(engine) as session:
        row = session.get(ConversationTurn, claim)
        if row is not None:
            row.answer = answer
            row.tool_calls = [prepared.tool_call]
            row.reply = Reply(text=answer, intent="digest").model_dump(mode="json")
            row.latency_ms = (time.perf_counter() - started) * 1000
            session.commit()


async def _send_one(
    engine: Engine,
    settings: Settings,
    senders: Mapping[str, OutboundChannel],
    user: User,
    day: dt.date,
    now: dt.datetime,
) -> DigestOutcome:
    import time

    started = time.perf_counter()
    channel = user.preferred_channel or ""
    if channel not in senders:
        return DigestOutcome(
            user.email, channel, "skipped", f"no outbound channel configured for {channel}"
        )
    sender = senders[channel]
    address = recipient(user, channel)
    if address is None:
        return DigestOutcome(user.email, channel, "skipped", f"no {channel} address on file")
    claim = await anyio.to_thread.run_sync(_claim, engine, user, channel, address, day)
    if claim is None:
        return DigestOutcome(user.email, channel, "already_sent")
    try:
        prepared = await anyio.to_thread.run_sync(_prepare, engine, user.id, day, now, settings)
        if channel == "whatsapp" and not prepared.window_open:
            if not (isinstance(sender, TemplateSender) and sender.has_digest_template()):
                await anyio.to_thread.run_sync(_release, engine, claim)
                log.warning(
                    "digest for %s skipped: outside the WhatsApp 24-hour window and no "
                    "approved template is configured",
                    user.email,
                )
                return DigestOutcome(
                    user.email,
                    channel,
                    "skipped",
                    "outside the WhatsApp 24-hour window and no template configured",
                )
            await sender.send_digest_template(address, prepared.variables)
            await anyio.to_thread.run_sync(
                _record,
                engine,
                claim,
                prepared,
                "[template] " + " | ".join(prepared.variables),
                started,
            )
            return DigestOutcome(user.email, channel, "template")
        await sender.send_reply(address, Reply(text=prepared.text, intent="digest"))
        await anyio.to_thread.run_sync(_record, engine, claim, prepared, prepared.text, started)
        return DigestOutcome(user.email, channel, "sent")
    except Exception as error:
        log.exception("digest for %s on %s failed", user.email, channel)
        await anyio.to_thread.run_sync(_release, engine, claim)
        return DigestOutcome(user.email, channel, "failed", error.__class__.__name__)


def _reps(engine: Engine) -> list[User]:
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.scalars(
                select(User).where(User.role == "rep", User.is_active.is_(True)).order_by(User.id)
            )
        )


def local_day(now: dt.datetime, settings: Settings) -> dt.date:
    """The calendar day `now` falls on in `DIGEST_TIMEZONE`."""
    return now.astimezone(ZoneInfo(settings.digest_timezone)).date()


async def send_digests(
    now: dt.datetime,
    *,
    engine: Engine,
    settings: Settings,
    senders: Mapping[str, OutboundChannel],
    concurrency: int = 4,
) -> list[DigestOutcome]:
    """Send the digest of the day `now` falls on to every active rep; one outcome per rep."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    day = local_day(now, settings)
    reps = await anyio.to_thread.run_sync(_reps, engine)
    slots = asyncio.Semaphore(concurrency)

    async def one(user: User) -> DigestOutcome:
        async with slots:
            return await _send_one(engine, settings, senders, user, day, now)

    outcomes = list(await asyncio.gather(*(one(user) for user in reps)))
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    log.info("digest for %s: %s", day, counts or "no active reps")
    return outcomes


# --------------------------------------------------------------------------- scheduling


def next_run(now: dt.datetime, at: str, timezone: str) -> dt.datetime:
    """The first `at` (HH:MM in `timezone`) strictly after `now`."""
    zone = ZoneInfo(timezone)
    hours, minutes = (int(part) for part in at.split(":"))
    local = now.astimezone(zone)
    candidate = dt.datetime.combine(local.date(), dt.time(hours, minutes), tzinfo=zone)
    if candidate <= local:
        candidate = dt.datetime.combine(
            local.date() + dt.timedelta(days=1), dt.time(hours, minutes), tzinfo=zone
        )
    return candidate


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DigestScheduler:
    """Sleeps until the next `DIGEST_TIME` (or `at`, HH:MM in `DIGEST_TIMEZONE`), sends (or runs
    any other daily job), and repeats."""

    def __init__(
        self,
        send: Callable[[dt.datetime], Awaitable[Any]],
        settings: Settings,
        *,
        at: str | None = None,
        name: str = "the morning digest",
        clock: Callable[[], dt.datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.send = send
        self.settings = settings
        self.at = at or settings.digest_time
        self.name = name
        self.clock = clock
        self.sleep = sleep

    async def run_once(self) -> Any:
        """Wait for the next digest time, then send that round."""
        target = next_run(self.clock(), self.at, self.settings.digest_timezone)
        # Sleep in steps: a machine clock change or suspend must not skip a morning.
        while (remaining := (target - self.clock()).total_seconds()) > 0:
            await self.sleep(min(remaining, 300.0))
        return await self.send(target)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run `run_forever` in the background while the block runs (part of a lifespan)."""
        task = asyncio.create_task(self.run_forever())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", self.name)
                await self.sleep(60.0)


# Which outbound routes of the turn queue serve each `users.preferred_channel`, in order.
PREFERRED_ROUTES: dict[str, tuple[str, ...]] = {
    "sms": ("sms",),
    "whatsapp": ("whatsapp-twilio", "whatsapp-meta"),
    "telegram": ("telegram",),
}


def senders_by_preference(outbound: Mapping[str, OutboundChannel]) -> dict[str, OutboundChannel]:
    """Outbound channels (by route) as digest senders (by preferred channel)."""
    senders: dict[str, OutboundChannel] = {}
    for preferred, routes in PREFERRED_ROUTES.items():
        for route in routes:
            if route in outbound:
                senders[preferred] = outbound[route]
                break
    return senders


async def run_digest(
    now: dt.datetime, *, engine: Engine, settings: Settings
) -> list[DigestOutcome]:
    """One round with the outbound channels the settings configure (opened and closed here)."""
    from channels.queue import build_outbound, close_channels, open_channels

    outbound = build_outbound(settings, engine)
    await open_channels(outbound)
    try:
        return await send_digests(
            now, engine=engine, settings=settings, senders=senders_by_preference(outbound)
        )
    finally:
        await close_channels(outbound)


@asynccontextmanager
async def digest_scheduler(app: FastAPI) -> AsyncIterator[None]:
    """Part of the app's lifespan: run the digest scheduler when a channel can send it."""
    from channels.queue import build_outbound

    settings: Settings = app.state.settings
    engine: Engine = app.state.database.engine
    if not settings.digest_enabled or not senders_by_preference(build_outbound(settings, engine)):
        yield
        return

    async def send(now: dt.datetime) -> list[DigestOutcome]:
        return await run_digest(now, engine=engine, settings=settings)

    log.info(
        "morning digest scheduled daily at %s (%s)", settings.digest_time, settings.digest_timezone
    )
    async with DigestScheduler(send, settings).running():
        yield


@asynccontextmanager
async def rollup_scheduler(
    app: FastAPI,
    *,
    clock: Callable[[], dt.datetime] = _utcnow,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncIterator[None]:
    """Part of the app's lifespan: rebuild the sales rollups every night at
    `ROLLUP_REFRESH_TIME`, so the days read live from the order tables stay few (one process
    refreshes at a time; the others skip that night's turn)."""
    from tools.migrate import refresh_rollups

    settings: Settings = app.state.settings
    if not settings.rollup_refresh_enabled:
        yield
        return

    async def refresh(_: dt.datetime) -> Any:
        engine: Engine = app.state.database.engine
        outcome = await anyio.to_thread.run_sync(refresh_rollups, engine)
        if outcome.refreshed:
            log.info(
                "sales rollups refreshed in %.1f s (%d logged changes folded in)",
                outcome.seconds,
                outcome.changes_cleared,
            )
        else:
            log.info("sales rollups: another process is refreshing them")
        return outcome

    scheduler = DigestScheduler(
        refresh,
        settings,
        at=settings.rollup_refresh_time,
        name="the sales rollup refresh",
        clock=clock,
        sleep=sleep,
    )
    log.info(
        "sales rollups refreshed daily at %s (%s)",
        settings.rollup_refresh_time,
        settings.digest_timezone,
    )
    async with scheduler.running():
        yield
