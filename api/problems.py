"""HTTP errors: the one table from error classes to statuses, and the handlers that
render every error as RFC 9457 ``application/problem+json``::

    {"type": "urn:prep-es:problem:booking_conflict", "title": "Booking conflict",
     "status": 409, "detail": "…", "instance": "/api/v1/bookings", "code": "booking_conflict",
     "request_id": "4f1c…"}

Validation errors add ``errors: [{loc, msg, type}]``; an erasure refused while money or
bookings are open (``erasure_blocked``) adds ``blockers`` and ``blockers_total``.
``code`` is the error's stable machine code (domain errors carry theirs, see
``aggregates.errors``). A 401 always
carries ``WWW-Authenticate: Bearer``; 429 and 503 carry ``Retry-After``. A database
in a state no client can fix (unreachable, shutting down, out of connections, refusing
writes, an SQLite file locked by another process past the busy timeout: see
:func:`database_unavailable`) is a 503 ``database_unavailable``; a data key wrapped by a
master key the process lacks, a 503 ``master_key_unavailable``. Anything
unexpected is a 500 that says only that, with the request id, and is logged with its
stack trace (see :func:`internal_error_response`, used by the request middleware).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

import orjson
import psycopg
from eventsourcing.persistence import OperationalError as StoreOperationalError
from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from aggregates.errors import (
    ActorNotAdmitted,
    DomainError,
    ErasureBlocked,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    StateConflict,
)
from aggregates.payment_provider import NotificationRejected, PaymentProviderError
from api.schemas import MIN_POSITION_HEADER, POSITION_HEADER
from prep_es.services.auth import RateLimited, Unauthenticated
from prep_es.services.logs import request_id
from prep_es.services.passwords import PasswordHashingBusy
from prep_es.store.personal_keys import MasterKeyError
from prep_es.store.postgres_recorders import DatabaseRefusesWrites
from projections.database import ReadModelNotReady
from queries.consistency import PositionAheadOfStore, ReadModelBehind, TooManyWaiters

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_PREFIX: Final = "urn:prep-es:problem:"
DATABASE_RETRY_AFTER_S: Final = 1
PAYMENT_PROVIDER_RETRY_AFTER_S: Final = 5
MASTER_KEY_RETRY_AFTER_S: Final = 30
"""Until every process runs with the master key that wraps the data keys (a restart)."""
READ_POSITION_STATE: Final = "read_position"
"""The ``request.state`` attribute where a query's read-model dependency leaves the
position it read at, so that a problem answering the query carries ``X-Prep-Position``
as its success would have."""

STATUS_BY_ERROR: Final[Mapping[type[Exception], int]] = {
    IdempotencyKeyReused: 422,
    InvalidRequest: 422,
    NotFound: 404,
    PermissionDenied: 403,
    InsufficientFunds: 402,
    StateConflict: 409,
    NotificationRejected: 400,
    PaymentProviderError: 503,
    DomainError: 400,
    Unauthenticated: 401,
    ActorNotAdmitted: 401,
    PositionAheadOfStore: 422,
    RateLimited: 429,
    PasswordHashingBusy: 503,
    ReadModelBehind: 503,
    TooManyWaiters: 503,
    ReadModelNotReady: 503,
    MasterKeyError: 503,
    StoreOperationalError: 503,
    psycopg.OperationalError: 503,
}
"""Every error a client can cause or must wait out, by class; a subclass takes the
status of its nearest listed ancestor."""


UNAVAILABLE_SQLSTATE_CLASSES: Final = frozenset({"08", "53", "57"})
"""PostgreSQL error classes no client can fix: connection exceptions, insufficient
resources (too many connections, disk full, out of memory), operator intervention
(shutting down, cannot connect now, a statement cancelled)."""
UNAVAILABLE_SQLSTATES: Final = frozenset({"25006"})
"""Single states besides: ``read_only_sql_transaction`` (the database refuses writes:
made read-only, or a standby)."""
SQLITE_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
"""SQLite's "database is locked" and "database table is locked": another connection (or
process) held the lock past the busy timeout. Primary codes: the extended ones keep
them in their low byte."""
SQLITE_BUSY_MESSAGES: Final = ("database is locked", "database table is locked")


def sqlite_busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's answer to a lock held elsewhere for too long."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in SQLITE_BUSY_CODES
    return str(error).startswith(SQLITE_BUSY_MESSAGES)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` — or a database error it was raised from, as eventsourcing
    wraps psycopg's and sqlite3's — says the database cannot serve now, whatever the
    client sends."""
    seen: BaseException | None = error
    for _ in range(8):  # a chain of causes is short; bounded all the same
        if seen is None:
            return False
        if isinstance(seen, psycopg.OperationalError | StoreOperationalError) or sqlite_busy(seen):
            return True
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(seen, psycopg.Error) and sqlstate is not None:
            return sqlstate in UNAVAILABLE_SQLSTATES or sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES
        seen = seen.__cause__
    return False


def status_for(error: Exception) -> int | None:
    for cls in type(error).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return None


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


def _code_for_status(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem_response(
    request: Request | None,
    *,
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    instance: str | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": _title(code),
        "status": status,
        "detail": detail,
        "instance": instance if instance is not None else _instance(request),
        "code": code,
        "request_id": request_id.get(),
    }
    if extra:
        body.update(extra)
    all_headers = dict(headers or {})
    position = None if request is None else getattr(request.state, READ_POSITION_STATE, None)
    if position is not None:
        all_headers.setdefault(POSITION_HEADER, str(position))
    if status == HTTPStatus.UNAUTHORIZED:
        all_headers["WWW-Authenticate"] = "Bearer"
    return ProblemResponse(body, status_code=status, headers=all_headers)


def _instance(request: Request | None) -> str:
    return "" if request is None else request.url.path


def error_response(request: Request | None, error: Exception) -> ProblemResponse:
    """The problem for an error listed in :data:`STATUS_BY_ERROR`."""
    status = status_for(error)
    assert status is not None, f"{type(error).__name__} has no status"
    headers: dict[str, str] = {}
    if isinstance(error, PaymentProviderError):
        logger.warning("payment provider unavailable: %s", error.detail)
        code, detail = error.code, error.detail
        headers["Retry-After"] = str(PAYMENT_PROVIDER_RETRY_AFTER_S)
    elif isinstance(error, DomainError | Unauthenticated):
        code, detail = error.code, error.detail
    elif isinstance(error, RateLimited | PasswordHashingBusy):
        code, detail = error.code, error.detail
        headers["Retry-After"] = str(error.retry_after_s)
    elif isinstance(error, ReadModelBehind):
        code = error.code
        detail = (
            f"the {error.name} read model has not reached position "
            f"{error.required_position} yet (it is at {error.position}); try again"
        )
        headers["Retry-After"] = str(error.retry_after_s)
        headers[POSITION_HEADER] = str(error.position)
    elif isinstance(error, ReadModelNotReady):
        code = error.code
        detail = "the read models are not built yet (no projector has run); try again"
        headers["Retry-After"] = str(error.retry_after_s)
    elif isinstance(error, PositionAheadOfStore):
        code = error.code
        detail = (
            f"{MIN_POSITION_HEADER} {error.required_position} is beyond the event store's "
            f"latest position ({error.head}): send a position a command answered"
        )
    elif isinstance(error, TooManyWaiters):
        code = error.code
        detail = "too many requests are waiting for read models to catch up; try again"
        headers["Retry-After"] = str(error.retry_after_s)
    elif isinstance(error, MasterKeyError):
        code, detail = _master_key_unavailable(error, headers)
    elif isinstance(error, DatabaseRefusesWrites):
        logger.warning("the database refuses writes: %s", error)
        code, detail = "database_unavailable", "the database refuses writes now; try again"
        headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    else:
        # The database went away: the stack trace is for us, not for the client.
        logger.warning("database unavailable", exc_info=error)
        code, detail = "database_unavailable", "the database is unavailable; try again"
        headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    extra: dict[str, Any] | None = None
    if isinstance(error, InvalidRequest):
        # A rule of the domain, not of the request's shape: where it names no single
        # field, the part of the request it judged stands for where.
        part = "query" if request is None or request.method in ("GET", "HEAD") else "body"
        loc = [part] if error.field is None else [part, error.field]
        extra = {"errors": [{"loc": loc, "msg": detail, "type": code}]}
    elif isinstance(error, PositionAheadOfStore):
        extra = {"errors": [{"loc": ["header", MIN_POSITION_HEADER], "msg": detail, "type": code}]}
    elif isinstance(error, ErasureBlocked):
        extra = {"blockers": error.blockers, "blockers_total": error.blockers_total}
    return problem_response(
        request, status=status, code=code, detail=detail, headers=headers, extra=extra
    )


def _master_key_unavailable(error: MasterKeyError, headers: dict[str, str]) -> tuple[str, str]:
    """The store holds a data key under a master key this process lacks (rotated in
    place before this process was restarted with the new key): the operator's to fix,
    and the key ids are for the log only."""
    logger.error("a data key does not open: %s", error)
    headers["Retry-After"] = str(MASTER_KEY_RETRY_AFTER_S)
    return (
        "master_key_unavailable",
        "this server cannot read some of its stored data now; try again later",
    )


def internal_error_response(request_path: str) -> ProblemResponse:
    """What a client sees of a bug: nothing but the request id to quote."""
    return problem_response(
        None,
        status=HTTPStatus.INTERNAL_SERVER_ERROR,
        code="internal_error",
        detail="something unexpected happened; quote the request id when reporting it",
        instance=request_path,
    )


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in errors
    ]


async def _handle_error(request: Request, error: Exception) -> Response:
    return error_response(request, error)


async def _handle_database_error(request: Request, error: Exception) -> Response:
    return database_error_response(request, error)


def database_error_response(request: Request, error: Exception) -> ProblemResponse:
    """A database error the table does not list: a 503 when the database cannot serve
    (read-only, shutting down, …), else raised on as the bug it is (a 500)."""
    if not database_unavailable(error):
        raise error
    logger.warning("database unavailable", exc_info=error)
    return problem_response(
        request,
        status=HTTPStatus.SERVICE_UNAVAILABLE,
        code="database_unavailable",
        detail="the database is unavailable; try again",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


async def _handle_validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = validation_errors(error.errors())
    if not _sends_json(request) and any(
        item["loc"] == ["body"] and item["type"] != "missing" for item in errors
    ):
        # A body sent as something else (a form, text) is not read as JSON at all.
        return problem_response(
            request,
            status=HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            code="unsupported_media_type",
            detail="send the request body as JSON (Content-Type: application/json)",
        )
    if any(item["type"] == "json_invalid" for item in errors):
        return problem_response(
            request,
            status=HTTPStatus.BAD_REQUEST,
            code="malformed_json",
            detail="the request body is not valid JSON",
            extra={"errors": errors},
        )
    return problem_response(
        request,
        status=HTTPStatus.UNPROCESSABLE_ENTITY,
        code="validation_error",
        detail="the request does not have the expected shape; see errors",
        extra={"errors": errors},
    )


async def _handle_http(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return http_problem(request, error, request.method, request.url.path)


def http_problem(
    request: Request | None, error: HTTPException, method: str, path: str
) -> ProblemResponse:
    """The problem for an HTTP-level refusal (no such route, method, body too large)."""
    code = _code_for_status(error.status_code)
    detail = error.detail if isinstance(error.detail, str) else _title(code)
    if error.status_code == HTTPStatus.BAD_REQUEST and request is not None and _sends_json(request):
        # The body could not even be decoded (not UTF-8, say): malformed JSON too.
        code, detail = "malformed_json", "the request body is not valid JSON"
    elif error.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        code = "request_too_large"
    elif error.status_code == HTTPStatus.NOT_FOUND and detail == "Not Found":
        detail = f"no route {path}"
    elif error.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        detail = f"{method} is not allowed on {path}"
    return problem_response(
        request,
        status=error.status_code,
        code=code,
        detail=detail,
        headers=error.headers,
        instance=path,
    )


def error_response_for_http(scope: Mapping[str, Any], error: HTTPException) -> ProblemResponse:
    """For middleware, which has a scope rather than a request."""
    return http_problem(None, error, str(scope.get("method", "")), str(scope.get("path", "")))


def install_error_handlers(app: FastAPI) -> None:
    for error_class in STATUS_BY_ERROR:
        app.add_exception_handler(error_class, _handle_error)
    for database_error in (psycopg.Error, PersistenceError, sqlite3.Error):
        app.add_exception_handler(database_error, _handle_database_error)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(HTTPException, _handle_http)


def _sends_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")
