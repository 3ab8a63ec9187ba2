"""SMS and WhatsApp through Twilio: signed webhooks in, the real Twilio client out to a local
fake of the REST API; redeliveries, confirmations, unknown senders, media, long replies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from assistant.messages import Button, Reply, Table
from assistant.turn import UNKNOWN_SENDER
from channels.queue import UNSUPPORTED_MEDIA
from channels.twilio_messaging import (
    SMS_LIMIT,
    WHATSAPP_LIMIT,
    AioHttpTwilioClient,
    TwilioMessagingChannel,
    make_client,
    render_text,
)
from tests.channels.twilio_support import (
    ACCOUNT_SID,
    OTHER_PHONE,
    PUBLIC_BASE,
    REP_PHONE,
    SMS_FROM,
    STRANGER_PHONE,
    WHATSAPP_FROM,
    FakeTwilio,
    Shop,
    build_shop,
    drain,
    fake_twilio,
    inbound_sms,
    placed_orders,
    post_signed,
    sign,
    twilio_settings,
)
from tests.channels.twilio_support import make_client as make_test_client
from tools.db import make_engine
from tools.models import ChannelWindow, ConversationTurn
from tools.settings import Settings


@pytest.fixture(scope="module")
def shop_db(create_database: Callable[..., str]) -> Iterator[tuple[str, Engine, Shop]]:
    url = create_database(migrate=True)
    engine = make_engine(url)
    shop = build_shop(engine)
    yield url, engine, shop
    engine.dispose()


@pytest.fixture()
def fake() -> Iterator[FakeTwilio]:
    yield from fake_twilio()


@pytest.fixture()
def settings(shop_db: tuple[str, Engine, Shop], fake: FakeTwilio) -> Settings:
    return twilio_settings(shop_db[0], fake)


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient]:
    with make_test_client(settings) as test_client:
        yield test_client


def _turns(engine: Engine, sid: str) -> list[ConversationTurn]:
    with Session(engine) as session:
        return list(
            session.scalars(select(ConversationTurn).where(ConversationTurn.message_id == sid))
        )


# --- verification ------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", [None, "bm90IGEgc2lnbmF0dXJl", "forged"])
def test_missing_or_forged_signature_is_refused_and_nothing_happens(
    client: TestClient, fake: FakeTwilio, shop_db: tuple[str, Engine, Shop], signature: str | None
) -> None:
    params = inbound_sms("outstanding for sharma", sid="SMforged" + str(signature)[:6])
    response = post_signed(client, "/twilio/sms", params, signature=signature)
    assert response.status_code == 403
    drain(client)
    assert fake.messages == []
    assert _turns(shop_db[1], "SMforged" + str(signature)[:6]) == []


def test_a_signature_over_other_parameters_is_refused(client: TestClient, fake: FakeTwilio) -> None:
    params = inbound_sms("outstanding for sharma")
    tampered = [(k, "which stores owe money?" if k == "Body" else v) for k, v in params]
    response = post_signed(client, "/twilio/sms", tampered, signature=sign("/twilio/sms", params))
    assert response.status_code == 403
    drain(client)
    assert fake.messages == []


def test_signature_is_checked_against_the_public_url_behind_a_proxy(
    client: TestClient, fake: FakeTwilio
) -> None:
    # Signed for the internal address the proxy forwards to: Twilio never calls that URL.
    internal = post_signed(client, "/twilio/sms", inbound_sms("hello"), base="http://testserver")
    assert internal.status_code == 403
    # Signed for PUBLIC_BASE_URL (with its /mangalm prefix the proxy strips): accepted.
    public = post_signed(client, "/twilio/sms", inbound_sms("outstanding for sharma"))
    assert public.status_code == 200
    assert public.headers["content-type"].startswith("text/xml")
    assert public.text.replace(" ", "").endswith("<Response/>")
    drain(client)
    assert len(fake.to(REP_PHONE)) == 1


def test_a_signature_over_the_url_with_its_default_port_is_accepted(
    client: TestClient, fake: FakeTwilio
) -> None:
    """Twilio has signed some URLs with the port written out (":443"): accepted as twilio's
    `RequestValidator.validate` accepts it, as well as the URL exactly as configured."""
    with_port = PUBLIC_BASE.replace("example.com", "example.com:443")
    params = inbound_sms("outstanding for sharma")
    signature = sign("/twilio/sms", params, base=with_port)
    assert signature != sign("/twilio/sms", params)
    response = post_signed(client, "/twilio/sms", params, signature=signature)
    assert response.status_code == 200
    drain(client)
    assert len(fake.to(REP_PHONE)) == 1


def test_status_callbacks_are_verified_and_send_nothing(
    client: TestClient, fake: FakeTwilio
) -> None:
    params = {"MessageSid": "SMstatus1", "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}
    assert post_signed(client, "/twilio/sms", params).status_code == 200
    assert post_signed(client, "/twilio/sms", params, signature=None).status_code == 403
    drain(client)
    assert fake.messages == []


def test_a_channel_without_its_number_is_not_served(
    shop_db: tuple[str, Engine, Shop], fake: FakeTwilio
) -> None:
    settings = twilio_settings(shop_db[0], fake, twilio_whatsapp_from=None)
    with make_test_client(settings) as client:
        params = inbound_sms("hello", whatsapp=True)
        assert post_signed(client, "/twilio/whatsapp", params).status_code == 404
        drain(client)
    assert fake.messages == []


# --- answers -----------------------------------------------------------------------------------


def test_an_sms_question_is_answered_by_sms_from_the_configured_number(
    client: TestClient, fake: FakeTwilio, shop_db: tuple[str, Engine, Shop]
) -> None:
    params = inbound_sms("what did sharma general store order last time?")
    response = post_signed(client, "/twilio/sms", params)
    assert response.status_code == 200
    drain(client)
    [message] = fake.messages
    assert message["From"] == SMS_FROM and message["To"] == REP_PHONE
    assert "Sharma General Store" in message["Body"]
    assert "Zulu" not in message["Body"]


def test_a_rep_never_gets_another_reps_store(client: TestClient, fake: FakeTwilio) -> None:
    post_signed(client, "/twilio/sms", inbound_sms("outstanding for zulu provision mart"))
    drain(client)
    [body] = fake.to(REP_PHONE)
    assert "Zulu Provision Mart" not in body
    assert "owes" not in body.lower()


def test_unknown_sender_gets_only_the_linking_explanation(
    client: TestClient, fake: FakeTwilio
) -> None:
    post_signed(client, "/twilio/sms", inbound_sms("outstanding for sharma", sender=STRANGER_PHONE))
    post_signed(
        client,
        "/twilio/whatsapp",
        inbound_sms("which stores should I call today?", sender=STRANGER_PHONE, whatsapp=True),
    )
    drain(client)
    assert fake.to(STRANGER_PHONE) == [UNKNOWN_SENDER]
    assert fake.to(f"whatsapp:{STRANGER_PHONE}") == [UNKNOWN_SENDER]


def test_a_media_message_is_answered_with_what_is_supported(
    client: TestClient, fake: FakeTwilio
) -> None:
    sid = "SMmedia0001"
    for _ in range(2):  # redelivered: still one answer
        post_signed(client, "/twilio/whatsapp", inbound_sms(None, sid=sid, whatsapp=True, media=2))
    drain(client)
    assert fake.to(f"whatsapp:{REP_PHONE}") == [UNSUPPORTED_MEDIA]
    assert "text" in UNSUPPORTED_MEDIA.lower()


def test_whatsapp_records_the_24_hour_window(
    client: TestClient, fake: FakeTwilio, shop_db: tuple[str, Engine, Shop]
) -> None:
    post_signed(client, "/twilio/whatsapp", inbound_sms("hello", sender=OTHER_PHONE, whatsapp=True))
    drain(client)
    with Session(shop_db[1]) as session:
        window = session.get(ChannelWindow, ("whatsapp", OTHER_PHONE.lstrip("+")))
    assert window is not None


# --- confirmations and redeliveries --------------------------------------------------------------


def _confirm_order_five_times(
    client: TestClient, fake: FakeTwilio, engine: Engine, shop: Shop, path: str, whatsapp: bool
) -> None:
    address = f"whatsapp:{REP_PHONE}" if whatsapp else REP_PHONE
    before = placed_orders(engine, shop.sharma)
    post_signed(client, path, inbound_sms("book 10 cases of Parle-G for Sharma", whatsapp=whatsapp))
    drain(client)
    [draft] = fake.to(address)
    assert "Sharma General Store" in draft and draft.rstrip().endswith("Reply YES or NO.")
    assert placed_orders(engine, shop.sharma) == before

    yes = inbound_sms("YES", whatsapp=whatsapp)
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(lambda _: post_signed(client, path, yes).status_code, range(5)))
    assert statuses == [200] * 5
    drain(client)
    replies = fake.to(address)
    assert len(replies) == 2, replies
    assert "placed" in replies[1].lower()
    assert placed_orders(engine, shop.sharma) == before + 1
    assert len(_turns(engine, dict(yes)["MessageSid"])) == 1


def test_sms_confirmation_by_yes_delivered_five_times_places_one_order(
    client: TestClient, fake: FakeTwilio, shop_db: tuple[str, Engine, Shop]
) -> None:
    _confirm_order_five_times(client, fake, shop_db[1], shop_db[2], "/twilio/sms", False)


def test_whatsapp_confirmation_by_yes_delivered_five_times_places_one_order(
    client: TestClient, fake: FakeTwilio, shop_db: tuple[str, Engine, Shop]
) -> None:
    _confirm_order_five_times(client, fake, shop_db[1], shop_db[2], "/twilio/whatsapp", True)


def test_the_same_question_delivered_five_times_at_once_gets_one_reply(
    client: TestClient, fake: FakeTwilio
) -> None:
    params = inbound_sms("outstanding for sharma")
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(
            pool.map(lambda _: post_signed(client, "/twilio/sms", params).status_code, range(5))
        )
    assert statuses == [200] * 5
    drain(client)
    assert len(fake.to(REP_PHONE)) == 1


# --- the outbound side -------------------------------------------------------------------------


def test_long_replies_are_split_under_each_mediums_limit(
    settings: Settings, fake: FakeTwilio
) -> None:
    client = make_client(settings)
    text = "\n".join(
        f"{i}. Store number {i} in Pune owes Rs {i * 1000} since the last delivery."
        for i in range(90)
    )
    sms = TwilioMessagingChannel(client, "sms", SMS_FROM)
    whatsapp = TwilioMessagingChannel(client, "whatsapp", WHATSAPP_FROM)
    asyncio.run(sms.send_reply(REP_PHONE, Reply(text=text)))
    asyncio.run(whatsapp.send_reply(REP_PHONE, Reply(text=text)))
    sms_parts = fake.to(REP_PHONE)
    wa_parts = fake.to(f"whatsapp:{REP_PHONE}")
    assert len(sms_parts) > 1 and all(len(p) <= SMS_LIMIT for p in sms_parts)
    assert len(wa_parts) > 1 and all(len(p) <= WHATSAPP_LIMIT for p in wa_parts)
    for parts in (sms_parts, wa_parts):
        assert "\n".join(parts).split() == text.split()
    assert {m["From"] for m in fake.messages} == {SMS_FROM, WHATSAPP_FROM}


def test_a_busy_twilio_is_retried(settings: Settings, fake: FakeTwilio) -> None:
    fake.fail_with = [429]
    channel = TwilioMessagingChannel(make_client(settings), "sms", SMS_FROM)
    asyncio.run(channel.send_text(REP_PHONE, "Sharma owes nothing."))
    assert fake.to(REP_PHONE) == ["Sharma owes nothing."]


def test_replies_go_out_over_one_kept_alive_connection(
    settings: Settings, fake: FakeTwilio
) -> None:
    """Started in the event loop that sends (the app's or the worker's), the channel keeps
    its connection to Twilio between replies; a send from another event loop still goes out,
    on a connection of its own."""
    channel = TwilioMessagingChannel(make_client(settings), "sms", SMS_FROM)

    async def serve() -> None:
        await channel.start()
        try:
            for i in range(3):
                await channel.send_text(REP_PHONE, f"Reply {i}.")
        finally:
            await channel.aclose()

    asyncio.run(serve())
    assert fake.to(REP_PHONE) == ["Reply 0.", "Reply 1.", "Reply 2."]
    assert fake.connections == 1
    asyncio.run(channel.send_text(REP_PHONE, "Reply 3."))
    assert fake.to(REP_PHONE)[-1] == "Reply 3." and fake.connections == 2


def test_list_fields_reach_twilio_as_repeated_form_fields(
    settings: Settings, fake: FakeTwilio
) -> None:
    """The REST client's form bodies are Twilio's: a list is sent as repeated fields (two
    media URLs are two MediaUrl fields) and unset values are left out."""
    client = make_client(settings)
    urls = ["https://example.com/a.png", "https://example.com/b.png"]
    asyncio.run(
        client.messages.create_async(
            from_=SMS_FROM, to=REP_PHONE, body="Two pictures.", media_url=urls
        )
    )
    [form] = fake.forms
    assert [v for k, v in form if k == "MediaUrl"] == urls
    assert {k for k, _ in form} == {"From", "To", "Body", "MediaUrl"}


def test_the_environments_proxy_is_used_for_twilio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy (HTTPS_PROXY), replies go to Twilio through it, as with `requests`;
    hosts in NO_PROXY are reached directly."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "twilio.test.internal")
    transport = AioHttpTwilioClient()
    assert transport._proxy("https://api.twilio.com/2010-04-01/x") == "http://proxy.internal:3128"
    assert transport._proxy("https://twilio.test.internal/2010-04-01/x") is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert AioHttpTwilioClient()._proxy("https://api.twilio.com/2010-04-01/x") is None


def test_buttons_and_tables_render_as_text() -> None:
    reply = Reply(
        text="Order for Sharma General Store: Rs 100. Shall I place it?",
        table=Table(columns=["product", "quantity"], rows=[["Parle-G", 10]]),
        buttons=[Button(label="Yes", payload="confirm:yes"), Button(label="No", payload="no")],
    )
    text = render_text(reply)
    assert text.splitlines() == [
        "Order for Sharma General Store: Rs 100. Shall I place it?",
        " - Parle-G, 10",
        "Reply YES or NO.",
    ]


def test_the_digest_template_goes_out_with_its_variables(
    settings: Settings, fake: FakeTwilio
) -> None:
    channel = TwilioMessagingChannel(
        make_client(settings), "whatsapp", WHATSAPP_FROM, digest_content_sid="HX" + "1" * 32
    )
    asyncio.run(channel.send_digest_template(REP_PHONE, ["Ravi", "Monday 7 December", "3"]))
    [message] = fake.messages
    assert message["ContentSid"] == "HX" + "1" * 32
    assert json.loads(message["ContentVariables"]) == {
        "1": "Ravi",
        "2": "Monday 7 December",
        "3": "3",
    }
    assert message["To"] == f"whatsapp:{REP_PHONE}"
