"""Logs, metrics and traces shared by every layer.

- Logs: every record carries the turn (or request) id from a context variable, so one turn can
  be followed from the channel through the assistant to the tools; `LOG_FORMAT=json` writes
  one JSON object per line (python-json-logger) for log shippers.
- Metrics: Prometheus counters and histograms, exposed by the API at `/metrics`.
- Traces: OpenTelemetry, switched on by `OTEL_ENABLED=true` (spans for HTTP requests, turns
  and tool calls; exported over OTLP to `OTEL_EXPORTER_OTLP_ENDPOINT`).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

turn_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("turn_id", default=None)

TURNS = Counter("mangalm_turns_total", "Assistant turns", ["channel", "intent"])
TURN_SECONDS = Histogram(
    "mangalm_turn_seconds",
    "Latency of assistant turns",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
)
TOOL_CALLS = Counter("mangalm_tool_calls_total", "Tool calls", ["tool", "outcome"])
TOOL_SECONDS = Histogram(
    "mangalm_tool_seconds",
    "Latency of tool calls",
    ["tool"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
TOOL_ERRORS = Counter("mangalm_tool_errors_total", "Tool calls that failed", ["tool", "error"])
LLM_FALLBACKS = Counter(
    "mangalm_llm_fallbacks_total", "Turns answered offline because the LLM failed", ["reason"]
)
QUEUE_DEPTH = Gauge("mangalm_queue_depth", "Turns waiting in the background queue", ["queue"])
RATE_LIMITED = Counter("mangalm_rate_limited_total", "Messages refused by rate limits", ["scope"])
DEGRADED = Gauge(
    "mangalm_degraded", "1 while a dependency is unavailable and a fallback is used", ["component"]
)
UNAVAILABLE_REPLIES = Counter(
    "mangalm_unavailable_replies_total", "Turns answered 'temporarily unavailable'", ["component"]
)


class TurnIdFilter(logging.Filter):
    """Adds `turn_id` to every record (\"-\" outside a turn)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.turn_id = turn_id_var.get() or "-"
        return True


@contextmanager
def turn_scope(turn_id: str) -> Iterator[None]:
    """Within this block, log records and spans carry `turn_id`."""
    token = turn_id_var.set(turn_id)
    try:
        yield
    finally:
        turn_id_var.reset(token)


def configure_logging(level: str = "INFO", fmt: str = "text", stream: Any = None) -> None:
    """Root logging with the turn id on every line; `fmt` is "text" or "json"."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TurnIdFilter())
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(turn_id)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(turn_id)s] %(message)s")
        )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)


_tracer: Any = None


def configure_tracing(service_name: str = "mangalm", endpoint: str | None = None) -> Any:
    """Install an OpenTelemetry tracer provider exporting over OTLP; returns the tracer."""
    global _tracer
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    except ImportError:  # the exporter is optional; spans still reach in-process processors
        logging.getLogger(__name__).warning("OTLP exporter not installed; spans are not exported")
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("mangalm")
    return _tracer


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A tracing span when tracing is on; nothing otherwise (cheap)."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(name) as current:
        for key, value in attributes.items():
            if value is not None:
                current.set_attribute(key, value)
        yield
