"""The morning digest: each rep's own call list on their channel, once a day, within
WhatsApp's 24-hour rule; a clear note without forecasts; the scheduler's timing."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from api.cli import app as cli
from channels.base import OutboundChannel
from channels.digest import (
    DigestScheduler,
    next_run,
    send_digests,
)
from channels.twilio_messaging import TwilioMessagingChannel, make_client
from forecasting.train import train_all
from tests.channels.twilio_support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SMS_FROM,
    WHATSAPP_FROM,
    FakeTwilio,
    fake_twilio,
    twilio_settings,
)
from tests.factories import make_store, make_user
from tools.context import Actor, ToolContext
from tools.data.demo import load_demo
from tools.db import make_engine, reset_engine
from tools.models import ChannelWindow, Store, User
from tools.registry import run_tool
from tools.settings import Settings, get_settings, load_settings

TODAY = dt.date(2026, 11, 25)
IST = ZoneInfo("Asia/Kolkata")
CONTENT_SID = "HX" + "7" * 32


def morning(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(8, 0), tzinfo=IST)


@dataclass
class Demo:
    url: str
    engine: Engine
    reps: list[User]


@pytest.fixture(scope="module")
def demo(
    create_database: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    """The demo distributor (30 stores, 10 reps, 6 months) with trained forecasts."""
    url = create_database(migrate=True)
    engine = make_engine(url)
    load_demo(engine, stores=30, products=40, months=6, seed=7, today=TODAY)
    with threadpool_limits(limits=1), engine.begin() as conn:
        train_all(conn, home=tmp_path_factory.mktemp("models"), seed=0, evaluate=False)
    with Session(engine, expire_on_commit=False) as session:
        reps = list(session.scalars(select(User).where(User.role == "rep").order_by(User.id)))
        # Two reps read SMS; the others keep the demo's WhatsApp or Telegram.
        for rep in reps[1:3]:
            rep.preferred_channel = "sms"
        session.commit()
    yield Demo(url, engine, reps)
    engine.dispose()


@pytest.fixture()
def fake() -> Iterator[FakeTwilio]:
    yield from fake_twilio()


def senders(settings: Settings, content_sid: str | None = None) -> dict[str, OutboundChannel]:
    client = make_client(settings)
    return {
        "sms": TwilioMessagingChannel(client, "sms", SMS_FROM),
        "whatsapp": TwilioMessagingChannel(
            client, "whatsapp", WHATSAPP_FROM, digest_content_sid=content_sid
        ),
    }


def open_window(engine: Engine, user: User, at: dt.datetime) -> None:
    with Session(engine) as session:
        session.merge(
            ChannelWindow(
                channel="whatsapp", address=(user.phone or "").lstrip("+"), last_inbound_at=at
            )
        )
        session.commit()


def own_call_list(engine: Engine, user: User, day: dt.date) -> dict[str, Any]:
    with Session(engine) as session:
        ctx = ToolContext(session=session, actor=Actor.from_user(user), today=day)
        result = run_tool(ctx, "call_list", {"limit": 10})
        assert result.ok, result.error
        data: dict[str, Any] = result.result
        return data


def store_names(engine: Engine) -> dict[int, set[str]]:
    with Session(engine) as session:
        names: dict[int, set[str]] = {}
        for store in session.scalars(select(Store)):
            names.setdefault(store.rep_id or 0, set()).add(store.name)
        return names


def test_each_rep_gets_their_own_call_list_once_a_day(demo: Demo, fake: FakeTwilio) -> None:
    day = TODAY
    settings = twilio_settings(demo.url, fake)
    for rep in demo.reps:
        if rep.preferred_channel == "whatsapp":
            open_window(demo.engine, rep, morning(day) - dt.timedelta(hours=3))
    outcomes = asyncio.run(
        send_digests(morning(day), engine=demo.engine, settings=settings, senders=senders(settings))
    )
    by_email = {o.email: o for o in outcomes}
    assert set(by_email) == {rep.email for rep in demo.reps}
    names = store_names(demo.engine)
    sent = 0
    for rep in demo.reps:
        outcome = by_email[rep.email]
        if rep.preferred_channel == "telegram":
            assert outcome.status == "skipped" and "telegram" in outcome.detail
            continue
        assert outcome.status == "sent", outcome
        address = rep.phone if rep.preferred_channel == "sms" else f"whatsapp:{rep.phone}"
        [body] = fake.to(address or "")
        sent += 1
        expected = own_call_list(demo.engine, rep, day)
        assert body.startswith(f"Good morning, {rep.name.split()[0]}.")
        assert f"({len(expected['entries'])} of {expected['stores_considered']} stores)" in body
        for entry in expected["entries"]:
            assert f"{entry['rank']}. {entry['store']['name']} ({entry['store']['code']})" in body
        others = set().union(*(n for rep_id, n in names.items() if rep_id != rep.id))
        assert not [name for name in others if f" {name} (" in body]
    assert sent == len(fake.messages) >= 3
    assert {m["From"] for m in fake.messages} == {SMS_FROM, WHATSAPP_FROM}

    again = asyncio.run(
        send_digests(
            morning(day) + dt.timedelta(hours=2),
            engine=demo.engine,
            settings=settings,
            senders=senders(settings),
        )
    )
    assert {o.status for o in again} <= {"already_sent", "skipped"}
    assert len(fake.messages) == sent


def test_whatsapp_outside_the_window_gets_only_the_template(demo: Demo, fake: FakeTwilio) -> None:
    day = TODAY + dt.timedelta(days=1)
    settings = twilio_settings(demo.url, fake)
    whatsapp = [r for r in demo.reps if r.preferred_channel == "whatsapp"]
    stale = whatsapp[0]
    open_window(demo.engine, stale, morning(day) - dt.timedelta(hours=30))

    # No approved template configured: nobody on WhatsApp gets anything (free text is not
    # allowed), and the day stays open for a later run.
    skipped = asyncio.run(
        send_digests(morning(day), engine=demo.engine, settings=settings, senders=senders(settings))
    )
    for outcome in skipped:
        if outcome.channel == "whatsapp":
            assert outcome.status == "skipped" and "24-hour" in outcome.detail
    assert not [m for m in fake.messages if m["To"].startswith("whatsapp:")]

    with_template = asyncio.run(
        send_digests(
            morning(day),
            engine=demo.engine,
            settings=settings,
            senders=senders(settings, content_sid=CONTENT_SID),
        )
    )
    assert {o.status for o in with_template if o.channel == "whatsapp"} == {"template"}
    templates = [m for m in fake.messages if m["To"] == f"whatsapp:{stale.phone}"]
    [template] = templates
    assert template["ContentSid"] == CONTENT_SID and "Body" not in template
    variables = json.loads(template["ContentVariables"])
    assert variables["1"] == stale.name.split()[0]
    assert variables["2"].endswith("26 November")


def test_a_failed_send_is_retried_by_the_next_run(demo: Demo, fake: FakeTwilio) -> None:
    day = TODAY + dt.timedelta(days=2)
    settings = twilio_settings(demo.url, fake)
    sms_rep = next(r for r in demo.reps if r.preferred_channel == "sms")
    only_sms = {"sms": senders(settings)["sms"]}
    fake.fail_with = [400] * 2
    first = asyncio.run(
        send_digests(morning(day), engine=demo.engine, settings=settings, senders=only_sms)
    )
    assert {o.status for o in first if o.channel == "sms"} >= {"failed"}
    second = asyncio.run(
        send_digests(morning(day), engine=demo.engine, settings=settings, senders=only_sms)
    )
    assert next(o for o in second if o.email == sms_rep.email).status in ("sent", "already_sent")
    assert len(fake.to(sms_rep.phone or "")) == 1


@pytest.fixture()
def untrained(create_database: Callable[..., str]) -> Iterator[tuple[str, Engine, User]]:
    url = create_database(migrate=True)
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        rep = make_user(session, "rep", name="Ravi Kumar")
        rep.phone = "+919820000001"
        rep.preferred_channel = "sms"
        make_store(session, rep, name="Sharma General Store")
        session.commit()
    yield url, engine, rep
    engine.dispose()


def test_without_forecasts_the_rep_gets_a_clear_short_note(
    untrained: tuple[str, Engine, User], fake: FakeTwilio
) -> None:
    url, engine, rep = untrained
    settings = twilio_settings(url, fake)
    [outcome] = asyncio.run(
        send_digests(morning(TODAY), engine=engine, settings=settings, senders=senders(settings))
    )
    assert outcome.status == "sent"
    assert fake.to("+919820000001") == [
        "Good morning, Ravi. Your call list is not ready yet: no forecasts have been trained."
    ]


def test_mangalm_digest_now_sends_and_reports(
    untrained: tuple[str, Engine, User], fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, rep = untrained
    for name, value in {
        "DATABASE_URL": url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_SMS_FROM": SMS_FROM,
        "TWILIO_API_BASE_URL": fake.url,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_engine()
    try:
        result = CliRunner().invoke(cli, ["digest", "--now"])
        again = CliRunner().invoke(cli, ["digest", "--now"])
    finally:
        reset_engine()
    assert result.exit_code == 0, result.output
    assert rep.email in result.output and "sent" in result.output
    assert "already_sent" in again.output
    assert len(fake.to("+919820000001")) == 1


# --- scheduling --------------------------------------------------------------------------------


def test_next_run_is_the_next_digest_time_in_the_configured_zone() -> None:
    utc = dt.UTC
    assert next_run(dt.datetime(2026, 11, 25, 1, 0, tzinfo=utc), "08:00", "Asia/Kolkata") == (
        dt.datetime(2026, 11, 25, 8, 0, tzinfo=IST)
    )
    # 08:00 IST is 02:30 UTC: at 03:00 UTC the next one is tomorrow.
    assert next_run(dt.datetime(2026, 11, 25, 3, 0, tzinfo=utc), "08:00", "Asia/Kolkata") == (
        dt.datetime(2026, 11, 26, 8, 0, tzinfo=IST)
    )
    # Across a daylight-saving change the wall-clock time is kept.
    ny = ZoneInfo("America/New_York")
    after = next_run(dt.datetime(2026, 11, 1, 5, 0, tzinfo=ny), "07:30", "America/New_York")
    assert after == dt.datetime(2026, 11, 1, 7, 30, tzinfo=ny)
    assert after.utcoffset() == dt.timedelta(hours=-5)


def test_the_scheduler_sleeps_until_the_digest_time_then_sends() -> None:
    settings = load_settings(digest_time="08:00", digest_timezone="Asia/Kolkata")
    clock = [dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)]
    slept: list[float] = []
    sent: list[dt.datetime] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += dt.timedelta(seconds=seconds)

    async def send(when: dt.datetime) -> None:
        sent.append(when)

    scheduler = DigestScheduler(send, settings, clock=lambda: clock[0], sleep=sleep)
    asyncio.run(scheduler.run_once())
    assert sent == [dt.datetime(2026, 11, 25, 8, 0, tzinfo=IST)]
    assert clock[0] == sent[0] and sum(slept) == 90 * 60 and max(slept) <= 300
    asyncio.run(scheduler.run_once())
    assert sent[1] == dt.datetime(2026, 11, 26, 8, 0, tzinfo=IST)
