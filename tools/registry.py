"""One registry of tools, four faces: Python calls, OpenAI function schemas, LangChain, REST, MCP.

A tool is a plain typed function declared once::

    @tool(category="stores")
    def find_store(ctx: ToolContext, *, query: str, limit: int = 5) -> StoreMatches:
        \"\"\"Find stores by name, code, owner, phone or city.

        Args:
            query: What the person typed, e.g. "sharma general" or "S0042".
            limit: How many candidates to return.
        \"\"\"

Its argument model and JSON schema come from the signature and the Google-style docstring
(never written twice). `ctx` travels separately; the model never sees it.

Errors a person should hear (not found, ambiguous, refused) are `ToolError`s: `run_tool`
returns them to the caller as data, not as a crash. Read tools run read-only (a read-only
transaction of their own, or a read-only savepoint) and what they did is rolled back, so a
read tool cannot write whatever path called it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from sqlalchemy import Connection

from tools.context import Actor, ToolContext
from tools.db import begin_if_autocommit, run_direct, transaction_of_its_own


class ToolError(Exception):
    """A failure to tell the person about (not a crash). `code` is machine-readable."""

    code = "tool_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.details}


class NotFound(ToolError):
    """Nothing the actor may see matches (also used for stores they may not see)."""

    code = "not_found"


class Ambiguous(ToolError):
    """Several things match; `candidates` lists them so the caller can ask which one."""

    code = "ambiguous"

    def __init__(self, message: str, candidates: list[dict[str, Any]]) -> None:
        super().__init__(message, candidates=candidates)
        self.candidates = candidates


class Refused(ToolError):
    """The action is not allowed or not possible (over credit limit, out of stock, read-only)."""

    code = "refused"


class UnknownTool(KeyError):
    """No tool has this name."""


class InvalidArguments(ValueError):
    """The arguments do not match the tool's schema; `errors` names the fields."""

    def __init__(self, tool: str, errors: list[dict[str, Any]]) -> None:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(arguments)" for e in errors)
        super().__init__(f"invalid arguments for {tool}: {fields}")
        self.tool = tool
        self.errors = errors


class _ArgsBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Tool:
    """A registered tool."""

    name: str
    func: Callable[..., Any]
    description: str
    args_model: type[BaseModel]
    result_type: Any
    writes: bool = False
    category: str = "general"
    examples: list[dict[str, Any]] = field(default_factory=list)
    # A read tool whose statements have one good plan whatever their parameters (a store's
    # figures by its id) lets PostgreSQL reuse a generic plan of them (see `read_only`).
    generic_plans: bool = False

    def json_schema(self) -> dict[str, Any]:
        """The arguments' JSON schema."""
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI function-calling schema."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.json_schema(),
            },
        }

    def validate(self, arguments: dict[str, Any] | None) -> BaseModel:
        try:
            return self.args_model.model_validate(arguments or {})
        except ValidationError as error:
            raise InvalidArguments(
                self.name,
                [
                    {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                    for e in error.errors()
                ],
            ) from None


F = TypeVar("F", bound=Callable[..., Any])

REGISTRY: dict[str, Tool] = {}


def _build_args_model(name: str, func: Callable[..., Any]) -> tuple[type[BaseModel], str]:
    doc = docstring_parser.parse(inspect.getdoc(func) or "")
    described = {p.arg_name: (p.description or "").strip() for p in doc.params}
    hints = get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.name == "ctx":
            continue
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"tool {name}: argument {param.name} must be keyword-only")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        if isinstance(default, FieldInfo):
            fields[param.name] = (annotation, default)
        else:
            fields[param.name] = (
                annotation,
                Field(default, description=described.get(param.name) or None),
            )
    model_name = "".join(part.capitalize() for part in name.split("_")) + "Args"
    model = create_model(model_name, __base__=_ArgsBase, **fields)
    description = "\n\n".join(
        part for part in (doc.short_description, doc.long_description) if part
    ).strip()
    return model, description


def tool(
    *,
    name: str | None = None,
    writes: bool = False,
    category: str = "general",
    examples: list[dict[str, Any]] | None = None,
    generic_plans: bool = False,
) -> Callable[[F], F]:
    """Register a function as a tool (see the module docstring; `generic_plans`: see
    `read_only`)."""

    def decorate(func: F) -> F:
        tool_name = name or func.__name__
        if tool_name in REGISTRY and REGISTRY[tool_name].func is not func:
            raise ValueError(f"tool {tool_name} is registered twice")
        args_model, description = _build_args_model(tool_name, func)
        if not description:
            raise TypeError(f"tool {tool_name} needs a docstring")
        REGISTRY[tool_name] = Tool(
            name=tool_name,
            func=func,
            description=description,
            args_model=args_model,
            result_type=get_type_hints(func).get("return"),
            writes=writes,
            category=category,
            examples=examples or [],
            generic_plans=generic_plans,
        )
        return func

    return decorate


def load_all() -> dict[str, Tool]:
    """Import every module that declares tools, and return the registry."""
    import importlib

    for module in TOOL_MODULES:
        if module in _LOADED:
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
        else:
            _LOADED.add(module)
    return REGISTRY


# The modules of `TOOL_MODULES` imported so far (every tool call looks the tools up).
_LOADED: set[str] = set()


# Modules that declare tools; a module not yet present is skipped.
TOOL_MODULES = [
    "tools.stores",
    "tools.orders",
    "tools.credit",
    "tools.inventory",
    "tools.promotions",
    "tools.order_flow",
    "forecasting.tools",
    "retrieval.search",
]


def get_tool(name: str) -> Tool:
    tools = load_all()
    if name not in tools:
        raise UnknownTool(name)
    return tools[name]


def available_tools(actor: Actor | None = None) -> list[Tool]:
    """The registered tools, sorted by category and name; without write tools for read-only
    actors (they could never call them)."""
    tools = sorted(load_all().values(), key=lambda t: (t.category, t.name))
    if actor is not None and not actor.can_write:
        tools = [t for t in tools if not t.writes]
    return tools


def openai_schemas(*, include_writes: bool = True) -> list[dict[str, Any]]:
    """Every tool as an OpenAI function-calling schema."""
    return [t.openai_schema() for t in load_all().values() if include_writes or not t.writes]


def langchain_tools(ctx: ToolContext, *, include_writes: bool = True) -> list[Any]:
    """Every tool the actor may call as a LangChain `StructuredTool`, bound to `ctx`.

    Arguments are validated with the tool's own model; the tool's answer (or its error, as
    `{"error", "message", ...}`) comes back as JSON text, so a model reads failures instead of
    the agent crashing. Needs `langchain-core` (imported only here).
    """
    import json

    from langchain_core.tools import StructuredTool

    def bind(spec: Tool) -> Any:
        def run(**arguments: Any) -> str:
            plain = {
                key: value.model_dump() if isinstance(value, BaseModel) else value
                for key, value in arguments.items()
            }
            plain = {
                key: [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
                if isinstance(value, list)
                else value
                for key, value in plain.items()
            }
            outcome = run_tool(ctx, spec.name, plain)
            return json.dumps(outcome.result if outcome.ok else outcome.error, default=str)

        return StructuredTool.from_function(
            func=run, name=spec.name, description=spec.description, args_schema=spec.args_model
        )

    tools = available_tools(ctx.actor)
    return [bind(spec) for spec in tools if include_writes or not spec.writes]


def to_jsonable(value: Any) -> Any:
    """A tool result as plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    return value


@dataclass
class ToolResult:
    """The outcome of one tool call, as every face reports it."""

    name: str
    args: dict[str, Any]
    ok: bool
    result: Any
    error: dict[str, Any] | None = None
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "args": self.args,
            "result": self.result if self.ok else self.error,
        }


# Read tools are short, index-driven reads: parallel workers cost more to start than they save
# (and take cores from other users' requests), and their aggregates over thousands of stores
# fit in 16 MB without spilling to disk. SET LOCAL ends with the transaction or savepoint.
_READ_SETTINGS = "SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL work_mem = '16MB'"
# Connections plan every execution for its parameters (`tools.db.make_engine`); a tool that
# opts in lets PostgreSQL reuse a generic plan once it is as good as the custom ones.
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = auto"
_READ_ONLY_SAVEPOINT = "SAVEPOINT mangalm_read; SET LOCAL transaction_read_only = on"
_READ_ONLY_SAVEPOINT_END = "ROLLBACK TO SAVEPOINT mangalm_read; RELEASE SAVEPOINT mangalm_read"
_NO_PARAMETERS = {"no_parameters": True}


@contextmanager
def read_only(connection: Connection, *, generic_plans: bool = False) -> Iterator[None]:
    """Run the block read-only, with the read tools' settings; whatever it did is rolled back.

    Where no transaction is open (a turn before it writes anything, a REST call), the block
    gets a read-only transaction of its own, begun and ended in one round trip each
    (`tools.db.transaction_of_its_own`). Inside a transaction (after a write tool, or in a
    caller's transaction), it runs in a read-only savepoint, so the rest of the transaction
    may still write: again one round trip to begin and one to end (several statements in one
    simple query).

    `generic_plans`: the block's statements may run with a generic plan, planned once per
    connection instead of at every execution. Only for statements whose best plan does not
    depend on their parameters (a lookup by one store's id, not a list of thousands of store
    ids or a status list that matches a partial index), with the partial indexes'
    conditions written as constants.
    """
    settings = f"{_READ_SETTINGS}; {_GENERIC_PLANS}" if generic_plans else _READ_SETTINGS
    begin = transaction_of_its_own(connection)
    if begin is not None:
        run_direct(connection, f"{begin} READ ONLY; {settings}")
        try:
            yield
        finally:
            run_direct(connection, "ROLLBACK")
        return
    connection.exec_driver_sql(
        f"{_READ_ONLY_SAVEPOINT}; {settings}", execution_options=_NO_PARAMETERS
    )
    try:
        yield
    finally:
        connection.exec_driver_sql(_READ_ONLY_SAVEPOINT_END, execution_options=_NO_PARAMETERS)


def call_tool(ctx: ToolContext, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """Validate and run a tool; raises `UnknownTool`, `InvalidArguments` or `ToolError`."""
    spec = get_tool(name)
    if spec.writes and not ctx.actor.can_write:
        raise Refused(f"{ctx.actor.role} users have read-only access")
    args = spec.validate(arguments)
    kwargs = {key: getattr(args, key) for key in type(args).model_fields}
    ctx.begin_call()
    if spec.writes:
        # On a connection in autocommit (a turn that has not written yet) the writes open a
        # transaction, so that they commit together with what follows them (the audit row).
        begin_if_autocommit(ctx.session.connection())
        return spec.func(ctx, **kwargs)
    # A read tool runs read-only (see `read_only`); pending ORM changes are flushed first,
    # outside the read-only part.
    ctx.session.flush()
    with read_only(ctx.session.connection(), generic_plans=spec.generic_plans):
        return spec.func(ctx, **kwargs)


def run_tool(ctx: ToolContext, name: str, arguments: dict[str, Any] | None = None) -> ToolResult:
    """Run a tool and report domain errors as data (for planners): never raises `ToolError`,
    `InvalidArguments` or `UnknownTool` (a model may name a tool that does not exist)."""
    from tools.observability import TOOL_CALLS, TOOL_ERRORS, TOOL_SECONDS, span

    started = time.perf_counter()
    args = dict(arguments or {})
    value: Any = None
    error: dict[str, Any] | None = None
    with span("tool", tool=name):
        try:
            value = to_jsonable(call_tool(ctx, name, args))
        except ToolError as failure:
            error = failure.to_dict()
        except InvalidArguments as failure:
            error = {
                "error": "invalid_arguments",
                "message": str(failure),
                "fields": failure.errors,
            }
        except UnknownTool:
            error = {"error": "unknown_tool", "message": f"There is no tool called {name}."}
    elapsed = time.perf_counter() - started
    label = name if name in REGISTRY else "unknown"
    TOOL_SECONDS.labels(label).observe(elapsed)
    TOOL_CALLS.labels(label, "ok" if error is None else "error").inc()
    if error is not None:
        TOOL_ERRORS.labels(label, str(error.get("error"))).inc()
        return ToolResult(name, args, False, None, error, elapsed * 1000)
    return ToolResult(name, args, True, value, None, elapsed * 1000)
