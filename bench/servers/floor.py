"""The floors of bench/http_api.py, served by uvicorn like the API: a bare FastAPI
application with (a) a route that saves one new aggregate with eventsourcing, the naive
way (a ``def`` route in the thread pool, the library's default PostgreSQL recorder), and
(b) a route returning a constant.

Configured by ``BENCH_FLOOR_DATABASE_URL`` (``postgresql://...``) and
``BENCH_FLOOR_POOL_SIZE``; run as
``uvicorn --app-dir bench/servers --factory floor:create_app --workers 2``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.utils import Environment, EnvType
from fastapi import FastAPI, Request


class FloorAggregate(Aggregate):
    """A trivial aggregate: one ``Created`` event."""


class FloorApplication(Application[UUID]):
    name = "http_floor"

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))


def floor_env(url: str, pool_size: int) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "CREATE_TABLE": "y",
    }


def create_app() -> FastAPI:
    """Its tables must exist already: two workers creating them at once may collide."""
    env = floor_env(
        os.environ["BENCH_FLOOR_DATABASE_URL"], int(os.environ.get("BENCH_FLOOR_POOL_SIZE", "10"))
    )
    env["CREATE_TABLE"] = "n"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = FloorApplication(env=env)
        try:
            yield
        finally:
            app.state.store.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/save", status_code=201)
    def save(request: Request) -> dict[str, Any]:
        aggregate = FloorAggregate()
        request.app.state.store.save(aggregate)
        return {"id": str(aggregate.id)}

    @app.get("/constant")
    async def constant() -> dict[str, Any]:
        return {"status": "ok"}

    return app
