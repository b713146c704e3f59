"""Signing in and out. Signing in is the API's login (``POST /auth/login``): the same
password check and the same limits per email and per client address, answering 429
with ``Retry-After`` once they are spent. Only admins and analysts get a session; any
other user is told the console is not for them, and gets nothing. Signing out revokes
the session's token in every process (``LogOut``), then forgets the cookie."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from api.commands.auth import client_address, log_out_command
from api.console.actions.forms import command_context
from api.console.rendering import render
from api.console.session import (
    CONSOLE_ROLES,
    SIGN_IN_PATH,
    CheckedForm,
    CheckedSignInForm,
    ConsoleUser,
    clear_session_cookie,
    clear_sign_in_cookie,
    form_text,
    safe_next_path,
    set_session_cookie,
    set_sign_in_cookie,
    sign_in_form_token,
    sign_in_nonce,
)
from api.deps import RequestId, ServicesDep
from api.schemas import EMAIL_LENGTH_BOUND, PASSWORD_LENGTH_BOUND, holds_nul
from prep_es.services.auth import LoginRateLimited, Unauthenticated

router = APIRouter()

NOT_FOR_THIS_ROLE: Final = (
    "The console is for admins and analysts. Your account is a {role}'s: use the Prep "
    "app or the API."
)


@router.post("/sign-in")
async def sign_in(request: Request, form: CheckedSignInForm, services: ServicesDep) -> Response:
    email = form_text(form, "email").strip()
    password = form_text(form, "password")
    next_path = safe_next_path(form_text(form, "next"))

    def again(status_code: int, error: str, headers: dict[str, str] | None = None) -> Response:
        nonce = sign_in_nonce(request)
        response = render(
            request,
            "sign_in.html",
            user=None,
            status_code=status_code,
            headers=headers,
            sign_in_token=sign_in_form_token(services, nonce),
            next_path=next_path,
            message=None,
            error=error,
            email=email[:EMAIL_LENGTH_BOUND],
        )
        set_sign_in_cookie(response, request, nonce)
        return response

    if not email or not password:
        return again(422, "Enter your email and password.")
    if holds_nul(email) or holds_nul(password):
        return again(422, "An email or password has no NUL characters.")
    if len(email) > EMAIL_LENGTH_BOUND or len(password) > PASSWORD_LENGTH_BOUND:
        return again(422, "That email or password is longer than any we accept.")
    try:
        token = await run_in_threadpool(
            services.login.log_in, email, password, client=client_address(request)
        )
    except LoginRateLimited as limited:
        return again(
            429,
            f"Too many failed sign-ins. Try again in {limited.retry_after_s} s.",
            {"Retry-After": str(limited.retry_after_s)},
        )
    except Unauthenticated as refused:
        message = (
            "This user is deactivated."
            if refused.code == "user_inactive"
            else "Wrong email or password."
        )
        return again(401, message)
    claims = services.tokens.verify(token.access_token)
    if claims.role not in CONSOLE_ROLES:
        return render(
            request,
            "refused.html",
            user=None,
            status_code=403,
            message=NOT_FOR_THIS_ROLE.format(role=claims.role),
        )
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, request, token.access_token, token.expires_in)
    clear_sign_in_cookie(response, request)
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request,
    user: ConsoleUser,
    _: CheckedForm,
    services: ServicesDep,
    request_id: RequestId,
) -> Response:
    await run_in_threadpool(
        services.commands.users.log_out,
        log_out_command(user),
        command_context(user, request_id),
    )
    response = RedirectResponse(f"{SIGN_IN_PATH}?done=signed_out", status_code=303)
    clear_session_cookie(response, request)
    return response
