"""User actions (admins): deactivate, reactivate, change a role — the command of
``PATCH /api/v1/admin/users/{id}``, with its rules (an admin cannot deactivate or
demote their own account: 403; an erased user is 404). The browser goes back to the
users page it came from, its filters kept, once the users read model shows the change."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from fastapi import APIRouter
from starlette.responses import RedirectResponse

from api.console.actions.forms import AdminActionDep, bounded_text
from api.deps import UserCommandsDep
from api.schemas import ROLE_LENGTH_BOUND
from commands.users import UpdateUser

router = APIRouter(prefix="/users")

USERS_PATH: Final = "/console/users"
USER_FILTERS: Final = ("role", "active", "offset")


@router.post("/{user_id}/deactivate")
async def deactivate_user(
    user_id: UUID, action: AdminActionDep, users: UserCommandsDep
) -> RedirectResponse:
    """Every request with the user's tokens is refused at once."""
    executed = await action.run(users.update_user, UpdateUser(user_id=user_id, active=False))
    return action.done(USERS_PATH, USER_FILTERS, "user_deactivated", executed.position)


@router.post("/{user_id}/reactivate")
async def reactivate_user(
    user_id: UUID, action: AdminActionDep, users: UserCommandsDep
) -> RedirectResponse:
    """The user may sign in again (tokens issued before the deactivation stay revoked)."""
    executed = await action.run(users.update_user, UpdateUser(user_id=user_id, active=True))
    return action.done(USERS_PATH, USER_FILTERS, "user_reactivated", executed.position)


@router.post("/{user_id}/role")
async def change_role(
    user_id: UUID, action: AdminActionDep, users: UserCommandsDep
) -> RedirectResponse:
    """The user's current tokens stop working: they sign in again in their new role."""
    # Bounded as the API's body bounds it; the command checks it is a role.
    role = bounded_text(action.form, "role", ROLE_LENGTH_BOUND)
    executed = await action.run(users.update_user, UpdateUser(user_id=user_id, role=role))
    return action.done(USERS_PATH, USER_FILTERS, "role_changed", executed.position)
