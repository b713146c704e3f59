"""Registration, login and logout. Registration and login are public, so both are rate
limited per client address (``PREP_ES_REGISTRATIONS_PER_CLIENT_MAX``,
``PREP_ES_LOGIN_FAILURES_PER_CLIENT_MAX``), and a login also per email from that address
(``PREP_ES_LOGIN_FAILURES_MAX``): 429 with ``Retry-After``. The client address is the
connection's peer, or what a trusted proxy forwarded (``PREP_ES_TRUSTED_PROXIES``, applied
by the server). Logout revokes the token it is sent with."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from api.commands.execution import execute, execute_without_content
from api.commands.users import UserOut
from api.deps import (
    AnonymousCommand,
    AuthenticatedUser,
    Command,
    CurrentUser,
    ServicesDep,
    UserCommandsDep,
    UsersReadModel,
)
from api.schemas import (
    EMAIL_LENGTH_BOUND,
    NAME_LENGTH_BOUND,
    PASSWORD_LENGTH_BOUND,
    RequestBody,
    problems,
)
from commands.users import LogOut, RegisterUser
from prep_es.services.auth import AccessToken

router = APIRouter(prefix="/auth", tags=["auth"])


def client_address(request: Request) -> str:
    """The connection's peer: the server has already replaced it with the forwarded
    address when the peer is a trusted proxy."""
    return request.client.host if request.client is not None else "unknown"


def log_out_command(user: AuthenticatedUser) -> LogOut:
    """Revoke the token ``user`` was authenticated with (the API's bearer token, or the
    console's session)."""
    return LogOut(
        token_id=user.token_id,
        issued_at_us=user.token_issued_at_us,
        expires_at_s=user.token_expires_at_s,
    )


class RegisterBody(RequestBody):
    email: str = Field(
        max_length=EMAIL_LENGTH_BOUND,
        description="A real email address (checked by syntax, not by sending mail); "
        "unique, case-insensitive, and compared after NFKC normalization (fullwidth "
        "look-alikes are the same email).",
        examples=["ana@example.com"],
    )
    password: str = Field(
        max_length=PASSWORD_LENGTH_BOUND,
        description="At least 12 characters (whitespace at either end does not count), "
        "not a commonly used password (`password_too_common`), and not a repetition or "
        "a run of characters such as `123456789012` (`password_too_predictable`).",
        examples=["correct horse battery staple"],
    )
    full_name: str = Field(max_length=NAME_LENGTH_BOUND, examples=["Ana Lopez"])
    role: Literal["customer", "host"] = Field(
        description="customer books kitchens; host lists them.", examples=["customer"]
    )


class LoginBody(RequestBody):
    email: str = Field(max_length=EMAIL_LENGTH_BOUND, examples=["ana@example.com"])
    password: str = Field(
        max_length=PASSWORD_LENGTH_BOUND, examples=["correct horse battery staple"]
    )


@router.post(
    "/register",
    status_code=201,
    summary="Register a customer or host",
    description="Creates the user and their account. Admins and analysts are created by "
    "an operator (`prep-es users create`). The user can log in at once: a login for an "
    "email the users read model does not know yet waits for it to catch up. Too many "
    "registrations in a minute from one client address: 429 with `Retry-After`.",
    responses=problems(409, 422, 429, 503),
)
async def register(
    body: RegisterBody,
    users: UserCommandsDep,
    services: ServicesDep,
    context: AnonymousCommand,
    request: Request,
    response: Response,
) -> UserOut:
    await run_in_threadpool(services.registration_limit.admit, client_address(request))
    return await execute(
        users.register_user, RegisterUser(**body.model_dump()), context, response, UserOut.of
    )


@router.post(
    "/login",
    summary="Log in",
    description="Exchanges an email and password for a bearer access token (a JWT valid "
    "for `expires_in` seconds). Wrong credentials are 401 (`invalid_credentials`); after "
    "too many failures in a minute for one email from one client address, or for any "
    "email from one client address, 429 with `Retry-After`; while every password-hashing "
    "thread stays busy, 503 with `Retry-After`.",
    responses=problems(401, 422, 429, 503),
)
async def log_in(
    body: LoginBody,
    services: ServicesDep,
    request: Request,
    response: Response,
    _: UsersReadModel,
) -> AccessToken:
    token = await run_in_threadpool(
        services.login.log_in, body.email, body.password, client=client_address(request)
    )
    response.headers["Cache-Control"] = "no-store"
    return token


@router.post(
    "/logout",
    status_code=204,
    summary="Log out",
    description="Revokes the access token this request is sent with, in every API "
    "process: from now on it is refused (401 `token_revoked`). The user's other tokens "
    "keep working.",
    responses=problems(401),
)
async def log_out(user: CurrentUser, users: UserCommandsDep, context: Command) -> Response:
    return await execute_without_content(users.log_out, log_out_command(user), context)
