"""Moderation actions (admins): the API's admin commands, from the console's forms.
Each runs the same command handler with the same rules, so it is refused as the API
would refuse it (a page with the same status and code), and on success the browser
goes to the page that shows the result, at the position the command reached."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse

from aggregates.errors import InvalidRequest
from api.console.session import CheckedForm, ConsoleAdmin, form_text
from api.deps import KitchenCommandsDep, RequestId
from api.schemas import REASON_LENGTH_BOUND
from commands.context import CommandContext
from commands.kitchens import KitchenAction, KitchenActionWithReason

router = APIRouter(prefix="/moderation")

QUEUE_PATH: Final = "/console/moderation/kitchens"


def reason_of(form: FormData) -> str:
    """The form's ``reason``: 1 to :data:`REASON_LENGTH_BOUND` characters (the command
    checks the rest, as for the API)."""
    reason = form_text(form, "reason")
    if len(reason) > REASON_LENGTH_BOUND:
        msg = f"reason is at most {REASON_LENGTH_BOUND} characters"
        raise InvalidRequest(msg, code="reason_too_long", field="reason")
    return reason


def done(path: str, what: str, position: int) -> RedirectResponse:
    """To ``path``, which shows what was done once its read models reach ``position``."""
    separator = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{separator}done={what}&position={position}", status_code=303)


@router.post("/kitchens/{kitchen_id}/approve")
async def approve_kitchen(
    kitchen_id: UUID,
    admin: ConsoleAdmin,
    _: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    executed = await run_in_threadpool(
        kitchens.approve_kitchen,
        KitchenAction(kitchen_id=kitchen_id),
        CommandContext(actor=admin.actor, request_id=request_id),
    )
    return done(QUEUE_PATH, "kitchen_approved", executed.position)


@router.post("/kitchens/{kitchen_id}/reject")
async def reject_kitchen(
    kitchen_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    executed = await run_in_threadpool(
        kitchens.reject_kitchen,
        KitchenActionWithReason(kitchen_id=kitchen_id, reason=reason_of(form)),
        CommandContext(actor=admin.actor, request_id=request_id),
    )
    return done(QUEUE_PATH, "kitchen_rejected", executed.position)
