"""User commands over HTTP: an admin changes a user's role or active flag, or erases
them; a user changes their password or profile, or erases themselves. (Registration and
logout are in ``api.commands.auth``.)"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field, StrictBool

from api.commands.execution import execute, execute_without_content
from api.deps import Command, ServicesDep, UserCommandsDep
from api.schemas import (
    EMAIL_LENGTH_BOUND,
    NAME_LENGTH_BOUND,
    PASSWORD_LENGTH_BOUND,
    REASON_LENGTH_BOUND,
    ROLE_LENGTH_BOUND,
    PositionField,
    RequestBody,
    problems,
)
from commands.erasure import EraseMe, EraseUser, ErasureState
from commands.profile import ChangeProfile
from commands.users import ChangePassword, UpdateUser, UserState

router = APIRouter(prefix="/admin/users", tags=["admin"])
me_router = APIRouter(prefix="/users", tags=["users"])


UserId = Annotated[UUID, Path(description="The user's id.")]


class UserOut(BaseModel):
    """A user as the write model has them after the command."""

    id: UUID
    email: str = Field(examples=["ana@example.com"])
    full_name: str = Field(examples=["Ana Lopez"])
    role: str = Field(description="customer, host, admin or analyst", examples=["customer"])
    active: bool
    account_id: UUID = Field(description="The user's account (balance, holds, statement).")
    version: int = Field(description="The user aggregate's version.")
    position: PositionField

    @classmethod
    def of(cls, state: UserState, position: int) -> UserOut:
        return cls(**state.model_dump(), position=position)


class UpdateUserBody(RequestBody):
    role: str | None = Field(
        default=None,
        max_length=ROLE_LENGTH_BOUND,
        description="The new role: customer, host, admin or analyst. The user's current "
        "tokens stop working (they sign in again).",
        examples=["host"],
    )
    active: bool | None = Field(
        default=None,
        description="false deactivates the user: every request with their token is "
        "refused at once; true reactivates (tokens issued before the deactivation stay "
        "revoked: the user signs in again).",
        examples=[False],
    )


@router.patch(
    "/{user_id}",
    summary="Change a user's role or active flag",
    description="Admins only. Fields left out stay as they are. Deactivating a user, or "
    "changing their role, refuses their commands and queries at once (each request "
    "checks the user in the write model). An admin cannot deactivate or demote their own "
    "account (403): another admin can.",
    responses=problems(401, 403, 404, 422),
)
async def update_user(
    user_id: UserId,
    body: UpdateUserBody,
    users: UserCommandsDep,
    context: Command,
    response: Response,
) -> UserOut:
    return await execute(
        users.update_user,
        UpdateUser(user_id=user_id, role=body.role, active=body.active),
        context,
        response,
        UserOut.of,
    )


class ChangePasswordBody(RequestBody):
    current_password: str = Field(max_length=PASSWORD_LENGTH_BOUND)
    new_password: str = Field(
        max_length=PASSWORD_LENGTH_BOUND,
        description="The same rules as at registration.",
        examples=["a new horse battery staple"],
    )


@me_router.post(
    "/me/password",
    status_code=204,
    summary="Change my password",
    description="Needs the current password (a wrong one is 403 `wrong_password`); the "
    "new one follows the registration rules (422). Wrong current passwords are limited "
    "like failed logins (`PREP_ES_LOGIN_FAILURES_MAX` a minute per user): beyond it, 429 "
    "`too_many_password_attempts` with `Retry-After`, and nothing is checked. While "
    "every password-hashing thread stays busy, 503 with `Retry-After`. Every token "
    "issued until now stops working, this one included: sign in again with the new "
    "password (send the `X-Prep-Position` of this answer as `X-Prep-Min-Position` with "
    "the login, so that it checks the new password).",
    responses=problems(401, 403, 422, 429, 503),
)
async def change_password(
    body: ChangePasswordBody, services: ServicesDep, context: Command
) -> Response:
    return await execute_without_content(
        services.user_changes.change_password, ChangePassword(**body.model_dump()), context
    )


class ChangeProfileBody(RequestBody):
    full_name: str | None = Field(
        default=None,
        max_length=NAME_LENGTH_BOUND,
        description="1 to 200 characters, some of them visible.",
        examples=["Ana María López"],
    )
    email: str | None = Field(
        default=None,
        max_length=EMAIL_LENGTH_BOUND,
        description="Checked as at registration; unique whatever its case. Changing it "
        "needs `current_password`.",
        examples=["ana.lopez@example.com"],
    )
    current_password: str | None = Field(
        default=None,
        max_length=PASSWORD_LENGTH_BOUND,
        description="Required to change the email; checked whenever it is sent.",
    )


@me_router.patch(
    "/me",
    summary="Change my profile",
    description="Changes the caller's full name and, with their current password "
    "entered again, their email (fields left out or null stay as they are). The new "
    "email follows the registration rules (422 `invalid_email`) and must be nobody "
    "else's, in any case (409 `email_taken`); the old one is free for anyone at once. An "
    "email change without `current_password` is 422 `current_password_required`; a wrong "
    "one 403 `wrong_password`, limited with the wrong current passwords of password "
    "changes (429 `too_many_password_attempts`). Tokens stay valid: they name the user, "
    "not the email (change the password to end other sessions); sign in with the new "
    "email from now on.",
    responses=problems(401, 403, 409, 422, 429, 503),
)
async def change_profile(
    body: ChangeProfileBody, services: ServicesDep, context: Command, response: Response
) -> UserOut:
    return await execute(
        services.user_changes.change_profile,
        ChangeProfile(**body.model_dump()),
        context,
        response,
        UserOut.of,
    )


class ErasureOut(BaseModel):
    """What an erasure did. The user's email, name and password are unreadable from now
    on, everywhere; their money and bookings stay in the ledger by id."""

    id: UUID = Field(description="The erased user's id.")
    erased_at: datetime
    forced: bool = Field(
        description="Whether an admin forced it past `blockers`, money or bookings still open."
    )
    blockers: list[dict[str, str]] = Field(
        description="What was still open when a forced erasure went past it (as a 409 "
        "`erasure_blocked` names it); empty otherwise."
    )
    kitchens_withdrawn: list[UUID] = Field(
        description="The user's kitchens taken off the market: a published one "
        "suspended, one under review rejected."
    )
    bookings_settled: list[dict[str, str]] = Field(
        description="The bookings a forced erasure cancelled (`cancelled_by_role` "
        "`admin`), the user their customer or their kitchen's host: `id`, `as` "
        "(`customer` or `host`), the status it `was` in, and the money `released` to its "
        "customer (the whole hold: no fee is captured). Empty otherwise."
    )
    position: PositionField

    @classmethod
    def of(cls, state: ErasureState, position: int) -> ErasureOut:
        return cls(**state.model_dump(), position=position)


ERASURE_DESCRIPTION = (
    "Records the erasure, frees the email (anyone may register it again) and destroys "
    "the user's data key: their email, name, password and the notes they wrote can no "
    "longer be read anywhere, and every token of theirs stops working at once. Their "
    "money and bookings stay in the ledger, by id. Refused with 409 `erasure_blocked` "
    "while anything is still open — money on the account (available or held), a "
    "booking pending or confirmed (as its customer or its kitchen's host), a payout, "
    "withdrawal or top-up the provider has not settled — the problem naming each in "
    "`blockers` (`kind`: `balance`, `booking`, `payout`, `withdrawal`, `top_up`; the "
    "first 50, `blockers_total` counting all). The user's kitchens leave the market: "
    "published ones are suspended, those under review rejected. An admin's forced "
    "erasure cancels the user's pending and confirmed bookings, as customer or host, "
    "releasing each hold in full to its customer (`bookings_settled`); money left on "
    "the erased account stays in the ledger under its id, the operator's to refund "
    "through the payment provider before erasing, or to account for."
)


class EraseMeBody(RequestBody):
    password: str = Field(
        max_length=PASSWORD_LENGTH_BOUND, description="The caller's password, entered again."
    )


@me_router.delete(
    "/me",
    summary="Erase me",
    description=f"The caller is forgotten. {ERASURE_DESCRIPTION} A wrong password is 403 "
    "`wrong_password`, limited with the wrong current passwords of password changes "
    "(429 `too_many_password_attempts`). An admin's account is erased by another admin "
    "(403 `admin_self_erasure`).",
    responses=problems(401, 403, 409, 422, 429, 503),
)
async def erase_me(
    body: EraseMeBody, services: ServicesDep, context: Command, response: Response
) -> ErasureOut:
    return await execute(
        services.user_changes.erase_me,
        EraseMe(password=body.password),
        context,
        response,
        ErasureOut.of,
    )


class EraseUserBody(RequestBody):
    reason: str = Field(
        max_length=REASON_LENGTH_BOUND,
        description="Why; 1 to 1000 characters. Kept in the audit trail (it is not the "
        "erased person's data: write nothing personal in it).",
        examples=["Asked to be forgotten by email, ticket 4711"],
    )
    force: StrictBool = Field(
        default=False,
        description="Go past what is still open (see `blockers`): the money and bookings "
        "stay as they are, with nobody to settle them with.",
    )


@router.post(
    "/{user_id}/erase",
    summary="Erase a user",
    description=f"Admins only. {ERASURE_DESCRIPTION} With `force`, the erasure goes past "
    "the blockers (the answer lists them). A user erased already is 404 "
    "`user_not_found`; an admin's own account is erased by another admin (403 "
    "`admin_self_erasure`).",
    responses=problems(401, 403, 404, 409, 422, 503),
)
async def erase_user(
    user_id: UserId,
    body: EraseUserBody,
    services: ServicesDep,
    context: Command,
    response: Response,
) -> ErasureOut:
    return await execute(
        services.user_changes.erase_user,
        EraseUser(user_id=user_id, reason=body.reason, force=body.force),
        context,
        response,
        ErasureOut.of,
    )
