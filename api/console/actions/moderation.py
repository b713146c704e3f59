"""Moderation actions (admins): the API's admin commands, from the console's forms.
Each runs the same command handler with the same rules, so it is refused as the API
would refuse it (a page with the same status and code), and on success the browser
goes to the page that shows the result, at the position the command reached."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from fastapi import APIRouter
from starlette.responses import RedirectResponse

from api.console.actions.forms import AdminActionDep, reason_of
from api.deps import KitchenCommandsDep
from commands.kitchens import CertificateAction, KitchenAction, KitchenActionWithReason

router = APIRouter(prefix="/moderation")

QUEUE_PATH: Final = "/console/moderation/kitchens"
CERTIFICATES_PATH: Final = "/console/moderation/certificates"
KITCHEN_FILTERS: Final = ("status", "changed_since_approval", "offset")
CERTIFICATE_FILTERS: Final = ("status", "offset")


@router.post("/kitchens/{kitchen_id}/approve")
async def approve_kitchen(
    kitchen_id: UUID, action: AdminActionDep, kitchens: KitchenCommandsDep
) -> RedirectResponse:
    """A kitchen pending review is published; a published one edited since its
    approval stays published, its edits accepted."""
    executed = await action.run(kitchens.approve_kitchen, KitchenAction(kitchen_id=kitchen_id))
    return action.done(QUEUE_PATH, KITCHEN_FILTERS, "kitchen_approved", executed.position)


@router.post("/kitchens/{kitchen_id}/reject")
async def reject_kitchen(
    kitchen_id: UUID, action: AdminActionDep, kitchens: KitchenCommandsDep
) -> RedirectResponse:
    command = KitchenActionWithReason(kitchen_id=kitchen_id, reason=reason_of(action.form))
    executed = await action.run(kitchens.reject_kitchen, command)
    return action.done(QUEUE_PATH, KITCHEN_FILTERS, "kitchen_rejected", executed.position)


@router.post("/kitchens/{kitchen_id}/suspend")
async def suspend_kitchen(
    kitchen_id: UUID, action: AdminActionDep, kitchens: KitchenCommandsDep
) -> RedirectResponse:
    command = KitchenActionWithReason(kitchen_id=kitchen_id, reason=reason_of(action.form))
    executed = await action.run(kitchens.suspend_kitchen, command)
    return action.done(QUEUE_PATH, KITCHEN_FILTERS, "kitchen_suspended", executed.position)


@router.post("/kitchens/{kitchen_id}/reinstate")
async def reinstate_kitchen(
    kitchen_id: UUID, action: AdminActionDep, kitchens: KitchenCommandsDep
) -> RedirectResponse:
    """Published again, or, when its address, city or capacity changed since its
    approval, back in the review queue: the notice says which."""
    executed = await action.run(kitchens.reinstate_kitchen, KitchenAction(kitchen_id=kitchen_id))
    outcome = (
        "kitchen_reinstated" if executed.result.status == "published" else "kitchen_sent_to_review"
    )
    return action.done(QUEUE_PATH, KITCHEN_FILTERS, outcome, executed.position)


@router.post("/kitchens/{kitchen_id}/certificates/{certificate_id}/verify")
async def verify_certificate(
    kitchen_id: UUID,
    certificate_id: UUID,
    action: AdminActionDep,
    kitchens: KitchenCommandsDep,
) -> RedirectResponse:
    command = CertificateAction(kitchen_id=kitchen_id, certificate_id=certificate_id)
    executed = await action.run(kitchens.verify_certificate, command)
    return action.done(
        CERTIFICATES_PATH, CERTIFICATE_FILTERS, "certificate_verified", executed.position
    )


@router.post("/kitchens/{kitchen_id}/certificates/{certificate_id}/reject")
async def reject_certificate(
    kitchen_id: UUID,
    certificate_id: UUID,
    action: AdminActionDep,
    kitchens: KitchenCommandsDep,
) -> RedirectResponse:
    command = CertificateAction(
        kitchen_id=kitchen_id, certificate_id=certificate_id, reason=reason_of(action.form)
    )
    executed = await action.run(kitchens.reject_certificate, command)
    return action.done(
        CERTIFICATES_PATH, CERTIFICATE_FILTERS, "certificate_rejected", executed.position
    )
