"""The sign-in page, and the console's first page: where each role can go."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.console.rendering import render
from api.console.session import (
    CONSOLE_PATH,
    NEXT_PATH_LENGTH_MAX,
    ConsoleUser,
    safe_next_path,
    session_user_or_none,
    set_sign_in_cookie,
    sign_in_form_token,
    sign_in_nonce,
)
from api.deps import ServicesDep

router = APIRouter()

SIGN_IN_REASONS = {
    "not_signed_in": None,
    "token_expired": "Your session has ended. Sign in again.",
    "token_revoked": "You signed out. Sign in again.",
    "role_changed": "Your role has changed. Sign in again.",
    "user_inactive": "This user is deactivated.",
    "invalid_token": "Sign in again.",
}


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(
    request: Request,
    services: ServicesDep,
    next_path: Annotated[str | None, Query(alias="next", max_length=NEXT_PATH_LENGTH_MAX)] = None,
    reason: Annotated[str | None, Query(max_length=40)] = None,
    done: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The sign-in form; a browser already signed in goes on where it was going."""
    if await session_user_or_none(request, services) is not None:
        return RedirectResponse(safe_next_path(next_path), status_code=303)
    nonce = sign_in_nonce(request)
    response = render(
        request,
        "sign_in.html",
        user=None,
        sign_in_token=sign_in_form_token(services, nonce),
        next_path=safe_next_path(next_path),
        message=SIGN_IN_REASONS.get(reason or "")
        or ("You are signed out." if done == "signed_out" else None),
        error=None,
        email="",
    )
    set_sign_in_cookie(response, request, nonce)
    return response


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, user: ConsoleUser) -> Response:
    """Admins: the sections of the console. Analysts have one: analytics."""
    if user.role != "admin":
        return RedirectResponse(f"{CONSOLE_PATH}/analytics", status_code=303)
    return render(request, "home.html", user=user)
