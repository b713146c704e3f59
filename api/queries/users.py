"""The signed-in user's profile."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, UserQueriesDep, UsersReadModel
from api.schemas import problems
from queries.users import UserProfile

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/me",
    summary="Who am I",
    description="The signed-in user's profile from the users read model.",
    responses=problems(401, 404, 503),
)
def me(user: CurrentUser, users: UserQueriesDep, _: UsersReadModel) -> UserProfile:
    return users.me(user.viewer)
