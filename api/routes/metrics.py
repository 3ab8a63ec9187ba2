"""Prometheus metrics at /metrics (turns by channel and intent, latencies, tool errors, queue
depth, LLM fallbacks, degraded dependencies). Labels never carry customer data."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
