"""User actions (admins): deactivate, reactivate, change a role — the command of
``PATCH /api/v1/admin/users/{id}``, with its rules (an admin cannot deactivate or
demote their own account: 403; an erased user is 404). The browser goes back to the
users page it came from, its filters kept, once the users read model shows the change."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse

from api.console.actions.forms import back_to, bounded_text, command_context, done
from api.console.session import CheckedForm, ConsoleAdmin
from api.deps import AuthenticatedUser, RequestId, UserCommandsDep
from api.schemas import ROLE_LENGTH_BOUND
from commands.users import UpdateUser

router = APIRouter(prefix="/users")

USERS_PATH: Final = "/console/users"
USER_FILTERS: Final = ("role", "active", "offset")


async def _update(
    users: UserCommandsDep,
    command: UpdateUser,
    admin: AuthenticatedUser,
    request_id: str,
) -> int:
    executed = await run_in_threadpool(
        users.update_user, command, command_context(admin, request_id)
    )
    return executed.position


@router.post("/{user_id}/deactivate")
async def deactivate_user(
    request: Request,
    user_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    users: UserCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    """Every request with the user's tokens is refused at once."""
    position = await _update(users, UpdateUser(user_id=user_id, active=False), admin, request_id)
    return done(
        request, admin, back_to(USERS_PATH, form, USER_FILTERS), "user_deactivated", position
    )


@router.post("/{user_id}/reactivate")
async def reactivate_user(
    request: Request,
    user_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    users: UserCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    """The user may sign in again (tokens issued before the deactivation stay revoked)."""
    position = await _update(users, UpdateUser(user_id=user_id, active=True), admin, request_id)
    return done(
        request, admin, back_to(USERS_PATH, form, USER_FILTERS), "user_reactivated", position
    )


@router.post("/{user_id}/role")
async def change_role(
    request: Request,
    user_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    users: UserCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    """The user's current tokens stop working: they sign in again in their new role."""
    # Bounded as the API's body bounds it; the command checks it is a role.
    role = bounded_text(form, "role", ROLE_LENGTH_BOUND)
    position = await _update(users, UpdateUser(user_id=user_id, role=role), admin, request_id)
    return done(request, admin, back_to(USERS_PATH, form, USER_FILTERS), "role_changed", position)
