"""Voice through Twilio: a call of several spoken turns, rendered as TwiML that Twilio (and
xml.etree) can read; slow answers held with a filler and a redirect; silence; goodbye; and an
unknown caller linking their phone with a code keyed in or said."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.main import create_app
from assistant.messages import Button, InboundMessage, Reply, Table
from channels.linking import (
    MAX_FAILURES_PER_SENDER,
    create_link_code,
    hash_code,
    parse_keyed_code,
    redeem_code,
    spoken_code,
)
from channels.twilio_voice import (
    ALREADY_LINKED,
    FILLER,
    GOODBYE,
    GREETING,
    HELLO,
    LINK_AGAIN,
    LINK_GIVE_UP,
    LINK_HOW,
    LINK_INTRO,
    LINK_SILENCE,
    LINK_SILENT_GOODBYE,
    LINK_THROTTLED,
    LINK_UNCLEAR,
    LINK_USED,
    LINK_WRONG,
    LINKED,
    LINKED_NEXT,
    NOT_LINKED,
    REPROMPT,
    SILENT_GOODBYE,
    WITHHELD,
    is_goodbye,
    speakable,
    speech_for,
)
from tests.channels.twilio_support import (
    ACCOUNT_SID,
    PUBLIC_BASE,
    REP_PHONE,
    FakeTwilio,
    Shop,
    build_shop,
    fake_twilio,
    placed_orders,
    post_signed,
    sign,
    twilio_settings,
)
from tests.factories import make_user
from tools.db import make_engine
from tools.models import LinkAttempt, LinkCode, User
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


@pytest.mark.parametrize(
    "path",
    ["/voice", "/voice/turn?n=1&s=0", "/voice/wait?n=1&w=1&q=hi", "/voice/link?a=1&s=0"],
)
def test_voice_webhooks_refuse_forged_signatures(
    voice_app: tuple[TestClient, SlowAssistant, Settings], path: str
) -> None:
    client, slow, _ = voice_app
    params = call_params("CA" + "e" * 32, SpeechResult="outstanding for sharma", Digits="123456")
    assert post_signed(client, path, params, signature=None).status_code == 403
    assert post_signed(client, path, params, signature="AAAA").status_code == 403
    # Signed for another turn of the call: the query string is part of the signature.
    other = sign("/voice/turn?n=9&s=0", params)
    assert post_signed(client, path, params, signature=other).status_code == 403
    assert slow.calls == 0


# --- linking a phone by voice ------------------------------------------------------------------

DIGIT_NAMES = "zero one two three four five six seven eight nine".split()


@pytest.mark.parametrize(
    ("speech", "code"),
    [
        ("one two three four five six", "123456"),
        ("My code is 123 456.", "123456"),
        ("1 2 3, 4 5 6", "123456"),
        ("12-34-56", "123456"),
        ("oh four double seven one nine", "047719"),
        ("triple five two two two", "555222"),
        ("twelve thirty four fifty six", "123456"),
        ("one two three for five six", "123456"),
        ("the code for linking is nine eight seven six five four", "987654"),
        ("ek do teen chaar paanch chhah", "123456"),
        ("एक दो तीन चार पाँच छह", "123456"),
        ("१२३४५६", "123456"),
        ("one two three four five", None),
        ("1234567", None),
        ("one hundred twenty three four five six", None),
        ("outstanding for sharma", None),
        ("double", None),
        ("", None),
    ],
)
def test_spoken_codes_are_read_as_six_digits(speech: str, code: str | None) -> None:
    assert spoken_code(speech) == code


def test_keyed_codes_must_be_six_digits() -> None:
    assert parse_keyed_code("042042") == "042042"
    assert [parse_keyed_code(d) for d in ("12345", "1234567", "12*456", "")] == [None] * 4


def stranger() -> str:
    """A phone number no user has."""
    return f"+9177{uuid.uuid4().int % 10**8:08d}"


def new_call() -> str:
    return "CA" + uuid.uuid4().hex


def new_user(engine: Engine, role: str = "admin", name: str | None = None) -> User:
    with Session(engine, expire_on_commit=False) as session:
        user = make_user(session, role, name=name)
        session.commit()
        return user


def new_code(engine: Engine, settings: Settings, user: User) -> str:
    with Session(engine) as session:
        code = create_link_code(session, session.get(User, user.id), settings).code  # type: ignore[arg-type]
        session.commit()
        return code


def unused_code(engine: Engine, settings: Settings) -> str:
    """A code nobody was ever given, so it is surely wrong."""
    with Session(engine) as session:
        for n in range(1_000_000):
            code = f"{(uuid.uuid4().int + n) % 1_000_000:06d}"
            hashed = hash_code(code, settings)
            if session.scalar(select(LinkCode.id).where(LinkCode.code_hash == hashed)) is None:
                return code
    raise AssertionError("every code is taken")


def phone_of(engine: Engine, user: User) -> str | None:
    with Session(engine) as session:
        return session.get(User, user.id).phone  # type: ignore[union-attr]


def attempts(engine: Engine, phone: str) -> list[bool]:
    """Whether each link attempt from `phone` by voice succeeded, oldest first."""
    with Session(engine) as session:
        return list(
            session.scalars(
                select(LinkAttempt.succeeded)
                .where(LinkAttempt.channel == "voice", LinkAttempt.address == phone)
                .order_by(LinkAttempt.id)
            )
        )


def code_gather(root: ET.Element) -> ET.Element:
    gather = root.find("Gather")
    assert gather is not None, ET.tostring(root)
    assert gather.get("input") == "dtmf speech" and gather.get("numDigits") == "6"
    assert gather.get("method") == "POST" and gather.get("actionOnEmptyResult") == "true"
    return gather


def answer_code(
    client: TestClient,
    root: ET.Element,
    call: str,
    caller: str,
    *,
    digits: str | None = None,
    speech: str | None = None,
) -> Any:
    """Key in `digits` or say `speech` (neither: silence) at the code `<Gather>` of `root`."""
    extra: dict[str, str] = {}
    if digits is not None:
        extra["Digits"] = digits
    if speech is not None:
        extra.update(SpeechResult=speech, Confidence="0.88")
    path = local(code_gather(root).get("action", ""))
    return post_signed(client, path, call_params(call, caller, **extra))


def ring(client: TestClient, call: str, caller: str) -> ET.Element:
    return twiml(post_signed(client, "/voice", call_params(call, caller, CallStatus="ringing")))


def spoken(root: ET.Element) -> str:
    return " ".join(said(root))


def test_an_unknown_caller_is_asked_for_a_code_and_hears_no_data(
    voice_app: tuple[TestClient, SlowAssistant, Settings], shop_db: tuple[str, Engine, Shop]
) -> None:
    client, slow, _ = voice_app
    caller, call = stranger(), new_call()
    greeting = ring(client, call, caller)
    assert said(greeting) == [LINK_INTRO, LINK_HOW]
    gather = code_gather(greeting)
    assert gather.get("action") == f"{PUBLIC_BASE}/voice/link?a=1&s=0"
    assert gather.get("hints") == "$OOV_CLASS_DIGIT_SEQUENCE"

    # A question instead of a code: no answer, one more try.
    asked = twiml(answer_code(client, greeting, call, caller, speech="outstanding for sharma"))
    assert said(asked) == [LINK_UNCLEAR, LINK_AGAIN]
    assert "Sharma" not in asked.findtext("Gather/Say", "")
    assert code_gather(asked).get("action") == f"{PUBLIC_BASE}/voice/link?a=2&s=0"
    # Silence asks once more, then the call ends; no code was ever checked.
    silent = twiml(answer_code(client, asked, call, caller))
    assert said(silent) == [LINK_SILENCE]
    ended = twiml(answer_code(client, silent, call, caller))
    assert said(ended) == [LINK_SILENT_GOODBYE] and ended.find("Hangup") is not None
    assert attempts(shop_db[1], caller) == [] and slow.calls == 0

    # A question that reaches the assistant anyway gets the code prompt, never data.
    call = new_call()
    turn = post_signed(
        client, "/voice/turn?n=1&s=0", call_params(call, caller, SpeechResult="dues of sharma")
    )
    prompted = twiml(follow(client, turn, call, caller))
    assert said(prompted) == [NOT_LINKED, LINK_HOW]
    assert code_gather(prompted).get("action") == f"{PUBLIC_BASE}/voice/link?a=1&s=0"


def test_a_keyed_code_links_the_phone_and_the_next_turn_answers_with_data(
    voice_app: tuple[TestClient, SlowAssistant, Settings], shop_db: tuple[str, Engine, Shop]
) -> None:
    client, _, settings = voice_app
    engine = shop_db[1]
    user = new_user(engine, "admin", name="Asha Admin")
    code = new_code(engine, settings, user)
    caller, call = stranger(), new_call()

    greeting = ring(client, call, caller)
    response = answer_code(client, greeting, call, caller, digits=code)
    linked = twiml(response)
    assert spoken(linked) == f"{LINKED.format(name='Asha Admin')} {LINKED_NEXT}"
    assert linked.find("Gather").get("action") == f"{PUBLIC_BASE}/voice/turn?n=1&s=0"  # type: ignore[union-attr]
    assert phone_of(engine, user) == caller
    assert attempts(engine, caller) == [True]

    # Twilio retrying the same webhook redeems nothing again.
    path = local(code_gather(greeting).get("action", ""))
    retried = twiml(post_signed(client, path, call_params(call, caller, Digits=code)))
    assert said(retried) == [ALREADY_LINKED, LINKED_NEXT]
    assert attempts(engine, caller) == [True]

    # An administrator sees every store, e.g. another rep's Zulu (20 units at 10 rupees).
    answered = speak(client, linked, call, "what did Zulu Provision Mart order last time", caller)
    text = spoken(answered)
    assert "Zulu Provision Mart" in text and "200 rupees for 20 units" in text, text
    assert answered.find("Gather").get("action") == f"{PUBLIC_BASE}/voice/turn?n=2&s=0"  # type: ignore[union-attr]

    # The next call is greeted as a linked user.
    assert said(ring(client, new_call(), caller)) == [GREETING]


def test_a_code_said_in_words_links_the_phone(
    voice_app: tuple[TestClient, SlowAssistant, Settings], shop_db: tuple[str, Engine, Shop]
) -> None:
    client, _, settings = voice_app
    engine = shop_db[1]
    user = new_user(engine, "rep", name="Vikram Sahu")
    code = new_code(engine, settings, user)
    caller, call = stranger(), new_call()
    words = "My code is " + " ".join(DIGIT_NAMES[int(d)] for d in code)
    linked = twiml(answer_code(client, ring(client, call, caller), call, caller, speech=words))
    assert spoken(linked) == f"{LINKED.format(name='Vikram Sahu')} {LINKED_NEXT}"
    assert phone_of(engine, user) == caller


def test_a_wrong_code_twice_ends_the_call_and_links_nothing(
    voice_app: tuple[TestClient, SlowAssistant, Settings], shop_db: tuple[str, Engine, Shop]
) -> None:
    client, _, settings = voice_app
    engine = shop_db[1]
    user = new_user(engine)
    new_code(engine, settings, user)
    caller, call = stranger(), new_call()
    greeting = ring(client, call, caller)

    wrong = unused_code(engine, settings)
    first = twiml(answer_code(client, greeting, call, caller, digits=wrong))
    assert spoken(first) == f"{LINK_WRONG} {LINK_AGAIN}"
    assert code_gather(first).get("action") == f"{PUBLIC_BASE}/voice/link?a=2&s=0"
    # A retried webhook gets the same answer and is not counted as a second guess.
    again = twiml(answer_code(client, greeting, call, caller, digits=wrong))
    assert said(again) == said(first)
    assert attempts(engine, caller) == [False]

    spoken_wrong = " ".join(DIGIT_NAMES[int(d)] for d in unused_code(engine, settings))
    second = twiml(answer_code(client, first, call, caller, speech=spoken_wrong))
    assert spoken(second) == f"{LINK_WRONG} {LINK_GIVE_UP}"
    assert second.find("Hangup") is not None and second.find("Gather") is None
    assert attempts(engine, caller) == [False, False]
    assert phone_of(engine, user) is None
    # Still unknown: the next call asks for a code again.
    assert said(ring(client, new_call(), caller)) == [LINK_INTRO, LINK_HOW]


def test_another_users_code_that_was_used_already_is_refused(
    voice_app: tuple[TestClient, SlowAssistant, Settings], shop_db: tuple[str, Engine, Shop]
) -> None:
    client, _, settings = voice_app
    engine = shop_db[1]
    owner = new_user(engine, "rep")
    code = new_code(engine, settings, owner)
    owner_phone = stranger()
    with Session(engine) as session:
        outcome = redeem_code(session, settings, channel="sms", address=owner_phone, code=code)
        session.commit()
    assert outcome.status == "linked"

    caller, call = stranger(), new_call()
    refused = twiml(answer_code(client, ring(client, call, caller), call, caller, digits=code))
    assert spoken(refused) == f"{LINK_USED} {LINK_AGAIN}"
    code_gather(refused)
    assert phone_of(engine, owner) == owner_phone
    assert attempts(engine, caller) == [False]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).where(User.phone == caller)) == 0


def test_too_many_wrong_codes_from_a_number_are_throttled(
    voice_app: tuple[TestClient, SlowAssistant, Settings], shop_db: tuple[str, Engine, Shop]
) -> None:
    client, _, settings = voice_app
    engine = shop_db[1]
    user = new_user(engine)
    code = new_code(engine, settings, user)
    caller = stranger()
    call, root = new_call(), None
    for _ in range(MAX_FAILURES_PER_SENDER):
        if root is None or root.find("Hangup") is not None:
            call = new_call()
            root = ring(client, call, caller)
        digits = unused_code(engine, settings)
        root = twiml(answer_code(client, root, call, caller, digits=digits))
    assert attempts(engine, caller) == [False] * MAX_FAILURES_PER_SENDER

    # Even the right code is not checked now; the caller is told to try later.
    if root is None or root.find("Hangup") is not None:
        call = new_call()
        root = ring(client, call, caller)
    blocked = twiml(answer_code(client, root, call, caller, digits=code))
    assert spoken(blocked) == LINK_THROTTLED
    assert blocked.find("Hangup") is not None
    assert phone_of(engine, user) is None
    # Another number is not held back by this one's guesses.
    other, other_call = stranger(), new_call()
    linked = twiml(
        answer_code(client, ring(client, other_call, other), other_call, other, digits=code)
    )
    assert spoken(linked).startswith(LINKED.format(name=user.name))
    assert phone_of(engine, user) == other


def test_a_withheld_number_cannot_be_linked(
    voice_app: tuple[TestClient, SlowAssistant, Settings], shop_db: tuple[str, Engine, Shop]
) -> None:
    client, _, settings = voice_app
    anonymous, call = "+266696687", new_call()
    ended = ring(client, call, anonymous)
    assert said(ended) == [HELLO, WITHHELD] and ended.find("Hangup") is not None
    # A code posted anyway is not redeemed.
    code = new_code(shop_db[1], settings, new_user(shop_db[1]))
    response = post_signed(client, "/voice/link?a=1&s=0", call_params(call, anonymous, Digits=code))
    assert said(twiml(response)) == [WITHHELD]
    assert attempts(shop_db[1], anonymous) == []
