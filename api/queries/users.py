"""The signed-in user's profile."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, ServicesDep, UserQueriesDep, UsersReadModel
from api.schemas import problems
from queries.users import UserProfile

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/me",
    summary="Who am I",
    description="The signed-in user's profile from the users read model, with the role "
    "the request was authorized with (the write model's). Right after "
    "registering, it waits for the users read model to have the registration.",
    responses=problems(401, 404, 503),
)
def me(
    user: CurrentUser, users: UserQueriesDep, services: ServicesDep, _: UsersReadModel
) -> UserProfile:
    return users.me(user.viewer, catch_up=services.catch_up_users)
