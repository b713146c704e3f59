"""Moderation actions (admins): the API's admin commands, from the console's forms.
Each runs the same command handler with the same rules, so it is refused as the API
would refuse it (a page with the same status and code), and on success the browser
goes to the page that shows the result, at the position the command reached."""

from __future__ import annotations

from typing import Final
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse

from api.console.actions.forms import back_to, command_context, done, reason_of
from api.console.session import CheckedForm, ConsoleAdmin
from api.deps import KitchenCommandsDep, RequestId
from commands.kitchens import CertificateAction, KitchenAction, KitchenActionWithReason

router = APIRouter(prefix="/moderation")

QUEUE_PATH: Final = "/console/moderation/kitchens"
CERTIFICATES_PATH: Final = "/console/moderation/certificates"
KITCHEN_FILTERS: Final = ("status", "changed_since_approval", "offset")
CERTIFICATE_FILTERS: Final = ("status", "offset")


@router.post("/kitchens/{kitchen_id}/approve")
async def approve_kitchen(
    request: Request,
    kitchen_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    """A kitchen pending review is published; a published one edited since its
    approval stays published, its edits accepted."""
    executed = await run_in_threadpool(
        kitchens.approve_kitchen,
        KitchenAction(kitchen_id=kitchen_id),
        command_context(admin, request_id),
    )
    return done(
        request,
        admin,
        back_to(QUEUE_PATH, form, KITCHEN_FILTERS),
        "kitchen_approved",
        executed.position,
    )


@router.post("/kitchens/{kitchen_id}/reject")
async def reject_kitchen(
    request: Request,
    kitchen_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    executed = await run_in_threadpool(
        kitchens.reject_kitchen,
        KitchenActionWithReason(kitchen_id=kitchen_id, reason=reason_of(form)),
        command_context(admin, request_id),
    )
    return done(
        request,
        admin,
        back_to(QUEUE_PATH, form, KITCHEN_FILTERS),
        "kitchen_rejected",
        executed.position,
    )


@router.post("/kitchens/{kitchen_id}/suspend")
async def suspend_kitchen(
    request: Request,
    kitchen_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    executed = await run_in_threadpool(
        kitchens.suspend_kitchen,
        KitchenActionWithReason(kitchen_id=kitchen_id, reason=reason_of(form)),
        command_context(admin, request_id),
    )
    return done(
        request,
        admin,
        back_to(QUEUE_PATH, form, KITCHEN_FILTERS),
        "kitchen_suspended",
        executed.position,
    )


@router.post("/kitchens/{kitchen_id}/reinstate")
async def reinstate_kitchen(
    request: Request,
    kitchen_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    """Published again, or, when its address, city or capacity changed since its
    approval, back in the review queue: the notice says which."""
    executed = await run_in_threadpool(
        kitchens.reinstate_kitchen,
        KitchenAction(kitchen_id=kitchen_id),
        command_context(admin, request_id),
    )
    outcome = (
        "kitchen_reinstated" if executed.result.status == "published" else "kitchen_sent_to_review"
    )
    return done(
        request, admin, back_to(QUEUE_PATH, form, KITCHEN_FILTERS), outcome, executed.position
    )


@router.post("/kitchens/{kitchen_id}/certificates/{certificate_id}/verify")
async def verify_certificate(
    request: Request,
    kitchen_id: UUID,
    certificate_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    executed = await run_in_threadpool(
        kitchens.verify_certificate,
        CertificateAction(kitchen_id=kitchen_id, certificate_id=certificate_id),
        command_context(admin, request_id),
    )
    return done(
        request,
        admin,
        back_to(CERTIFICATES_PATH, form, CERTIFICATE_FILTERS),
        "certificate_verified",
        executed.position,
    )


@router.post("/kitchens/{kitchen_id}/certificates/{certificate_id}/reject")
async def reject_certificate(
    request: Request,
    kitchen_id: UUID,
    certificate_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    executed = await run_in_threadpool(
        kitchens.reject_certificate,
        CertificateAction(
            kitchen_id=kitchen_id, certificate_id=certificate_id, reason=reason_of(form)
        ),
        command_context(admin, request_id),
    )
    return done(
        request,
        admin,
        back_to(CERTIFICATES_PATH, form, CERTIFICATE_FILTERS),
        "certificate_rejected",
        executed.position,
    )
