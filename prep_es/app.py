"""The HTTP application: ``create_app(settings)`` builds it without touching anything;
its lifespan opens the services (event store, read side, projectors, sweeper), creates
the configured admin if absent, and closes everything at shutdown.

``settings.api_role`` decides what it serves under ``/api/v1``: ``write`` (command
routes), ``read`` (query routes) or ``all``. For ``uvicorn --factory``:
``prep_es.app:create_app_from_environment``.

JSON out: a route's response model is serialized by pydantic-core straight to bytes
(FastAPI's default path when no response class is set: 2.8 µs for a booking, against
4.1 µs for ``model_dump`` + orjson, which is what ``ORJSONResponse`` costs — FastAPI
deprecates it for that reason); problem documents and other hand-built bodies are
written with orjson (``api.problems.ProblemResponse``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from http import HTTPStatus
from typing import Any, Final

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregates.errors import EmailTaken
from api.commands import COMMAND_ROUTERS
from api.console import CONSOLE_PATH, create_console
from api.operations import open_operations
from api.operations import router as operations_router
from api.problems import (
    PROBLEM_MEDIA_TYPE,
    error_response_for_http,
    install_error_handlers,
    internal_error_response,
)
from api.queries import QUERY_ROUTERS
from api.queries.kitchens.fast_reads import KitchenReadsMiddleware
from api.queries.kitchens.schemas import summary_json
from api.schemas import Problem
from commands.context import CommandContext
from commands.users import CreateUser
from prep_es.docs import missing_assets
from prep_es.docs import router as docs_router
from prep_es.services.container import Passwords, Services, open_services
from prep_es.services.logs import (
    REQUEST_ID_HEADER,
    accept_request_id,
    configure_logging,
    request_id,
)
from prep_es.services.metrics import Metrics, MetricsMiddleware
from prep_es.services.runtime import system_clock, tune_garbage_collection
from prep_es.store.settings import Settings, load_settings
from queries.consistency import ReadModelBehind

logger = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
ADMIN_FULL_NAME: Final = "Administrator"
ROUTER_ORDER: Final = (
    "/kitchens", "/bookings", "/auth", "/users", "/accounts", "/analytics", "/admin",
    "/admin/users",
)  # fmt: skip
"""Router prefixes, busiest first (see ``api_routers``). Sorting is stable: a command
router stays before the query router of its prefix, so a method a path does not take
is answered 405 with the command's ``Allow``, as before the routers were reordered."""
REQUEST_BODY_BYTES_MAX: Final = 1024 * 1024
"""Larger bodies are refused with 413 (no request needs more)."""
NO_SNIFF: Final = ("X-Content-Type-Options", "nosniff")
"""On every answer: browsers take the declared content type, never a guessed one."""
NO_STORE: Final = ("Cache-Control", "no-store")
"""On every answer to a request that carried credentials: no cache keeps it."""

DESCRIPTION: Final = """
The booking ledger of Prep, a marketplace for renting commercial kitchens by the hour.

**Commands** (POST/PATCH) append events and answer with the resulting state, its event
store `position` and an `X-Prep-Position` header. **Queries** (GET) read projections and
answer with `X-Prep-Position` (how far the read model has got); send
`X-Prep-Min-Position: N` to wait until it reached your write.

Authenticate with `Authorization: Bearer <token>` from `POST /api/v1/auth/login`. Money
is a decimal string with two places (`"120.00"`, USD); times are RFC 3339 with an offset.
Errors are RFC 9457 `application/problem+json` with a stable `code` and the
`request_id` (echoed in `X-Request-ID`).
"""

TAGS: Final = [
    {"name": "auth", "description": "Register and log in."},
    {"name": "users", "description": "The signed-in user."},
    {"name": "kitchens", "description": "Listings, their moderation and certificates."},
    {"name": "bookings", "description": "Requests, confirmations, cancellations, money holds."},
    {"name": "accounts", "description": "Balances, top-ups, payouts, withdrawals, statements."},
    {"name": "payments", "description": "The payment provider's signed notifications."},
    {"name": "admin", "description": "Moderation, users, ledger, audit, projections."},
    {"name": "analytics", "description": "Statistics over the read models."},
]


class RequestContextMiddleware:
    """Gives each request an id (the client's ``X-Request-ID`` if it is a sane token,
    else a new one), makes it the logging context, echoes it on the response, refuses
    bodies over ``body_bytes_max`` (413), and turns an unexpected exception into a 500
    problem, logged with its stack trace. Every response it passes carries
    :data:`NO_SNIFF`, and :data:`NO_STORE` when the request carried ``Authorization``
    (whatever the route said: an answer for one user is never for a shared cache)."""

    def __init__(self, app: ASGIApp, body_bytes_max: int = REQUEST_BODY_BYTES_MAX) -> None:
        self.app = app
        self.body_bytes_max = body_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        current = accept_request_id(headers.get(REQUEST_ID_HEADER))
        token = request_id.set(current)
        scope.setdefault("state", {})["request_id"] = current
        response_started = False
        authenticated = "authorization" in headers

        async def send_with_request_id(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                response_headers = MutableHeaders(scope=message)
                response_headers[REQUEST_ID_HEADER] = current
                response_headers[NO_SNIFF[0]] = NO_SNIFF[1]
                if authenticated:
                    response_headers[NO_STORE[0]] = NO_STORE[1]
            await send(message)

        received_bytes = 0

        async def receive_bounded() -> Message:
            nonlocal received_bytes
            message = await receive()
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > self.body_bytes_max:
                    raise self._too_large()
            return message

        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.body_bytes_max:
                response = error_response_for_http(scope, self._too_large())
                await response(scope, receive, send_with_request_id)
                return
            await self.app(scope, receive_bounded, send_with_request_id)
        except Exception:
            logger.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise
            response = internal_error_response(scope.get("path", ""))
            await response(scope, receive, send_with_request_id)
        finally:
            request_id.reset(token)

    def _too_large(self) -> HTTPException:
        return HTTPException(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"request bodies are at most {self.body_bytes_max} bytes",
        )


def bootstrap_admin(services: Services) -> None:
    """Create the admin named by ``PREP_ES_ADMIN_EMAIL`` unless that email exists. With
    the projectors in this process, wait (bounded) until the users read model has the
    admin, so they can log in as soon as the server answers."""
    settings = services.settings
    if settings.admin_email is None or settings.admin_password is None:
        return
    try:
        created = services.commands.users.create_user(
            CreateUser(
                email=settings.admin_email,
                password=settings.admin_password.get_secret_value(),
                full_name=ADMIN_FULL_NAME,
                role="admin",
            ),
            CommandContext(actor=None, request_id="bootstrap-admin"),
        )
    except EmailTaken:
        logger.info("admin %s already exists", settings.admin_email)
        return
    logger.info("created admin %s (%s)", settings.admin_email, created.result.id)
    if services.supervisor is None:
        return
    try:
        services.read_positions.wait_for("users", created.position, settings.min_position_wait_s)
    except ReadModelBehind:
        logger.warning("the users read model does not have the admin yet; it will shortly")


def _problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, with error answers described as the problem documents
    they are (``application/problem+json``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        problem_ref = {"$ref": "#/components/schemas/Problem"}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in components:
            components["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            for name, definition in components["Problem"].pop("$defs", {}).items():
                components.setdefault(name, definition)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, answer in operation.get("responses", {}).items():
                    if status.isdigit() and int(status) >= 400:
                        answer["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    return openapi


def api_routers(role: str) -> list[APIRouter]:
    """The routers ``role`` serves, each to be included straight under the application:
    FastAPI matches a request again at each level of nesting, and tries routers in
    order, so the busiest come first (no route takes a method and path another takes,
    so the order decides nothing else but a 405's ``Allow``)."""
    serving = [
        router
        for kind, routers in (("write", COMMAND_ROUTERS), ("read", QUERY_ROUTERS))
        if role in (kind, "all")
        for router in routers
    ]

    def rank(router: APIRouter) -> int:
        prefix = router.prefix
        return ROUTER_ORDER.index(prefix) if prefix in ROUTER_ORDER else len(ROUTER_ORDER)

    return sorted(serving, key=rank)


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], Any] = system_clock,
    passwords: Passwords | None = None,
    tune_gc_when_started: bool = False,
) -> FastAPI:
    """The application for ``settings``. Nothing is opened until its lifespan starts.
    ``clock`` and ``passwords`` are for tests (a clock they move, cheap hashing);
    ``tune_gc_when_started``: for a server process (see ``tune_garbage_collection``)."""
    metrics = Metrics()
    missing = missing_assets()
    if missing:
        msg = f"the API documentation's assets are not installed: {', '.join(missing)}"
        raise RuntimeError(msg)
    # The console's pages read and its actions write: a process serving one side only
    # does not serve it.
    console = create_console() if settings.api_role == "all" else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await anyio.to_thread.run_sync(
            partial(
                open_services,
                settings,
                clock=clock,
                passwords=passwords,
                render_kitchen=summary_json,
            )
        )
        app.state.services = services
        if console is not None:
            console.state.services = services
        app.state.operations = open_operations(services, metrics)
        try:
            await anyio.to_thread.run_sync(bootstrap_admin, services)
            if tune_gc_when_started:
                tune_garbage_collection()
            yield
        finally:
            await anyio.to_thread.run_sync(services.close)

    app = FastAPI(
        title="Prep ES",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # Served by prep_es.docs from the package, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    if settings.api_role != "write":
        # Innermost: request ids, logs and metrics wrap its answers as any route's.
        app.add_middleware(KitchenReadsMiddleware, prefix=API_PREFIX)
    app.add_middleware(RequestContextMiddleware)
    # Outside the request context middleware, so it also times the 500s that one renders.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(operations_router)
    app.include_router(docs_router)
    if console is not None:
        # Before the API's routes, which a console request would otherwise be matched
        # against one by one first (a sixth of a page's time); an API request pays one
        # prefix check for it.
        app.mount(CONSOLE_PATH, console)
    for router in api_routers(settings.api_role):
        app.include_router(router, prefix=API_PREFIX)
    app.openapi = _problem_openapi(app)  # type: ignore[method-assign]
    return app


def create_app_from_environment() -> FastAPI:
    """For ``uvicorn --factory``: settings from ``PREP_ES_*``, JSON logs."""
    configure_logging()
    return create_app(load_settings(), tune_gc_when_started=True)
