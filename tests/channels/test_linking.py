"""Account linking: one-time codes from the web app, redeemed from a chat.

A code is six digits, stored only as an HMAC, valid ten minutes and once; guessing is
throttled; a redelivered linking message is answered once; and the route needs a login.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import create_access_token
from api.main import create_app
from assistant.messages import InboundMessage
from assistant.turn import identify
from channels.linking import (
    EXPIRED_CODE,
    MAX_FAILURES_PER_SENDER,
    TOO_MANY,
    USED_CODE,
    WRONG_CODE,
    create_link_code,
    hash_code,
    parse_code,
    redeem_code,
    redeem_in_chat,
)
from tests.channels.support import SECRET, World, build_world
from tests.factories import make_user
from tools.models import LinkCode, User
from tools.settings import Settings, load_settings


@pytest.fixture()
def settings() -> Settings:
    return load_settings(secret_key=SECRET, environment="test")


def _live_codes(db: Session, user: User) -> list[LinkCode]:
    return list(
        db.scalars(select(LinkCode).where(LinkCode.user_id == user.id, LinkCode.used_at.is_(None)))
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("link 123456", "123456"),
        ("LINK 123 456", "123456"),
        ("/start 123456", "123456"),
        ("/link:123456", "123456"),
        (" 123-456 ", "123456"),
        ("12345", None),
        ("1234567", None),
        ("link me", None),
        ("order 123456 cases", None),
        ("", None),
    ],
)
def test_codes_are_recognised_in_the_ways_people_send_them(text: str, code: str | None) -> None:
    assert parse_code(text) == code


def test_code_is_six_digits_stored_only_as_a_hash_and_replaces_the_last(
    db: Session, settings: Settings
) -> None:
    rep = make_user(db, "rep")
    first = create_link_code(db, rep, settings)
    assert first.code.isdigit() and len(first.code) == 6
    (row,) = _live_codes(db, rep)
    assert row.code_hash == hash_code(first.code, settings) and first.code not in row.code_hash
    assert row.expires_at - row.created_at == dt.timedelta(minutes=10)
    second = create_link_code(db, rep, settings)
    (row,) = _live_codes(db, rep)
    assert row.code_hash == hash_code(second.code, settings)
    outcome = redeem_code(db, settings, channel="telegram", address="4242", code=first.code)
    assert outcome.status == "wrong" or first.code == second.code


def test_redeeming_links_a_telegram_account_and_a_whatsapp_number(
    db: Session, settings: Settings
) -> None:
    rep = make_user(db, "rep", name="Meena Joshi")
    telegram_id = 880000000 + uuid.uuid4().int % 1_000_000
    code = create_link_code(db, rep, settings).code
    outcome = redeem_code(db, settings, channel="telegram", address=str(telegram_id), code=code)
    assert outcome.status == "linked" and "Meena Joshi" in outcome.text
    assert rep.telegram_id == telegram_id
    wa_id = f"91{uuid.uuid4().int % 10**10:010d}"
    code = create_link_code(db, rep, settings).code
    assert redeem_code(db, settings, channel="whatsapp", address=wa_id, code=code).status == (
        "linked"
    )
    assert rep.phone == "+" + wa_id
    for channel, sender in (("telegram", str(telegram_id)), ("whatsapp", wa_id), ("sms", wa_id)):
        found = identify(db, InboundMessage(channel=channel, sender=sender, text="hi"))  # type: ignore[arg-type]
        assert found is not None and found.id == rep.id


def test_used_expired_and_wrong_codes_fail_clearly(db: Session, settings: Settings) -> None:
    rep = make_user(db, "rep")
    code = create_link_code(db, rep, settings).code
    assert redeem_code(db, settings, channel="telegram", address="9001", code=code).status == (
        "linked"
    )
    used = redeem_code(db, settings, channel="telegram", address="9002", code=code)
    assert (used.status, used.text) == ("used", USED_CODE)

    other = make_user(db, "rep")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11)
    stale = create_link_code(db, other, settings, now=old).code
    expired = redeem_code(db, settings, channel="telegram", address="9003", code=stale)
    assert (expired.status, expired.text) == ("expired", EXPIRED_CODE.format(minutes=10))
    assert other.telegram_id is None

    wrong_code = "000000" if code != "000000" else "000001"
    wrong = redeem_code(db, settings, channel="telegram", address="9004", code=wrong_code)
    assert (wrong.status, wrong.text) in {("wrong", WRONG_CODE), ("used", USED_CODE)}


def test_guessing_is_throttled_per_sender(db: Session, settings: Settings) -> None:
    rep = make_user(db, "rep")
    code = create_link_code(db, rep, settings).code
    guesses = [f"{n:06d}" for n in range(1000) if f"{n:06d}" != code][:MAX_FAILURES_PER_SENDER]
    for guess in guesses:
        assert redeem_code(db, settings, channel="telegram", address="6661", code=guess).status in {
            "wrong",
            "used",
            "expired",
        }
    # The right code no longer helps the guesser; another sender is not affected.
    blocked = redeem_code(db, settings, channel="telegram", address="6661", code=code)
    assert (blocked.status, blocked.text) == ("throttled", TOO_MANY)
    assert rep.telegram_id is None
    assert redeem_code(db, settings, channel="telegram", address="6662", code=code).status == (
        "linked"
    )


def test_an_account_already_linked_elsewhere_is_not_taken_over(
    db: Session, settings: Settings
) -> None:
    holder = make_user(db, "rep")
    holder.telegram_id = 5150000 + uuid.uuid4().int % 10000
    holder.is_active = False  # unknown to the assistant, but the id is still theirs
    db.flush()
    rep = make_user(db, "rep")
    code = create_link_code(db, rep, settings).code
    outcome = redeem_code(
        db, settings, channel="telegram", address=str(holder.telegram_id), code=code
    )
    assert outcome.status == "taken"
    assert rep.telegram_id is None
    assert len(_live_codes(db, rep)) == 1  # the code is still there for the right account


# --- through the app ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(create_database: Callable[..., str]) -> World:
    return build_world(create_database)


@pytest.fixture()
def client(world: World) -> Iterator[TestClient]:
    app = create_app(load_settings(database_url=world.url, secret_key=SECRET, environment="test"))
    with TestClient(app) as test_client:
        yield test_client


def test_link_code_route_needs_a_login(client: TestClient, world: World) -> None:
    assert client.post("/api/link-code").status_code == 401
    assert (
        client.post("/api/link-code", headers={"Authorization": "Bearer forged"}).status_code == 401
    )
    token = create_access_token(world.rep, client.app.state.settings).token  # type: ignore[attr-defined]
    response = client.post("/api/link-code", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    body = response.json()
    assert len(body["code"]) == 6 and body["code"] in body["instructions"]
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert dt.timedelta(minutes=9) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=10)


def test_a_redelivered_linking_message_is_answered_once(world: World) -> None:
    settings = load_settings(database_url=world.url, secret_key=SECRET, environment="test")
    with Session(world.engine, expire_on_commit=False) as session:
        code = create_link_code(session, world.other_rep, settings).code
        session.commit()
    message = InboundMessage(
        channel="sms",
        sender="+919777700000",
        text=f"link {code}",
        message_id=f"SM{uuid.uuid4().hex}",
    )
    first = redeem_in_chat(world.engine, settings, message, code)
    again = redeem_in_chat(world.engine, settings, message, code)
    assert first.intent == "link_linked" and not first.duplicate
    assert again.duplicate and again.reply.text == first.reply.text
    with Session(world.engine) as session:
        assert session.get(User, world.other_rep.id).phone == "+919777700000"  # type: ignore[union-attr]
