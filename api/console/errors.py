"""What the console shows when a request fails: the API's problem for the error (the
same status, code and detail, from ``api.problems``), as a page. A request without a
session that holds is sent to the sign-in page instead, and comes back where it was
going once signed in."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import psycopg
from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from api.console.rendering import render
from api.console.session import (
    CONSOLE_PATH,
    HTMX_REQUEST_HEADER,
    SESSION_USER_STATE,
    SIGN_IN_PATH,
    FormRefused,
    SignInRequired,
    safe_next_path,
)
from api.problems import (
    STATUS_BY_ERROR,
    database_error_response,
    database_unavailable,
    error_response,
    http_problem,
    internal_error_response,
    problem_response,
    validation_errors,
)

logger = logging.getLogger(__name__)


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


def problem_page(request: Request, problem: Response) -> Response:
    """The page for ``problem`` (a problem+json response of ``api.problems``), with the
    console's navigation when the request's session was admitted, and a way back to the
    console page the browser came from."""
    body: dict[str, Any] = orjson.loads(bytes(problem.body))
    headers = {
        name: value
        for name, value in problem.headers.items()
        if name.lower() in ("retry-after", "x-prep-position")
    }
    return render(
        request,
        "error.html",
        user=getattr(request.state, SESSION_USER_STATE, None),
        status_code=problem.status_code,
        headers=headers,
        problem=body,
        back=_console_referer(request),
    )


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
    return problem_page(request, problem)


async def _error(request: Request, error: Exception) -> Response:
    return problem_page(request, error_response(request, error))


async def _database_error(request: Request, error: Exception) -> Response:
    """A 503 page while the database cannot serve; any other database error is a bug."""
    if not database_unavailable(error):
        return await _internal(request, error)
    return problem_page(request, database_error_response(request, error))


async def _internal(request: Request, error: Exception) -> Response:
    """A bug: logged with its stack trace, shown as a page saying only that, with the
    request id to quote."""
    logger.error("unexpected error in %s %s", request.method, request.url.path, exc_info=error)
    return problem_page(request, internal_error_response(request.url.path))


async def _validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    detail = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'][1:]) or 'request'}: {item['msg']}"
        for item in validation_errors(error.errors())
    )
    problem = problem_response(request, status=422, code="validation_error", detail=detail)
    return problem_page(request, problem)


async def _http(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return problem_page(request, http_problem(request, error, request.method, request.url.path))


def install_console_error_handlers(console: FastAPI) -> None:
    console.add_exception_handler(SignInRequired, _sign_in_required)
    console.add_exception_handler(FormRefused, _form_refused)
    for error_class in STATUS_BY_ERROR:
        console.add_exception_handler(error_class, _error)
    for database_error in (psycopg.Error, PersistenceError, sqlite3.Error):
        console.add_exception_handler(database_error, _database_error)
    console.add_exception_handler(RequestValidationError, _validation)
    console.add_exception_handler(HTTPException, _http)
    # Anything else: this application's error middleware asks for its page (then raises
    # the error on, for the server's log).
    console.add_exception_handler(Exception, _internal)
