"""Moderation actions (admins): the API's admin commands, from the console's forms.
Each runs the same command handler with the same rules, so it is refused as the API
would refuse it (a page with the same status and code), and on success the browser
goes to the page that shows the result, at the position the command reached."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final
from urllib.parse import parse_qsl, urlencode
from uuid import UUID

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse

from aggregates.errors import InvalidRequest
from api.console.session import CheckedForm, ConsoleAdmin, form_text
from api.deps import AuthenticatedUser, KitchenCommandsDep, RequestId
from api.schemas import REASON_LENGTH_BOUND
from commands.context import CommandContext
from commands.kitchens import CertificateAction, KitchenAction, KitchenActionWithReason

router = APIRouter(prefix="/moderation")

QUEUE_PATH: Final = "/console/moderation/kitchens"
CERTIFICATES_PATH: Final = "/console/moderation/certificates"
KITCHEN_FILTERS: Final = ("status", "changed_since_approval", "offset")
CERTIFICATE_FILTERS: Final = ("status", "offset")
RETURN_QUERY_FIELD: Final = "back"
RETURN_QUERY_LENGTH_MAX: Final = 1000


def bounded_text(form: FormData, name: str, length_max: int) -> str:
    """The form's text field ``name``: at most ``length_max`` characters and no NUL
    (which PostgreSQL text cannot store: recorded in an event, it would stop the
    projections copying it), as the API's request bodies are; the command checks the
    rest."""
    text = form_text(form, name)
    if len(text) > length_max:
        msg = f"{name} is at most {length_max} characters"
        raise InvalidRequest(msg, code=f"{name}_too_long", field=name)
    if "\x00" in text:
        msg = f"{name} must not contain NUL characters"
        raise InvalidRequest(msg, code=f"invalid_{name}", field=name)
    return text


def reason_of(form: FormData) -> str:
    """The form's ``reason``: at most :data:`REASON_LENGTH_BOUND` characters (the
    command checks the rest, as for the API)."""
    return bounded_text(form, "reason", REASON_LENGTH_BOUND)


def back_to(path: str, form: FormData, filters: Collection[str]) -> str:
    """``path`` with the filters the form's page was showing (its hidden
    :data:`RETURN_QUERY_FIELD`), so that the browser comes back to the same list. Only
    the names in ``filters`` are kept, each once; the page checks their values as it
    checks any request's."""
    query = form_text(form, RETURN_QUERY_FIELD)
    if not query or len(query) > RETURN_QUERY_LENGTH_MAX:
        return path
    kept: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in filters:
            kept[name] = value
    return f"{path}?{urlencode(kept)}" if kept else path


def done(path: str, what: str, position: int) -> RedirectResponse:
    """To ``path``, which shows what was done once its read models reach ``position``."""
    separator = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{separator}done={what}&position={position}", status_code=303)


def admin_context(admin: AuthenticatedUser, request_id: str) -> CommandContext:
    """Who runs the command, for which request. No idempotency key: each form acts on
    the aggregate as it is, so one posted twice is refused (approving a published
    kitchen: 409) or changes nothing (deactivating a deactivated user) the second time."""
    return CommandContext(actor=admin.actor, request_id=request_id)


@router.post("/kitchens/{kitchen_id}/approve")
async def approve_kitchen(
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
        admin_context(admin, request_id),
    )
    return done(back_to(QUEUE_PATH, form, KITCHEN_FILTERS), "kitchen_approved", executed.position)


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
        admin_context(admin, request_id),
    )
    return done(back_to(QUEUE_PATH, form, KITCHEN_FILTERS), "kitchen_rejected", executed.position)


@router.post("/kitchens/{kitchen_id}/suspend")
async def suspend_kitchen(
    kitchen_id: UUID,
    admin: ConsoleAdmin,
    form: CheckedForm,
    kitchens: KitchenCommandsDep,
    request_id: RequestId,
) -> RedirectResponse:
    executed = await run_in_threadpool(
        kitchens.suspend_kitchen,
        KitchenActionWithReason(kitchen_id=kitchen_id, reason=reason_of(form)),
        admin_context(admin, request_id),
    )
    return done(back_to(QUEUE_PATH, form, KITCHEN_FILTERS), "kitchen_suspended", executed.position)


@router.post("/kitchens/{kitchen_id}/reinstate")
async def reinstate_kitchen(
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
        admin_context(admin, request_id),
    )
    outcome = (
        "kitchen_reinstated" if executed.result.status == "published" else "kitchen_sent_to_review"
    )
    return done(back_to(QUEUE_PATH, form, KITCHEN_FILTERS), outcome, executed.position)


@router.post("/kitchens/{kitchen_id}/certificates/{certificate_id}/verify")
async def verify_certificate(
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
        admin_context(admin, request_id),
    )
    return done(
        back_to(CERTIFICATES_PATH, form, CERTIFICATE_FILTERS),
        "certificate_verified",
        executed.position,
    )


@router.post("/kitchens/{kitchen_id}/certificates/{certificate_id}/reject")
async def reject_certificate(
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
        admin_context(admin, request_id),
    )
    return done(
        back_to(CERTIFICATES_PATH, form, CERTIFICATE_FILTERS),
        "certificate_rejected",
        executed.position,
    )
