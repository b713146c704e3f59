"""Moderation pages (admins): kitchens by lifecycle status, the review queue first."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from aggregates.text import REASON_LENGTH_MAX
from api.console.rendering import PageRead, console_read, render
from api.console.session import ConsoleAdmin
from api.deps import KitchenModerationDep
from queries.base import PAGE_SIZE_MAX, PageRequest

router = APIRouter(prefix="/moderation")

KitchenStatusFilter = Literal["pending_review", "published", "rejected", "suspended", "draft"]
QUEUE_PAGE_SIZE: Final = 25


@router.get("/kitchens", response_class=HTMLResponse)
async def kitchen_queue(
    request: Request,
    admin: ConsoleAdmin,
    kitchens: KitchenModerationDep,
    read: Annotated[PageRead, Depends(console_read("kitchens"))],
    status: KitchenStatusFilter = "pending_review",
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> HTMLResponse:
    """Kitchens in ``status``, the longest waiting first; those pending review can be
    approved, or rejected with a reason, from here."""
    page = await run_in_threadpool(
        kitchens.moderation,
        admin.viewer,
        status=status,
        page=PageRequest(limit=min(QUEUE_PAGE_SIZE, PAGE_SIZE_MAX), offset=offset),
    )
    return render(
        request,
        "moderation_kitchens.html",
        user=admin,
        section="moderation",
        read=read,
        page=page,
        status=status,
        reason_length_max=REASON_LENGTH_MAX,
    )
