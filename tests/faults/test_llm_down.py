"""The LLM provider times out or answers 5xx: the built-in planner answers, and the reply
says that the AI model was unavailable.

The app runs with `LLM_PROVIDER=openai` against an OpenAI-compatible server on loopback that
fails on purpose. The web chat asks a question the offline planner is not sure about (so the
model is asked first); the answer still comes, from the database, with the notice.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.auth import create_access_token
from api.main import create_app
from assistant.factory import build_assistant
from assistant.messages import InboundMessage
from assistant.planners.llm import FALLBACK_NOTICE
from tests.channels.twilio_support import Shop, build_shop
from tools.db import make_engine
from tools.settings import load_settings

SECRET = "fault-tests-secret-key-that-is-long-enough-0123"
# Questions about a store's dues phrased loosely; the test uses the first one the offline
# classifier is not sure enough about to answer alone (so the model is asked first), whatever
# the intent utterances say today.
LOOSE_QUESTIONS = [
    "Sharma General Store ka khata",
    "Sharma General Store status",
    "Sharma General Store ka kya scene hai",
    "Sharma General Store hisaab kitab",
]


def _unsure_question() -> str:
    from assistant.planners.llm import LLMPlanner
    from assistant.planners.offline import OfflinePlanner

    classifier = OfflinePlanner().classifier
    threshold = inspect.signature(LLMPlanner.__init__).parameters["confident"].default
    for question in LOOSE_QUESTIONS:
        guess = classifier.classify(question)
        if guess.confidence < threshold and guess.intent == "outstanding":
            return question
    raise AssertionError(f"every candidate is classified confidently: {LOOSE_QUESTIONS}")


UNSURE_QUESTION = _unsure_question()
TIMEOUT_SECONDS = 0.5


class FailingProvider(BaseHTTPRequestHandler):
    """`POST /v1/chat/completions` that fails the way `mode` says: "503" or "hang"."""

    mode = "503"
    requests: list[str] = []
    release = threading.Event()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).requests.append(self.path)
        if type(self).mode == "hang":
            type(self).release.wait(30)  # until the test is over: far past the client's timeout
        data = json.dumps({"error": {"message": "overloaded", "type": "server_error"}}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def shop_db(create_database: Callable[..., str]) -> Iterator[tuple[str, Engine, Shop]]:
    url = create_database(migrate=True)
    engine = make_engine(url)
    yield url, engine, build_shop(engine)
    engine.dispose()


@pytest.fixture()
def provider() -> Iterator[str]:
    FailingProvider.requests = []
    FailingProvider.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FailingProvider)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    FailingProvider.release.set()
    server.shutdown()
    server.server_close()


def _fallbacks(client: TestClient) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("mangalm_llm_fallbacks_total{"):
            total += float(line.split()[-1])
    return total


@pytest.mark.parametrize("mode", ["503", "hang"])
def test_a_failing_model_is_replaced_by_the_offline_planner_and_the_reply_says_so(
    shop_db: tuple[str, Engine, Shop], provider: str, mode: str
) -> None:
    url, engine, shop = shop_db
    FailingProvider.mode = mode
    settings = load_settings(
        database_url=url,
        secret_key=SECRET,
        environment="test",
        llm_provider="openai",
        openai_base_url=provider,
        openai_api_key="sk-test",
        llm_timeout_seconds=TIMEOUT_SECONDS,
    )
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {create_access_token(shop.rep, settings).token}"}
        before = _fallbacks(client)
        started = time.monotonic()
        response = client.post(
            "/api/chat",
            json={"text": UNSURE_QUESTION, "message_id": uuid.uuid4().hex},
            headers=headers,
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        turn = response.json()
        assert FailingProvider.requests == ["/v1/chat/completions"]  # the model was asked once
        assert turn["reply"]["notice"] == FALLBACK_NOTICE
        assert "AI model was unavailable" in turn["answer"]
        # The answer is the built-in planner's own, from the database.
        offline = build_assistant(load_settings(database_url=url), engine).handle(
            InboundMessage(
                channel="web", sender=shop.rep.email, user_id=shop.rep.id, text=UNSURE_QUESTION
            )
        )
        assert turn["reply"]["text"] == offline.reply.text
        assert turn["intent"] == offline.intent
        assert turn["tool_calls"] and all(call.get("error") is None for call in turn["tool_calls"])
        assert elapsed < 10 * TIMEOUT_SECONDS  # a hung provider is not waited for
        assert _fallbacks(client) == before + 1
