"""User commands over HTTP: an admin changes a user's role or active flag. (Registration
is in ``api.commands.auth``.)"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import Command, UserCommandsDep
from api.schemas import PositionField, RequestBody, problems, record_position
from commands.users import UpdateUser, UserState

router = APIRouter(prefix="/admin/users", tags=["admin"])

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
        "refused at once; true reactivates.",
        examples=[False],
    )


@router.patch(
    "/{user_id}",
    summary="Change a user's role or active flag",
    description="Admins only. Fields left out stay as they are. Deactivating a user "
    "refuses their commands at once (each checks the user in the write model) and their "
    "queries once the users read model has the change (send `X-Prep-Min-Position` to be "
    "sure). An admin cannot deactivate or demote their own account (403): another admin "
    "can.",
    responses=problems(401, 403, 404, 422),
)
async def update_user(
    user_id: UserId,
    body: UpdateUserBody,
    users: UserCommandsDep,
    context: Command,
    response: Response,
) -> UserOut:
    executed = await run_in_threadpool(
        users.update_user, UpdateUser(user_id=user_id, role=body.role, active=body.active), context
    )
    return UserOut.of(executed.result, record_position(response, executed.position))
