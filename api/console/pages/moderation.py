"""Moderation pages (admins): kitchens by lifecycle status (the review queue first),
certificates by review status (those pending first), and verified certificates about
to expire with the kitchens they keep bookable. Each reads the query service of the
matching ``/api/v1/admin`` route, with the same filters and bounds."""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from aggregates.text import REASON_LENGTH_MAX
from api.console.params import PAGE_SIZE, Offset, OptionalFlag
from api.console.rendering import PageRead, console_read, render
from api.console.session import ConsoleAdmin
from api.deps import ComplianceQueriesDep, KitchenModerationDep, TodayUtc
from api.queries.admin.certificates import CertificateStatus
from api.queries.kitchens.schemas import KitchenStatus
from api.schemas import kitchen_fields_out
from queries.base import PageRequest
from queries.compliance import WITHIN_DAYS_DEFAULT, WITHIN_DAYS_MAX, WITHIN_DAYS_MIN

router = APIRouter(prefix="/moderation")

CertificateStatusFilter = CertificateStatus | Literal["all"]
KITCHEN_STATUS_WORDS: Final[dict[KitchenStatus, str]] = {
    "pending_review": "Waiting for review",
    "published": "Published",
    "rejected": "Rejected",
    "suspended": "Suspended",
    "draft": "Draft",
}
"""The status filter's choices, in the order the form offers them."""
CERTIFICATE_STATUS_WORDS: Final[dict[CertificateStatusFilter, str]] = {
    "pending": "Waiting for review",
    "verified": "Verified",
    "rejected": "Rejected",
    "expired": "Expired",
    "all": "Any status",
}
assert set(KITCHEN_STATUS_WORDS) == set(get_args(KitchenStatus))
assert set(CERTIFICATE_STATUS_WORDS) == {*get_args(CertificateStatus), "all"}


@router.get("/kitchens", response_class=HTMLResponse)
async def kitchen_queue(
    request: Request,
    admin: ConsoleAdmin,
    kitchens: KitchenModerationDep,
    read: Annotated[PageRead, Depends(console_read("kitchens"))],
    status: KitchenStatus = "pending_review",
    changed_since_approval: Annotated[OptionalFlag, Query()] = None,
    offset: Offset = 0,
) -> HTMLResponse:
    """Kitchens in ``status``, the longest in it first; ``changed_since_approval``, as
    the API's filter, keeps those edited (or not) since their last approval. Those
    pending review can be approved, or rejected with a reason; published ones edited
    since their approval approved (the edits accepted), any published one suspended
    with a reason, a suspended one reinstated."""
    page = await run_in_threadpool(
        kitchens.moderation,
        admin.viewer,
        status=status,
        changed_since_approval=changed_since_approval,
        page=PageRequest(limit=PAGE_SIZE, offset=offset),
    )
    return render(
        request,
        "moderation_kitchens.html",
        user=admin,
        section="moderation",
        read=read,
        page=page,
        status=status,
        status_words=KITCHEN_STATUS_WORDS,
        changed_since_approval=changed_since_approval,
        field_names=kitchen_fields_out,
        reason_length_max=REASON_LENGTH_MAX,
    )


@router.get("/certificates", response_class=HTMLResponse)
async def certificates(
    request: Request,
    admin: ConsoleAdmin,
    compliance: ComplianceQueriesDep,
    read: Annotated[PageRead, Depends(console_read("compliance"))],
    status: CertificateStatusFilter = "pending",
    offset: Offset = 0,
) -> HTMLResponse:
    """Certificates in ``status`` (``all``: any), in the order they were attached;
    pending ones can be verified, or rejected with a reason."""
    page = await run_in_threadpool(
        compliance.certificates,
        admin.viewer,
        status=None if status == "all" else status,
        page=PageRequest(limit=PAGE_SIZE, offset=offset),
    )
    return render(
        request,
        "moderation_certificates.html",
        user=admin,
        section="moderation",
        read=read,
        page=page,
        status=status,
        status_words=CERTIFICATE_STATUS_WORDS,
        reason_length_max=REASON_LENGTH_MAX,
    )


@router.get("/expiring", response_class=HTMLResponse)
async def expiring_certificates(
    request: Request,
    admin: ConsoleAdmin,
    compliance: ComplianceQueriesDep,
    today: TodayUtc,
    read: Annotated[PageRead, Depends(console_read("compliance"))],
    within_days: Annotated[
        int, Query(ge=WITHIN_DAYS_MIN, le=WITHIN_DAYS_MAX)
    ] = WITHIN_DAYS_DEFAULT,
    offset: Offset = 0,
) -> HTMLResponse:
    """Verified certificates whose last valid day is at most ``within_days`` from
    today (UTC), soonest first, each with the kitchen that stops being bookable when
    it lapses."""
    page = await run_in_threadpool(
        compliance.expiring,
        admin.viewer,
        today=today,
        within_days=within_days,
        page=PageRequest(limit=PAGE_SIZE, offset=offset),
    )
    return render(
        request,
        "moderation_expiring.html",
        user=admin,
        section="moderation",
        read=read,
        page=page,
        today=today,
        within_days=within_days,
        within_days_min=WITHIN_DAYS_MIN,
        within_days_max=WITHIN_DAYS_MAX,
    )
