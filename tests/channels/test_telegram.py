"""Telegram: the webhook in the app, the replies through python-telegram-bot to a local Bot API.

Updates are built with python-telegram-bot's own classes and posted with the secret header
Telegram sends; the bot talks to `FakeBotApi` on loopback, which records every call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import (
    Bot,
    CallbackQuery,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    Voice,
)
from telegram import User as TgUser

from api.auth import create_access_token
from api.main import create_app
from assistant.messages import Button, Reply, Table
from assistant.turn import UNKNOWN_SENDER
from channels.base import ChannelConfigError
from channels.queue import UNSUPPORTED_MEDIA
from channels.telegram import SECRET_HEADER, SendLimiter, TelegramOutbound, render_html
from tests.channels.support import (
    DRAFT_TEXT,
    REP_TELEGRAM_ID,
    SECRET,
    FakeBotApi,
    World,
    build_world,
    count_orders,
    serve,
)
from tools.models import ConversationTurn, User
from tools.settings import Settings, load_settings

TOKEN = "123456:TEST-token-for-the-local-bot-api"
WEBHOOK_SECRET = "webhook_Secret-123"
STRANGER_ID = 7770001


@pytest.fixture(scope="module")
def world(create_database: Callable[..., str]) -> World:
    return build_world(create_database)


@pytest.fixture(scope="module")
def bot_api() -> Iterator[tuple[FakeBotApi, str]]:
    fake = FakeBotApi()
    with serve(fake.app()) as url:
        yield fake, url


def _settings(world: World, api_url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": world.url,
        "secret_key": SECRET,
        "environment": "test",
        "rate_limit_per_user": "1000/minute",
        "telegram_bot_token": TOKEN,
        "telegram_webhook_secret": WEBHOOK_SECRET,
        "telegram_api_base_url": api_url,
        "public_base_url": "https://bot.example.com",
    }
    values.update(extra)
    return load_settings(**values)


@pytest.fixture()
def app(world: World, bot_api: tuple[FakeBotApi, str]) -> FastAPI:
    return create_app(_settings(world, bot_api[1]))


@pytest.fixture()
def client(app: FastAPI, bot_api: tuple[FakeBotApi, str]) -> Iterator[TestClient]:
    bot_api[0].calls.clear()
    with TestClient(app) as test_client:
        yield test_client


_update_ids = iter(range(int(time.time()) % 1_000_000 * 1000, 10**12))


def _user(user_id: int) -> TgUser:
    return TgUser(id=user_id, is_bot=False, first_name="Ravi")


def text_update(text: str, *, chat_id: int = REP_TELEGRAM_ID, chat_type: str = "private") -> Update:
    return Update(
        update_id=next(_update_ids),
        message=Message(
            message_id=next(_update_ids) % 100_000,
            date=dt.datetime.now(dt.UTC),
            chat=Chat(id=chat_id, type=chat_type),
            from_user=_user(chat_id),
            text=text,
        ),
    )


def button_update(data: str, label: str, *, chat_id: int = REP_TELEGRAM_ID) -> Update:
    shown = Message(
        message_id=next(_update_ids) % 100_000,
        date=dt.datetime.now(dt.UTC),
        chat=Chat(id=chat_id, type="private"),
        text="Shall I place it?",
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)]]),
    )
    return Update(
        update_id=next(_update_ids),
        callback_query=CallbackQuery(
            id=str(next(_update_ids)),
            from_user=_user(chat_id),
            chat_instance="chat-instance-1",
            message=shown,
            data=data,
        ),
    )


def post(client: TestClient, update: Update, secret: str | None = WEBHOOK_SECRET) -> int:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    response = client.post("/telegram/webhook", json=update.to_dict(), headers=headers)
    return response.status_code


def settle(client: TestClient, app: FastAPI) -> None:
    """Wait until the application has handled its updates and the turns have replied."""
    client.portal.call(app.state.telegram.drain)
    client.portal.call(app.state.turns.drain)


def replies(fake: FakeBotApi, chat_id: int = REP_TELEGRAM_ID) -> list[dict[str, Any]]:
    return [f for f in fake.sent() if int(f["chat_id"]) == chat_id]


# --- the webhook -------------------------------------------------------------------------------


def test_webhook_is_registered_with_its_secret(
    client: TestClient, bot_api: tuple[FakeBotApi, str]
) -> None:
    (registered,) = bot_api[0].sent("setWebhook")
    assert registered["url"] == "https://bot.example.com/telegram/webhook"
    assert registered["secret_token"] == WEBHOOK_SECRET
    assert registered["allowed_updates"] == ["message", "callback_query"]


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", WEBHOOK_SECRET + "x"])
def test_missing_or_forged_secret_is_refused_and_nothing_happens(
    client: TestClient, app: FastAPI, bot_api: tuple[FakeBotApi, str], world: World, secret: Any
) -> None:
    update = text_update("which stores should I call today?")
    assert post(client, update, secret) == 403
    settle(client, app)
    assert replies(bot_api[0]) == []
    with Session(world.engine) as session:
        seen = session.scalars(
            select(ConversationTurn).where(
                ConversationTurn.channel == "telegram",
                ConversationTurn.message_id == str(update.update_id),
            )
        ).all()
    assert seen == []


def test_button_press_delivered_five_times_places_one_order_and_replies_once(
    client: TestClient, app: FastAPI, bot_api: tuple[FakeBotApi, str], world: World
) -> None:
    fake = bot_api[0]
    before = count_orders(world.engine, world.store_id)
    assert post(client, text_update(DRAFT_TEXT)) == 200
    settle(client, app)
    (draft,) = replies(fake)
    assert "Shall I place it?" in draft["text"] and draft["parse_mode"] == "HTML"
    keyboard = draft["reply_markup"]["inline_keyboard"]
    pressed = next(b for row in keyboard for b in row if b["text"] == "Yes")
    update = button_update(pressed["callback_data"], "Yes")

    async def five_at_once() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        "/telegram/webhook",
                        json=update.to_dict(),
                        headers={SECRET_HEADER: WEBHOOK_SECRET},
                    )
                    for _ in range(5)
                )
            )
        return [a.status_code for a in answers]

    assert client.portal.call(five_at_once) == [200] * 5
    settle(client, app)
    # A redelivery after a restart (this process's memory of recent updates gone) is caught
    # by the database's unique constraint.
    app.state.telegram._recent.clear()
    assert post(client, update) == 200
    settle(client, app)

    sent = replies(fake)
    assert len(sent) == 2
    assert "placed" in sent[1]["text"]
    assert count_orders(world.engine, world.store_id) == before + 1
    answered = fake.sent("answerCallbackQuery")
    assert [a["callback_query_id"] for a in answered][:1] == [update.callback_query.id]  # type: ignore[union-attr]


def test_voice_note_gets_the_text_only_answer(
    client: TestClient, app: FastAPI, bot_api: tuple[FakeBotApi, str]
) -> None:
    update = Update(
        update_id=next(_update_ids),
        message=Message(
            message_id=5,
            date=dt.datetime.now(dt.UTC),
            chat=Chat(id=REP_TELEGRAM_ID, type="private"),
            from_user=_user(REP_TELEGRAM_ID),
            voice=Voice(file_id="voice-1", file_unique_id="u-voice-1", duration=3),
        ),
    )
    assert post(client, update) == 200
    settle(client, app)
    (sent,) = replies(bot_api[0])
    assert sent["text"] == html.escape(UNSUPPORTED_MEDIA, quote=False)


def test_group_chats_get_no_answer(
    client: TestClient, app: FastAPI, bot_api: tuple[FakeBotApi, str]
) -> None:
    update = text_update("outstanding of Alpha Kirana Store?", chat_id=-100123, chat_type="group")
    assert post(client, update) == 200
    settle(client, app)
    assert bot_api[0].sent() == []


def test_unknown_sender_links_with_a_code_from_the_web_app(
    client: TestClient, app: FastAPI, bot_api: tuple[FakeBotApi, str], world: World
) -> None:
    fake = bot_api[0]
    assert post(client, text_update("how much does Zulu Provision Mart owe?", chat_id=STRANGER_ID))
    settle(client, app)
    (explained,) = replies(fake, STRANGER_ID)
    assert explained["text"] == html.escape(UNKNOWN_SENDER, quote=False)

    token = create_access_token(world.other_rep, app.state.settings).token
    response = client.post("/api/link-code", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    code = response.json()["code"]
    assert post(client, text_update(f"/start {code}", chat_id=STRANGER_ID)) == 200
    settle(client, app)
    linked = replies(fake, STRANGER_ID)[-1]["text"]
    assert "now linked" in linked and world.other_rep.name in linked
    with Session(world.engine) as session:
        assert session.get(User, world.other_rep.id).telegram_id == STRANGER_ID  # type: ignore[union-attr]
    assert post(client, text_update("how much does Zulu Provision Mart owe?", chat_id=STRANGER_ID))
    settle(client, app)
    answer = replies(fake, STRANGER_ID)[-1]["text"]
    assert answer != html.escape(UNKNOWN_SENDER, quote=False) and "Zulu" in answer


def test_enabled_without_its_secret_refuses_to_start(
    world: World, bot_api: tuple[FakeBotApi, str]
) -> None:
    settings = _settings(world, bot_api[1], telegram_webhook_secret=None)
    with pytest.raises(ChannelConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        create_app(settings)
    bad = _settings(world, bot_api[1], telegram_webhook_secret="has spaces!")
    with pytest.raises(ChannelConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        create_app(bad)


# --- sending -----------------------------------------------------------------------------------


def _outbound(url: str, **limits: float) -> TelegramOutbound:
    bot = Bot(TOKEN, base_url=f"{url}/bot")
    return TelegramOutbound(bot, limiter=SendLimiter(**limits) if limits else None)


def test_long_reply_is_split_escaped_and_keeps_its_buttons_last(
    bot_api: tuple[FakeBotApi, str],
) -> None:
    fake, url = bot_api
    fake.calls.clear()
    text = "\n\n".join(f"Store {i} <b>owes</b> Rs 1,000 & more. " * 12 for i in range(40))
    reply = Reply(
        text=text,
        table=Table(columns=["Store", "Due"], rows=[["A & B <Mart>", 10], ["C", 20]]),
        buttons=[Button(label="Yes", payload="confirm:yes"), Button(label="No", payload="no")],
    )
    outbound = _outbound(url, per_chat=1000, chat_burst=1000, overall=1000)

    async def send() -> None:
        await outbound.start()
        try:
            await outbound.send_reply(str(REP_TELEGRAM_ID), reply)
        finally:
            await outbound.aclose()

    asyncio.run(send())
    sent = fake.sent()
    assert len(sent) == len(render_html(reply)) > 2
    assert all(len(m["text"]) <= 4096 and m["parse_mode"] == "HTML" for m in sent)
    assert "<b>owes</b>" not in "".join(m["text"] for m in sent)
    joined = html.unescape("".join(m["text"] for m in sent)).replace("\n", "").replace(" ", "")
    assert text.replace("\n", "").replace(" ", "") in joined
    assert "<pre>" in sent[-1]["text"] and "A &amp; B &lt;Mart&gt;" in sent[-1]["text"]
    assert all("reply_markup" not in m for m in sent[:-1])
    assert sent[-1]["reply_markup"]["inline_keyboard"] == [
        [
            {"text": "Yes", "callback_data": "confirm:yes"},
            {"text": "No", "callback_data": "no"},
        ]
    ]


def test_429_retry_after_is_waited_out(bot_api: tuple[FakeBotApi, str]) -> None:
    fake, url = bot_api
    fake.calls.clear()
    fake.fail_next["sendMessage"] = [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            },
        )
    ]
    outbound = _outbound(url)

    async def send() -> None:
        await outbound.start()
        try:
            await outbound.send_text(str(REP_TELEGRAM_ID), "Your call list is ready.")
        finally:
            await outbound.aclose()

    asyncio.run(send())
    first, second = fake.times()
    assert second - first >= 0.95
    assert [m["text"] for m in fake.sent()] == ["Your call list is ready."] * 2


def test_sends_to_one_chat_are_paced_but_other_chats_are_not(
    bot_api: tuple[FakeBotApi, str],
) -> None:
    fake, url = bot_api
    fake.calls.clear()
    outbound = _outbound(url, per_chat=5, chat_burst=1, overall=1000)

    async def send() -> None:
        await outbound.start()
        try:
            await asyncio.gather(*(outbound.send_text("1001", f"part {i}") for i in range(4)))
            await asyncio.gather(*(outbound.send_text(str(2000 + i), "hi") for i in range(4)))
        finally:
            await outbound.aclose()

    asyncio.run(send())
    times = fake.times()
    one_chat, many_chats = times[:4], times[4:]
    assert all(b - a >= 0.15 for a, b in zip(one_chat, one_chat[1:], strict=False))
    assert many_chats[-1] - many_chats[0] < 0.15
