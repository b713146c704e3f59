"""Admins list users."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aggregates.user import ROLES
from api.deps import AdminUser, PageParams, UserQueriesDep, UsersReadModel
from api.queries.params import query_responses
from api.schemas import PageOut
from queries.base import ERASED_USER_NAME
from queries.users import ListedUser

router = APIRouter(prefix="/admin", tags=["admin"])

Role = Literal["customer", "host", "admin", "analyst"]
assert get_args(Role) == ROLES, "a role the domain knows is one the API lists"


class UserOut(BaseModel):
    """A user as the users read model has them."""

    id: UUID
    email: str | None = Field(
        examples=["ana@example.com"], description="null once the user was erased."
    )
    full_name: str = Field(
        examples=["Ana Lopez"], description=f"`{ERASED_USER_NAME}` once the user was erased."
    )
    role: Role = Field(examples=["customer"])
    active: bool = Field(description="false: deactivated (or erased), every request refused.")
    erased: bool = Field(
        description="true: the user was erased; nothing personal about them is kept."
    )
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: ListedUser) -> UserOut:
        return cls(**user.model_dump())


class UserPage(PageOut[UserOut]):
    pass


@router.get(
    "/users",
    summary="List users",
    description="Every user, erased ones included, oldest registration first; filter by "
    "`role` and `active`.",
    responses=query_responses(401, 403, 422, 503),
)
def list_users(
    admin: AdminUser,
    users: UserQueriesDep,
    _: UsersReadModel,
    page: PageParams,
    role: Annotated[Role | None, Query(description="Only this role.")] = None,
    active: Annotated[bool | None, Query(description="Only active (or deactivated) users.")] = None,
) -> UserPage:
    return UserPage.of(users.list(admin.viewer, role=role, active=active, page=page), UserOut.of)
