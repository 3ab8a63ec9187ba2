"""The web chat in a real headless Chromium against a real server on the demo distributor.

Log in, ask, watch the answer stream in, see the table and the chart, book an order with the
confirmation button, reload and find the conversation again, open a citation, and use the page
on a phone-sized screen. Screenshots go to `test-artifacts/` at the repository root.

Chromium comes from the system (Debian's `chromium`, installed by `make install-test`);
Playwright drives it and never downloads a browser.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.channels.web_demo import (
    ADMIN,
    PASSWORD,
    bookable,
    demo_app,
    demo_assistant,
    demo_database,
    demo_settings,
)
from tools.db import make_engine
from tools.models import Communication, ConversationTurn, Order, OrderLine, Store, User

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SALES = "sales by region this month vs last month"
REP = "rep1@demo.mangalm.in"
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM} (make install-test)"
)


@pytest.fixture(scope="module")
def engine(create_database: Callable[..., str]) -> Iterator[Engine]:
    engine = make_engine(demo_database(create_database))
    yield engine
    engine.dispose()


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port; yields its base URL."""
    settings = demo_settings(engine.url.render_as_string(hide_password=False))
    app = demo_app(settings, engine, demo_assistant(settings, engine))
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the web chat server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        yield chromium
        chromium.close()


@pytest.fixture()
def page_errors() -> list[str]:
    return []


def open_page(browser: Any, server: str, errors: list[str], **viewport: int) -> Any:
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)

    def console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", console)
    page.goto(server + "/")
    return page


def log_in(page: Any, email: str, password: str) -> None:
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.locator("#login-submit").click()
    page.locator("#chat-view").wait_for(state="visible")
    # The earlier conversation is restored before anything new is asked: otherwise a restored
    # answer could be taken for the next one.
    page.locator('#log[aria-busy="false"]').wait_for(state="attached")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-chat-{name}.png"), full_page=False)


# Records what the page shows while a turn runs: each text node added to an answer (the
# streamed pieces, then the whole text), whether the thinking indicator appeared, and how
# many text pieces had arrived when the table was drawn.
WATCH = """() => {
  window.__seen = {pieces: [], thinking: false, piecesBeforeTable: null};
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === Node.TEXT_NODE && record.target.classList.contains("text")) {
          window.__seen.pieces.push(node.data);
        } else if (node.nodeType === Node.ELEMENT_NODE) {
          if (node.classList.contains("thinking") || node.querySelector(".thinking")) {
            window.__seen.thinking = true;
          }
          if (node.matches(".table-wrap") && window.__seen.piecesBeforeTable === null) {
            window.__seen.piecesBeforeTable = window.__seen.pieces.length;
          }
        }
      }
    }
  }).observe(document.getElementById("log"), {childList: true, subtree: true});
}"""


def ask(page: Any, text: str) -> Any:
    """Type `text`, send it with Enter, wait for the answer; the answer's list item."""
    answers = page.locator("li.msg-bot")
    before = answers.count()
    page.locator("#ask").fill(text)
    page.locator("#ask").press("Enter")
    answer = answers.nth(before)
    answer.locator(".text").wait_for(state="visible")
    page.wait_for_function("() => !document.getElementById('send').disabled")
    return answer


def test_ask_stream_table_chart_and_book_an_order(
    browser: Any, server: str, engine: Engine, page_errors: list[str]
) -> None:
    page = open_page(browser, server, page_errors)
    assert page.locator("#login-form").is_visible()
    log_in(page, ADMIN, PASSWORD["admin"])
    assert page.locator("#who-name").inner_text().endswith("admin")

    page.evaluate(WATCH)
    answer = ask(page, SALES)

    seen = page.evaluate("window.__seen")
    final = answer.locator(".text").inner_text()
    assert final.startswith("Sales this month")
    assert seen["thinking"]
    # The answer arrived in pieces, each shown before the next, before the table was drawn.
    pieces = seen["pieces"]
    assert len(pieces) >= 3 and seen["piecesBeforeTable"] == len(pieces)
    assert "".join(pieces[:-1]) == pieces[-1] == final
    headers = answer.locator("table.data th").all_inner_texts()
    assert headers[0] == "region" and len(headers) >= 3
    regions = answer.locator("table.data tbody tr td:first-child").all_inner_texts()
    with Session(engine) as session:
        assert regions and set(regions) <= set(session.scalars(select(Store.region).distinct()))
    canvas = answer.locator("figure.chart canvas")
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 150
    chart_labels = page.evaluate(
        "(canvas) => Chart.getChart(canvas).data.labels", canvas.element_handle()
    )
    assert chart_labels == regions
    shot(page, "desktop-sales")

    booking = bookable(engine, [ADMIN])

    def orders() -> int:
        with Session(engine) as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Order)
                    .where(Order.store_id == booking.store_id)
                )
                or 0
            )

    before = orders()
    draft = ask(page, f"book 2 cases of {booking.product} for {booking.store}")
    assert "Shall I place it?" in draft.locator(".text").inner_text()
    assert booking.product in draft.locator("table.data").inner_text()
    assert orders() == before  # nothing is written before the confirmation
    answers = page.locator("li.msg-bot").count()
    draft.get_by_role("button", name="Yes").click()
    placed = page.locator("li.msg-bot").nth(answers)
    placed.locator(".text").wait_for(state="visible")
    page.wait_for_function("() => !document.getElementById('send').disabled")
    placed_text = placed.locator(".text").inner_text()
    assert "placed" in placed_text
    assert page.locator("li.msg-user .pressed").last.inner_text() == "Yes"
    assert draft.get_by_role("button", name="No").is_disabled()
    with Session(engine) as session:
        order = session.scalars(
            select(Order).where(Order.store_id == booking.store_id).order_by(Order.id.desc())
        ).first()
        assert order is not None and order.status == "placed"
        quantities = session.scalars(
            select(OrderLine.quantity).where(OrderLine.order_id == order.id)
        )
        assert list(quantities) == [2]
    assert orders() == before + 1
    assert f"Order {order.id} placed" in placed_text
    shot(page, "desktop-order-placed")

    # After a reload the conversation is still there, tables and charts redrawn.
    messages = page.locator("li.msg").count()
    page.reload()
    page.locator("#chat-view").wait_for(state="visible")
    page.locator("li.msg").nth(messages - 1).wait_for(state="visible")
    assert page.locator("li.msg").count() == messages
    assert page.locator("figure.chart canvas").count() >= 1
    assert page.locator("li.msg-bot .text").last.inner_text() == placed_text
    assert page.locator("li.msg-user .pressed").last.inner_text() == "Yes"
    assert page_errors == []


def test_text_is_shown_as_text_never_as_html(
    browser: Any, server: str, page_errors: list[str]
) -> None:
    page = open_page(browser, server, page_errors)
    log_in(page, ADMIN, PASSWORD["admin"])
    hostile = '<img src=x onerror="window.__owned=1"> what is <b>outstanding</b> for <i>x</i>?'
    ask(page, hostile)

    assert page.locator("li.msg-user .bubble").last.inner_text() == hostile
    assert page.locator("#log img, #log b, #log i").count() == 0
    assert page.evaluate("window.__owned") is None
    assert page_errors == []


def test_citation_opens_the_quoted_communication_only_when_allowed(
    browser: Any, server: str, engine: Engine, page_errors: list[str]
) -> None:
    # An earlier answer of this rep that quoted two communications: one of their own store
    # and one of another team's store (as a reply cached before a reassignment might).
    with Session(engine) as session:
        rep = session.scalars(select(User).where(User.email == REP)).one()
        own, own_store = session.execute(
            select(Communication, Store)
            .join(Store, Store.id == Communication.store_id)
            .where(Store.rep_id == rep.id)
            .order_by(Communication.id)
            .limit(1)
        ).one()
        other = session.scalars(
            select(Communication)
            .join(Store, Store.id == Communication.store_id)
            .where(Store.rep_id != rep.id)
            .order_by(Communication.id)
            .limit(1)
        ).one()
        reply = {
            "text": f"{own_store.name} said this on their last visit.",
            "citations": [
                {"communication_id": own.id, "store": own_store.name, "date": "last visit"},
                {"communication_id": other.id, "store": "Elsewhere", "date": "earlier"},
            ],
        }
        session.add(
            ConversationTurn(
                user_id=rep.id,
                channel="web",
                sender=rep.email,
                message_id=f"{rep.id}:{uuid.uuid4()}",
                text="what did they say last time?",
                answer=reply["text"],
                reply=reply,
            )
        )
        own_text, store_name = own.text, own_store.name
        session.commit()

    page = open_page(browser, server, page_errors)
    log_in(page, REP, PASSWORD["rep"])
    links = page.locator("a.citation")
    links.first.wait_for(state="visible")
    links.first.click()
    dialog = page.locator("#quote")
    dialog.wait_for(state="visible")
    page.wait_for_function("() => document.getElementById('quote-text').textContent !== ''")
    assert page.locator("#quote-title").inner_text() == store_name
    assert page.locator("#quote-text").text_content() == own_text
    shot(page, "desktop-citation")
    page.locator("#quote-close").click()
    dialog.wait_for(state="hidden")

    links.nth(1).click()
    page.locator("#quote-error").wait_for(state="visible")
    assert (
        page.locator("#quote-error").inner_text() == "This communication is not available to you."
    )
    assert page.locator("#quote-text").inner_text() == ""
    # The 404 of the refused communication is the browser's console message; nothing else.
    assert all("404" in error for error in page_errors)


def test_phone_screen_log_in_ask_and_log_out(
    browser: Any, server: str, page_errors: list[str]
) -> None:
    page = open_page(browser, server, page_errors, width=360, height=740)
    log_in(page, REP, PASSWORD["rep"])
    answer = ask(page, SALES)
    answer.locator("figure.chart canvas").wait_for(state="visible")

    # Nothing wider than the screen: wide tables scroll inside their own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for selector in ("#ask", "#send", "#logout"):
        box = page.locator(selector).bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
        assert box["y"] >= 0 and box["y"] + box["height"] <= 740, selector
    chart = answer.locator("figure.chart canvas").bounding_box()
    assert chart is not None and chart["width"] <= 360
    shot(page, "phone-sales")

    page.locator("#logout").click()
    page.locator("#login-form").wait_for(state="visible")
    assert page.evaluate("localStorage.getItem('mangalm.token')") is None
    assert page.locator("#log li").count() == 0
    assert page_errors == []


def test_an_expired_session_goes_back_to_the_login(
    browser: Any, server: str, page_errors: list[str]
) -> None:
    page = open_page(browser, server, page_errors)
    page.evaluate("localStorage.setItem('mangalm.token', 'expired-or-forged')")
    page.reload()
    page.locator("#login-form").wait_for(state="visible")
    assert page.locator("#login-error").inner_text() == (
        "Your session has ended. Please log in again."
    )
    page.locator("#email").fill(REP)
    page.locator("#password").fill("not the password")
    page.locator("#login-submit").click()
    page.wait_for_function(
        "() => document.getElementById('login-error').textContent.startsWith('Incorrect')"
    )
    assert page.locator("#chat-view").is_hidden()
    assert page.evaluate("localStorage.getItem('mangalm.token')") is None
