"""The console: a server-rendered web UI at ``/console`` for admins and analysts, on
the same read models, commands and rules as the API (see docs/console.md).

It is an application of its own, mounted under ``/console`` by the app factory, so that
its errors are pages rather than problem documents and its routes stay out of the
API's OpenAPI document; it shares the process's services (``state.services``, set by
the app's lifespan). Pages (``pages/``) read; actions (``actions/``) run commands.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from api.console.actions import moderation as moderation_actions
from api.console.actions import operations as operations_actions
from api.console.actions import session as session_actions
from api.console.actions import users as users_actions
from api.console.errors import install_console_error_handlers
from api.console.pages import aggregates, analytics, audit, home, moderation, operations, users
from api.console.session import CONSOLE_PATH

__all__ = ["CONSOLE_PATH", "CONSOLE_ROUTERS", "create_console"]

CONSOLE_ROUTERS: tuple[APIRouter, ...] = (
    home.router,
    moderation.router,
    operations.router,
    users.router,
    audit.router,
    aggregates.router,
    analytics.router,
    session_actions.router,
    moderation_actions.router,
    operations_actions.router,
    users_actions.router,
)


def create_console() -> FastAPI:
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_console_error_handlers(console)
    console.mount("/static", StaticFiles(packages=[("api.console", "static")]), name="static")
    for router in CONSOLE_ROUTERS:
        console.include_router(router)
    return console
