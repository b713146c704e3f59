"""Admins list users."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import AdminUser, PageParams, UserQueriesDep, UsersReadModel
from api.queries.params import query_responses
from api.schemas import PageOut
from queries.users import UserProfile

router = APIRouter(prefix="/admin", tags=["admin"])

Role = Literal["customer", "host", "admin", "analyst"]


class UserOut(BaseModel):
    """A user as the users read model has them."""

    id: UUID
    email: str = Field(examples=["ana@example.com"])
    full_name: str = Field(examples=["Ana Lopez"])
    role: Role = Field(examples=["customer"])
    active: bool = Field(description="false: deactivated, every request refused.")
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: UserProfile) -> UserOut:
        return cls(**user.model_dump())


class UserPage(PageOut[UserOut]):
    pass


@router.get(
    "/users",
    summary="List users",
    description="Every user, oldest registration first; filter by `role` and `active`.",
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
