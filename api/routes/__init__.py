"""Every router of the API, gathered in one place."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import apikeys, auth, health, metrics, tools
from channels import web

ROUTERS: list[APIRouter] = [
    health.router,
    metrics.router,
    auth.router,
    apikeys.router,
    tools.router,
    web.router,
    web.page_router,
]
