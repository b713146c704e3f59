"""Operations actions (admins): rebuild a projection, as ``POST
/api/v1/admin/projections/{name}/rebuild`` does. A rebuild is no event: the browser
goes back to the projections page, where the new generation's progress shows."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse

from api.commands.admin import ProjectionName
from api.console.actions.forms import AdminActionDep
from api.console.pages.operations import OPERATIONS_PATH
from api.deps import ServicesDep

router = APIRouter(prefix="/operations")


@router.post("/projections/{name}/rebuild")
async def rebuild_projection(
    name: ProjectionName, action: AdminActionDep, services: ServicesDep
) -> RedirectResponse:
    """Start building a new generation of projection ``name`` from position 0 (asked
    again while one builds, nothing new starts); an unknown name is a 404 page."""
    await run_in_threadpool(services.request_rebuild, name)
    return action.done(OPERATIONS_PATH, (), "rebuild_started", None)
