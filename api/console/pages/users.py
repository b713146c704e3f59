"""The users page (admins): every user, erased ones included, as ``GET
/api/v1/admin/users`` lists them (filtered by role and active flag, oldest
registration first), each linked to their history and their account's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from aggregates.account import account_id_for
from aggregates.user import ROLES
from api.console.params import PAGE_SIZE, Offset, OptionalFlag, blank_is_none
from api.console.rendering import PageRead, console_read, render
from api.console.session import ConsoleAdmin
from api.deps import UserQueriesDep
from api.queries.admin.users import Role
from queries.base import PageRequest

router = APIRouter()

OptionalRole = Annotated[Role | None, BeforeValidator(blank_is_none)]
"""A role, or blank or absent for any."""


@router.get("/users", response_class=HTMLResponse)
async def users(
    request: Request,
    admin: ConsoleAdmin,
    user_queries: UserQueriesDep,
    read: Annotated[PageRead, Depends(console_read("users"))],
    role: Annotated[OptionalRole, Query()] = None,
    active: Annotated[OptionalFlag, Query()] = None,
    offset: Offset = 0,
) -> HTMLResponse:
    """Users with ``role`` and ``active`` (either if left blank); each one not erased
    can be deactivated or reactivated and given another role, except the admin's own
    account (the commands refuse it: another admin can)."""
    page = await run_in_threadpool(
        user_queries.list,
        admin.viewer,
        role=role,
        active=active,
        page=PageRequest(limit=PAGE_SIZE, offset=offset),
    )
    return render(
        request,
        "users.html",
        user=admin,
        section="users",
        read=read,
        page=page,
        accounts={listed.id: account_id_for(listed.id) for listed in page.items},
        roles=ROLES,
        role=role,
        active=active,
    )
