"""What the console shows when a request fails: the API's problem for the error (the
same status, code and detail, from ``api.problems``), as a page. A request without a
session that holds is sent to the sign-in page instead, and comes back where it was
going once signed in."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, Final
from urllib.parse import quote, urlsplit

import orjson
import psycopg
from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from aggregates.errors import ActorNotAdmitted
from api.console.rendering import render
from api.console.session import (
    CONSOLE_PATH,
    CONSOLE_ROLES,
    SESSION_COOKIE,
    FormRefused,
    SignInRequired,
)
from api.deps import AuthenticatedUser, authenticated
from api.problems import (
    STATUS_BY_ERROR,
    database_error_response,
    error_response,
    http_problem,
    internal_error_response,
    problem_response,
    validation_errors,
)
from prep_es.services.auth import Unauthenticated

logger = logging.getLogger(__name__)

SIGN_IN_PATH: Final = f"{CONSOLE_PATH}/sign-in"
HTMX_REQUEST_HEADER: Final = "hx-request"
NEXT_PATH_LENGTH_MAX: Final = 2000


def safe_next_path(path: str | None) -> str:
    """Where to go after signing in: a console path, never another site (``//host``
    or ``/\\host`` would be one to a browser)."""
    if (
        not path
        or len(path) > NEXT_PATH_LENGTH_MAX
        or not path.startswith(CONSOLE_PATH + "/")
        or path.startswith(SIGN_IN_PATH)
        or any(character in path for character in "\\\r\n\t")
    ):
        return CONSOLE_PATH + "/"
    return path


def sign_in_redirect(request: Request, reason: str) -> Response:
    """To the sign-in page, which sends the browser back here once signed in: to this
    page, or for a form (which cannot be posted again by a redirect) to the page the
    form was on."""
    if request.method == "GET":
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        back = _console_referer(request) or CONSOLE_PATH + "/"
    location = f"{SIGN_IN_PATH}?reason={quote(reason)}&next={quote(safe_next_path(back))}"
    if HTMX_REQUEST_HEADER in request.headers:
        # A fragment's request: the whole page goes to the sign-in form.
        return Response(status_code=204, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def problem_page(request: Request, problem: Response) -> Response:
    """The page for ``problem`` (a problem+json response of ``api.problems``), with the
    console's navigation when a session holds, and a way back to the console page the
    browser came from."""
    body: dict[str, Any] = orjson.loads(bytes(problem.body))
    headers = {
        name: value
        for name, value in problem.headers.items()
        if name.lower() in ("retry-after", "x-prep-position")
    }
    return render(
        request,
        "error.html",
        user=await _signed_in(request),
        status_code=problem.status_code,
        headers=headers,
        problem=body,
        back=_console_referer(request),
    )


async def _signed_in(request: Request) -> AuthenticatedUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        user = await authenticated(request.app.state.services, token)
    except (Unauthenticated, ActorNotAdmitted):
        return None
    return user if user.role in CONSOLE_ROLES else None


def _console_referer(request: Request) -> str | None:
    """The console page the browser came from (same origin only), to go back to."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc:
        return None
    path = referer.path + (f"?{referer.query}" if referer.query else "")
    return path if safe_next_path(path) == path else None


async def _sign_in_required(request: Request, error: Exception) -> Response:
    assert isinstance(error, SignInRequired)
    return sign_in_redirect(request, error.reason)


async def _form_refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, FormRefused)
    problem = problem_response(request, status=403, code=error.code, detail=error.detail)
    return await problem_page(request, problem)


async def _error(request: Request, error: Exception) -> Response:
    return await problem_page(request, error_response(request, error))


async def _database_error(request: Request, error: Exception) -> Response:
    """A 503 page while the database cannot serve; any other database error is a bug,
    logged with its stack trace and shown as a 500 page (raised on, it would meet this
    application's own error middleware, which answers in plain text)."""
    try:
        problem = database_error_response(request, error)
    except Exception:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        problem = internal_error_response(request.url.path)
    return await problem_page(request, problem)


async def _validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    detail = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'][1:]) or 'request'}: {item['msg']}"
        for item in validation_errors(error.errors())
    )
    problem = problem_response(request, status=422, code="validation_failed", detail=detail)
    return await problem_page(request, problem)


async def _http(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return await problem_page(
        request, http_problem(request, error, request.method, request.url.path)
    )


def install_console_error_handlers(console: FastAPI) -> None:
    console.add_exception_handler(SignInRequired, _sign_in_required)
    console.add_exception_handler(FormRefused, _form_refused)
    for error_class in STATUS_BY_ERROR:
        console.add_exception_handler(error_class, _error)
    for database_error in (psycopg.Error, PersistenceError, sqlite3.Error):
        console.add_exception_handler(database_error, _database_error)
    console.add_exception_handler(RequestValidationError, _validation)
    console.add_exception_handler(HTTPException, _http)
