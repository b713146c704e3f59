"""Who is signed in to the console, and the form tokens that prove a form came from it.

The session is the API's own access token, kept in a cookie (:data:`SESSION_COOKIE`:
``HttpOnly``, ``SameSite=Strict``, ``Secure`` behind https, path ``/console``): it is
checked as a bearer token is (signature, expiry, the user as the write model has them
now), it lasts as long (``PREP_ES_ACCESS_TOKEN_TTL``), and signing out revokes it in
every process as ``POST /auth/logout`` does. Only admins and analysts are let in
(:data:`CONSOLE_ROLES`); analysts see the analytics pages only.

Every form carries a token (:data:`FORM_TOKEN_FIELD`), an HMAC of the session token's
id under a key derived from the signing secret: a page of another site can make the
browser post, but cannot read the token. The sign-in form has no session yet: its token
is bound to a random cookie of its own (:data:`SIGN_IN_COOKIE`) instead. A request a
browser marks as coming from another site (``Sec-Fetch-Site: cross-site``) is refused
whatever it carries.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from hashlib import sha256
from typing import Annotated, Final

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from aggregates.errors import ActorNotAdmitted, PermissionDenied
from api.deps import AuthenticatedUser, ServicesDep, authenticated
from prep_es.services.auth import Unauthenticated
from prep_es.services.container import Services

CONSOLE_PATH: Final = "/console"
SIGN_IN_PATH: Final = f"{CONSOLE_PATH}/sign-in"
HTMX_REQUEST_HEADER: Final = "hx-request"
NEXT_PATH_LENGTH_MAX: Final = 2000
SESSION_COOKIE: Final = "prep_console_session"
SIGN_IN_COOKIE: Final = "prep_console_sign_in"
FORM_TOKEN_FIELD: Final = "form_token"
FORM_TOKEN_PURPOSE: Final = "prep-es console form token"
CONSOLE_ROLES: Final = ("admin", "analyst")
SIGN_IN_NONCE_BYTES: Final = 32
SIGN_IN_COOKIE_MAX_AGE_S: Final = 3600
SIGN_IN_NONCE_LENGTH: Final = len(base64.urlsafe_b64encode(bytes(SIGN_IN_NONCE_BYTES)).rstrip(b"="))
"""Characters of a nonce as ``secrets.token_urlsafe`` writes it: unpadded base64."""
SIGN_IN_NONCE: Final = re.compile(rf"[A-Za-z0-9_-]{{{SIGN_IN_NONCE_LENGTH}}}")


class SignInRequired(Exception):
    """No session, or one that no longer holds (expired, revoked, the user changed):
    the console sends the browser to the sign-in page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FormRefused(Exception):
    """A form posted without its token, with a token of another session, or from
    another site (HTTP 403)."""

    code = "form_token_invalid"
    detail = (
        "This form did not come from your console session (it may have been open "
        "since before you signed in again). Reload the page and try again."
    )


def signature(services: Services, bound_to: str) -> str:
    """An HMAC of ``bound_to`` under the console's key (derived from the signing
    secret), URL-safe."""
    key = services.tokens.derived_key(FORM_TOKEN_PURPOSE)
    digest = hmac.new(key, bound_to.encode(), sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def form_token(services: Services, user: AuthenticatedUser) -> str:
    """The token of every form ``user``'s pages show."""
    return signature(services, f"session:{user.token_id}")


def outcome_proof(
    services: Services, user: AuthenticatedUser, what: str, position: int | None
) -> str:
    """What an action's redirect sends beside ``done=what&position=N``, so that only
    the session that acted is told it did: a link made by someone else says nothing."""
    return signature(services, f"done:{user.token_id}:{what}:{position}")


def sign_in_form_token(services: Services, nonce: str) -> str:
    """The token of the sign-in form, bound to the browser's :data:`SIGN_IN_COOKIE`."""
    return signature(services, f"sign-in:{nonce}")


def sign_in_nonce(request: Request) -> str:
    """The browser's sign-in cookie if it has a sound one (so that two sign-in pages
    open at once both work), else a new one."""
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if SIGN_IN_NONCE.fullmatch(nonce):
        return nonce
    return secrets.token_urlsafe(SIGN_IN_NONCE_BYTES)


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


def _set_cookie(
    response: Response, request: Request, name: str, value: str, max_age_s: int
) -> None:
    """Every console cookie: ``HttpOnly``, ``SameSite=Strict``, path ``/console``, and
    ``Secure`` when the browser reached us over https (directly, or through a trusted
    proxy that said so: the server applies ``PREP_ES_TRUSTED_PROXIES``). A zero
    ``max_age_s`` forgets the cookie."""
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=CONSOLE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def set_session_cookie(response: Response, request: Request, token: str, max_age_s: int) -> None:
    _set_cookie(response, request, SESSION_COOKIE, token, max_age_s)


def set_sign_in_cookie(response: Response, request: Request, nonce: str) -> None:
    _set_cookie(response, request, SIGN_IN_COOKIE, nonce, SIGN_IN_COOKIE_MAX_AGE_S)


def clear_session_cookie(response: Response, request: Request) -> None:
    _set_cookie(response, request, SESSION_COOKIE, "", 0)


def clear_sign_in_cookie(response: Response, request: Request) -> None:
    _set_cookie(response, request, SIGN_IN_COOKIE, "", 0)


SESSION_USER_STATE: Final = "console_user"
"""Where :func:`session_user` leaves the user it admitted, for an error page of the
same request to keep the navigation without checking the session again."""


async def session_user(request: Request, services: ServicesDep) -> AuthenticatedUser:
    """The signed-in admin or analyst; :class:`SignInRequired` without a session that
    holds, :class:`PermissionDenied` for any other role."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("not_signed_in")
    try:
        user = await authenticated(services, token)
    except (Unauthenticated, ActorNotAdmitted) as refused:
        raise SignInRequired(refused.code) from None
    if user.role not in CONSOLE_ROLES:
        raise PermissionDenied("the console is for admins and analysts")
    setattr(request.state, SESSION_USER_STATE, user)
    return user


async def session_user_or_none(request: Request, services: Services) -> AuthenticatedUser | None:
    """The signed-in admin or analyst, or ``None`` (no session that holds)."""
    try:
        return await session_user(request, services)
    except (SignInRequired, PermissionDenied):
        return None


def console_roles(*roles: str) -> Callable[..., Awaitable[AuthenticatedUser]]:
    """A dependency admitting signed-in console users with one of ``roles``."""
    assert roles and set(roles) <= set(CONSOLE_ROLES)

    async def dependency(
        user: Annotated[AuthenticatedUser, Depends(session_user)],
    ) -> AuthenticatedUser:
        if user.role not in roles:
            raise PermissionDenied(f"this page is for the role {' or '.join(roles)}")
        return user

    return dependency


ConsoleUser = Annotated[AuthenticatedUser, Depends(session_user)]
ConsoleAdmin = Annotated[AuthenticatedUser, Depends(console_roles("admin"))]
ConsoleAnalystOrAdmin = Annotated[AuthenticatedUser, Depends(console_roles("analyst", "admin"))]
"""Analytics: analysts and admins, as the API's analytics routes."""


def _check_site(request: Request) -> None:
    if request.headers.get("sec-fetch-site", "same-origin") == "cross-site":
        raise FormRefused


async def checked_form(request: Request, services: ServicesDep, user: ConsoleUser) -> FormData:
    """The posted form of a signed-in user, once its token is checked."""
    _check_site(request)
    form = await request.form()
    sent = form.get(FORM_TOKEN_FIELD)
    expected = form_token(services, user)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise FormRefused
    return form


async def checked_sign_in_form(request: Request, services: ServicesDep) -> FormData:
    """The posted sign-in form, once its token matches the browser's sign-in cookie."""
    _check_site(request)
    form = await request.form()
    nonce = request.cookies.get(SIGN_IN_COOKIE)
    sent = form.get(FORM_TOKEN_FIELD)
    if not nonce or not isinstance(sent, str):
        raise FormRefused
    if not hmac.compare_digest(sent, sign_in_form_token(services, nonce)):
        raise FormRefused
    return form


def form_text(form: FormData, name: str) -> str:
    """A text field of ``form`` ("" when absent, or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


CheckedForm = Annotated[FormData, Depends(checked_form)]
CheckedSignInForm = Annotated[FormData, Depends(checked_sign_in_form)]
