"""Voice through Twilio: a call of several spoken turns, rendered as TwiML that Twilio (and
xml.etree) can read; slow answers held with a filler and a redirect; silence; goodbye."""

from __future__ import annotations

import datetime as dt
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.main import create_app
from assistant.messages import Button, InboundMessage, Reply, Table
from assistant.turn import UNKNOWN_SENDER
from channels.twilio_voice import (
    FILLER,
    GOODBYE,
    GREETING,
    REPROMPT,
    SILENT_GOODBYE,
    is_goodbye,
    speakable,
    speech_for,
)
from tests.channels.twilio_support import (
    ACCOUNT_SID,
    PUBLIC_BASE,
    REP_PHONE,
    STRANGER_PHONE,
    FakeTwilio,
    Shop,
    build_shop,
    fake_twilio,
    placed_orders,
    post_signed,
    sign,
    twilio_settings,
)
from tools.db import make_engine
from tools.settings import Settings

TODAY = dt.date(2026, 11, 25)


# --- speaking ----------------------------------------------------------------------------------


def test_money_dates_and_percentages_are_read_naturally() -> None:
    text = "Sharma owes Rs 18,400 (Rs. 1,84,000.50 billed), due 2026-11-14; 12.5% overdue."
    assert speakable(text, today=TODAY) == (
        "Sharma owes 18,400 rupees (184,000.50 rupees billed), due 14 November; "
        "12.5 percent overdue."
    )
    assert speakable("Last order on 2025-03-02 for ₹1", today=TODAY) == (
        "Last order on 2 March 2025 for 1 rupee"
    )


def test_answers_are_spoken_in_short_sentences_with_tables_summarised() -> None:
    reply = Reply(
        text="Your calls today. **Five** stores are due.",
        table=Table(
            columns=["store", "outstanding", "last order"],
            rows=[[f"Store {i}", f"Rs {i},000", "2026-11-0" + str(i)] for i in range(1, 6)],
        ),
        buttons=[Button(label="Yes", payload="confirm:yes"), Button(label="No", payload="no")],
    )
    lines = speech_for(reply, today=TODAY)
    assert lines == [
        "Your calls today.",
        "Five stores are due.",
        "Here are the first 3 of 5.",
        "Store 1: outstanding 1,000 rupees, last order 1 November.",
        "Store 2: outstanding 2,000 rupees, last order 2 November.",
        "Store 3: outstanding 3,000 rupees, last order 3 November.",
        "Say yes or no.",
    ]
    long = Reply(text="; ".join(f"store {i} owes a little" for i in range(40)) + ".")
    assert all(len(line) <= 160 for line in speech_for(long, today=TODAY))


@pytest.mark.parametrize(
    ("speech", "bye"),
    [
        ("bye", True),
        ("Thank you, bye.", True),
        ("OK goodbye", True),
        ("that's all", True),
        ("what did Sharma buy last time", False),
        ("book 10 cases of Parle-G for Sharma and then bye bye to all the other stores", False),
    ],
)
def test_goodbyes_are_recognised(speech: str, bye: bool) -> None:
    assert is_goodbye(speech) is bye


# --- calls -------------------------------------------------------------------------------------


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


class SlowAssistant:
    """The app's assistant, taking `delay` seconds longer for questions containing `slow`."""

    def __init__(self, holder: Any, slow: str, delay: float) -> None:
        self.holder = holder
        self.slow = slow
        self.delay = delay
        self.calls = 0
        self.lock = threading.Lock()

    def get(self) -> SlowAssistant:
        return self

    @property
    def engine(self) -> Engine:
        engine: Engine = self.holder.get().engine
        return engine

    def handle(self, message: InboundMessage) -> Any:
        with self.lock:
            self.calls += 1
        if self.slow in message.text.lower():
            time.sleep(self.delay)
        return self.holder.get().handle(message)


@pytest.fixture()
def voice_app(
    shop_db: tuple[str, Engine, Shop], fake: FakeTwilio
) -> Iterator[tuple[TestClient, SlowAssistant, Settings]]:
    settings = twilio_settings(shop_db[0], fake, voice_answer_wait_seconds=0.8)
    app = create_app(settings)
    slow = SlowAssistant(app.state.assistant, "parle", 2.0)
    app.state.assistant = slow
    with TestClient(app) as client:
        # The first turn of a process loads the planner: not the slowness under test.
        slow.holder.get().handle(
            InboundMessage(channel="api", sender=shop_db[2].rep.email, text="hello")
        )
        yield client, slow, settings


def call_params(call: str, caller: str = REP_PHONE, **extra: str) -> dict[str, str]:
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call,
        "CallStatus": "in-progress",
        "Called": "+15005550006",
        "Caller": caller,
        "Direction": "inbound",
        "From": caller,
        "To": "+15005550006",
    }
    params.update(extra)
    return params


def twiml(response: Any) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "Response"
    return root


def said(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter("Say")]


def local(url: str) -> str:
    """The path (and query) Twilio will POST to, given the public URL in the TwiML."""
    assert url.startswith(PUBLIC_BASE + "/"), url
    return url[len(PUBLIC_BASE) :]


def follow(client: TestClient, response: Any, call: str, caller: str = REP_PHONE) -> Any:
    """Follow `<Redirect>`s (a slow answer) as Twilio does; the final response."""
    for _ in range(100):
        redirect = twiml(response).find("Redirect")
        if redirect is None:
            return response
        response = post_signed(client, local(redirect.text or ""), call_params(call, caller))
    raise AssertionError("the answer never came")


def speak_raw(
    client: TestClient, root: ET.Element, call: str, speech: str | None, caller: str = REP_PHONE
) -> Any:
    """Answer the `<Gather>` of `root` with `speech` (None: silence); the final response."""
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root)
    assert gather.get("input") == "speech" and gather.get("method") == "POST"
    extra = {"SpeechResult": speech, "Confidence": "0.92"} if speech is not None else {}
    path = local(gather.get("action", ""))
    return follow(
        client, post_signed(client, path, call_params(call, caller, **extra)), call, caller
    )


def speak(
    client: TestClient, root: ET.Element, call: str, speech: str | None, caller: str = REP_PHONE
) -> ET.Element:
    return twiml(speak_raw(client, root, call, speech, caller))


def test_a_call_of_three_turns_with_a_slow_answer_and_a_spoken_confirmation(
    voice_app: tuple[TestClient, SlowAssistant, Settings], shop_db: tuple[str, Engine, Shop]
) -> None:
    client, slow, _ = voice_app
    engine, shop = shop_db[1], shop_db[2]
    before = placed_orders(engine, shop.sharma)
    call = "CA" + "a" * 32

    greeting = twiml(post_signed(client, "/voice", call_params(call, CallStatus="ringing")))
    assert said(greeting) == [GREETING]
    assert greeting.find("Gather").get("action") == f"{PUBLIC_BASE}/voice/turn?n=1&s=0"  # type: ignore[union-attr]

    # Turn 1 is slow: the caller hears a filler and Twilio is redirected to wait for it.
    gather = greeting.find("Gather")
    assert gather is not None
    started = time.monotonic()
    first = twiml(
        post_signed(
            client,
            local(gather.get("action", "")),
            call_params(call, SpeechResult="Book 10 cases of Parle-G for Sharma"),
        )
    )
    assert time.monotonic() - started < 5
    assert said(first) == [FILLER]
    redirect = first.find("Redirect")
    assert redirect is not None and "/voice/wait?n=1&w=1" in (redirect.text or "")
    drafted = twiml(
        follow(client, post_signed(client, local(redirect.text or ""), call_params(call)), call)
    )
    lines = said(drafted)
    assert "Order for Sharma General Store: 100 rupees for 10 units." in lines
    assert lines[-1] == "Say yes or no."
    assert "Rs" not in " ".join(lines)
    assert drafted.find("Gather").get("action") == f"{PUBLIC_BASE}/voice/turn?n=2&s=0"  # type: ignore[union-attr]
    assert placed_orders(engine, shop.sharma) == before

    # Turn 2: "yes" places the order; Twilio retrying the same webhook changes nothing.
    placed = speak(client, drafted, call, "Yes.")
    assert any("placed" in line for line in said(placed)), said(placed)
    assert placed_orders(engine, shop.sharma) == before + 1
    retried = twiml(
        follow(
            client,
            post_signed(client, "/voice/turn?n=2&s=0", call_params(call, SpeechResult="Yes.")),
            call,
        )
    )
    assert any("placed" in line for line in said(retried))
    assert placed_orders(engine, shop.sharma) == before + 1

    # Turn 3: goodbye hangs up.
    ended = speak(client, placed, call, "Thank you, bye.")
    assert said(ended) == [GOODBYE]
    assert ended.find("Hangup") is not None and ended.find("Gather") is None


def test_twiml_stays_valid_xml_when_the_answer_has_ampersands_and_angle_brackets(
    voice_app: tuple[TestClient, SlowAssistant, Settings],
) -> None:
    client = voice_app[0]
    call = "CA" + "b" * 32
    greeting = twiml(post_signed(client, "/voice", call_params(call)))
    response = speak_raw(client, greeting, call, "outstanding for gupta")
    assert "&amp;" in response.text and "&lt;Main Rd&gt;" in response.text
    lines = said(twiml(response))
    assert any("Gupta & Sons <Main Rd>" in line for line in lines), lines


def test_silence_reprompts_once_then_says_goodbye(
    voice_app: tuple[TestClient, SlowAssistant, Settings],
) -> None:
    client, slow, _ = voice_app
    call = "CA" + "c" * 32
    greeting = twiml(post_signed(client, "/voice", call_params(call)))
    reprompt = speak(client, greeting, call, None)
    assert said(reprompt) == [REPROMPT]
    assert reprompt.find("Gather").get("action") == f"{PUBLIC_BASE}/voice/turn?n=1&s=1"  # type: ignore[union-attr]
    ended = speak(client, reprompt, call, "")
    assert said(ended) == [SILENT_GOODBYE]
    assert ended.find("Hangup") is not None
    assert slow.calls == 0


def test_an_unknown_caller_hears_only_how_to_link_and_the_call_ends(
    voice_app: tuple[TestClient, SlowAssistant, Settings],
) -> None:
    client = voice_app[0]
    call = "CA" + "d" * 32
    greeting = twiml(post_signed(client, "/voice", call_params(call, caller=STRANGER_PHONE)))
    reprompt = speak(client, greeting, call, None, STRANGER_PHONE)
    assert said(reprompt) == [REPROMPT]
    answered = speak(client, reprompt, call, "outstanding for sharma", STRANGER_PHONE)
    text = " ".join(said(answered))
    assert "Sharma" not in text and "rupees" not in text
    assert UNKNOWN_SENDER.split(".")[0] in text
    assert answered.find("Hangup") is not None


@pytest.mark.parametrize("path", ["/voice", "/voice/turn?n=1&s=0", "/voice/wait?n=1&w=1&q=hi"])
def test_voice_webhooks_refuse_forged_signatures(
    voice_app: tuple[TestClient, SlowAssistant, Settings], path: str
) -> None:
    client, slow, _ = voice_app
    params = call_params("CA" + "e" * 32, SpeechResult="outstanding for sharma")
    assert post_signed(client, path, params, signature=None).status_code == 403
    assert post_signed(client, path, params, signature="AAAA").status_code == 403
    # Signed for another turn of the call: the query string is part of the signature.
    other = sign("/voice/turn?n=9&s=0", params)
    assert post_signed(client, path, params, signature=other).status_code == 403
    assert slow.calls == 0
