"""User commands over HTTP: an admin changes a user's role or active flag; a user
changes their password. (Registration and logout are in ``api.commands.auth``.)"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from api.commands.execution import execute, execute_without_content
from api.deps import Command, ServicesDep, UserCommandsDep
from api.schemas import PositionField, RequestBody, problems
from commands.users import ChangePassword, UpdateUser, UserState

router = APIRouter(prefix="/admin/users", tags=["admin"])
me_router = APIRouter(prefix="/users", tags=["users"])

PASSWORD_LENGTH_BOUND = 4096

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
        max_length=100,
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
        services.password_change.change_password, ChangePassword(**body.model_dump()), context
    )
