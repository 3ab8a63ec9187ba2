"""The LLM planner: the bounded tool-calling loop, grounding, and falling back offline.

The loop is driven by a scripted chat model (no network); the OpenAI path runs the real
`openai` client (through LangChain's ChatOpenAI) against an OpenAI-compatible test server on
loopback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from assistant.messages import InboundMessage
from assistant.nlu.intents import IntentClassifier, IntentGuess
from assistant.planners.llm import FALLBACK_NOTICE, LLMPlanner, make_chat_model
from assistant.planners.offline import OfflinePlanner
from assistant.turn import Assistant
from tools.settings import load_settings


class ScriptedChat(BaseChatModel):
    """Replies with the scripted messages in order, recording what it was sent."""

    script: list[Any]
    seen: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.seen.append(list(messages))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return ChatResult(generations=[ChatGeneration(message=step)])


def _call(name: str, args: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": "call_1"}])


class OfflineStub(OfflinePlanner):
    """The offline planner's fallback path, without training a classifier."""

    def respond(self, ctx, text, state, run, *, button=None):  # type: ignore[override]
        from assistant.messages import Reply
        from assistant.turn import PlannerOutcome

        return PlannerOutcome(Reply(text="offline answer"), "offline")


def _ask(engine, planner, text: str = "how much does sharma owe?"):
    assistant = Assistant(engine=engine, planner=planner)
    return assistant.handle(InboundMessage(channel="cli", sender="rep@example.com", text=text))


def test_tool_call_then_grounded_answer(planner_engine) -> None:
    chat = ScriptedChat(
        script=[
            _call("test_planner_dues", {"store": "sharma"}),
            AIMessage(content="Sharma General Store owes Rs 18,400."),
        ]
    )
    planner = LLMPlanner(chat, offline=OfflineStub(), always_llm=True)
    result = _ask(planner_engine, planner)
    assert result.reply.text == "Sharma General Store owes Rs 18,400."
    assert result.tool_calls[0]["result"] == {
        "store": "Sharma General Store",
        "outstanding": 18400.0,
    }
    tool_message = chat.seen[1][-1]
    assert isinstance(tool_message, ToolMessage) and "18400.0" in str(tool_message.content)


def test_tool_error_goes_back_to_the_model_as_text(planner_engine) -> None:
    chat = ScriptedChat(
        script=[
            _call("test_planner_dues", {"store": "gupta"}),
            AIMessage(content="I could not find a store called gupta."),
        ]
    )
    result = _ask(planner_engine, LLMPlanner(chat, offline=OfflineStub(), always_llm=True))
    assert result.reply.text == "I could not find a store called gupta."
    assert "No store found" in str(chat.seen[1][-1].content)


def test_ungrounded_answer_is_regenerated_then_falls_back(planner_engine) -> None:
    chat = ScriptedChat(
        script=[
            _call("test_planner_dues", {"store": "sharma"}),
            AIMessage(content="Sharma owes Rs 20,000."),
            AIMessage(content="Sharma owes Rs 18,400."),
        ]
    )
    result = _ask(planner_engine, LLMPlanner(chat, offline=OfflineStub(), always_llm=True))
    assert result.reply.text == "Sharma owes Rs 18,400."
    chat = ScriptedChat(
        script=[
            _call("test_planner_dues", {"store": "sharma"}),
            AIMessage(content="Sharma owes Rs 20,000."),
            AIMessage(content="Sharma owes Rs 21,000."),
        ]
    )
    result = _ask(planner_engine, LLMPlanner(chat, offline=OfflineStub(), always_llm=True))
    assert result.reply.text == "offline answer"
    assert result.reply.notice == FALLBACK_NOTICE


def test_max_steps_bounds_the_loop(planner_engine) -> None:
    chat = ScriptedChat(script=[_call("test_planner_dues", {"store": "sharma"})] * 10)
    planner = LLMPlanner(chat, offline=OfflineStub(), always_llm=True, max_steps=3)
    result = _ask(planner_engine, planner)
    assert result.reply.text == "offline answer"
    assert len(chat.seen) == 3


def test_model_error_falls_back_and_says_so(planner_engine) -> None:
    chat = ScriptedChat(script=[TimeoutError("model timed out")])
    result = _ask(planner_engine, LLMPlanner(chat, offline=OfflineStub(), always_llm=True))
    assert result.reply.text == "offline answer"
    assert FALLBACK_NOTICE in result.reply.as_text()


class CountingClassifier(IntentClassifier):
    """A classifier fitted on a few utterances that counts the messages it reads."""

    def __init__(self) -> None:
        greetings = ["hello", "hi there", "good morning", "namaste ji", "hello hello", "hey hi"]
        helps = ["help", "what can you do", "help me please", "how do i use this", "help pls"]
        other = ["weather today", "tell me a joke", "cricket score", "who won the match"]
        super().__init__(
            [(t, "greeting") for t in greetings]
            + [(t, "help") for t in helps]
            + [(t, "out_of_scope") for t in other]
        )
        self.read: list[str] = []

    def classify(self, text: str) -> IntentGuess:
        self.read.append(text)
        return super().classify(text)


def test_a_confident_offline_intent_is_answered_offline_reading_the_message_once(
    planner_engine,
) -> None:
    classifier = CountingClassifier()
    chat = ScriptedChat(script=[])
    planner = LLMPlanner(chat, offline=OfflinePlanner(classifier), confident=0.5)
    result = _ask(planner_engine, planner, "hello")
    assert result.intent == "greeting"
    assert chat.seen == [] and not result.tool_calls
    assert classifier.read == ["hello"]


# --------------------------------------------------------------------------- OpenAI server


class FakeOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions endpoint answering from a script."""

    script: list[tuple[int, dict[str, Any]]] = []
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        status, payload = type(self).script.pop(0)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _completion(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture()
def openai_server() -> Iterator[str]:
    FakeOpenAI.script, FakeOpenAI.requests = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_provider_through_the_real_client(
    planner_engine, openai_server, monkeypatch
) -> None:
    FakeOpenAI.script = [
        (
            200,
            _completion(
                {
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "test_planner_dues",
                                "arguments": json.dumps({"store": "sharma"}),
                            },
                        }
                    ],
                }
            ),
        ),
        (200, _completion({"content": "Sharma General Store owes Rs 18,400."})),
    ]
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_MODEL", "test-model")
    model = make_chat_model(load_settings())
    result = _ask(planner_engine, LLMPlanner(model, offline=OfflineStub(), always_llm=True))
    assert result.reply.text == "Sharma General Store owes Rs 18,400."
    first = FakeOpenAI.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    names = [t["function"]["name"] for t in first["body"]["tools"]]
    assert "test_planner_dues" in names and "confirm_order" not in names
    second = FakeOpenAI.requests[1]["body"]["messages"]
    assert second[-1]["role"] == "tool" and "18400.0" in second[-1]["content"]


def test_openai_5xx_falls_back_offline(planner_engine, openai_server, monkeypatch) -> None:
    FakeOpenAI.script = [(503, {"error": {"message": "overloaded"}})]
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server)
    model = make_chat_model(load_settings())
    result = _ask(planner_engine, LLMPlanner(model, offline=OfflineStub(), always_llm=True))
    assert result.reply.text == "offline answer"
    assert result.reply.notice == FALLBACK_NOTICE
