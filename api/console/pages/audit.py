"""The audit trail (admins): every event with who, why and when, filtered as
``GET /api/v1/admin/audit`` filters it, by the same query service, a page at a time by
position."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

import aggregates
from aggregates.base import DomainEvent
from aggregates.personal import event_classes
from api.console.params import (
    FORM_TEXT_LENGTH_MAX,
    TIME_HELP,
    FormPosition,
    FormText,
    FormTime,
    FormUuid,
)
from api.console.rendering import PageRead, console_read, render
from api.console.session import ConsoleAdmin
from api.deps import AuditQueriesDep
from queries.audit import AUDIT_LIMIT_MAX, EVENT_TYPE_LENGTH_MAX

router = APIRouter()

AUDIT_PAGE_SIZE_DEFAULT: Final = 20
PAGE_SIZES: Final = (20, 50, 100)
assert max(PAGE_SIZES) <= AUDIT_LIMIT_MAX
assert EVENT_TYPE_LENGTH_MAX <= FORM_TEXT_LENGTH_MAX  # the query refuses a longer one
EVENT_TYPES: Final = tuple(
    sorted(
        cls.TOPIC
        for cls in event_classes(aggregates.AGGREGATE_CLASSES)
        if issubclass(cls, DomainEvent)
    )
)
"""Every event type the domain declares: the form offers them, and takes any other
text too (an event type of an older release is still in the trail)."""


@router.get("/audit", response_class=HTMLResponse)
async def audit_trail(
    request: Request,
    admin: ConsoleAdmin,
    audit: AuditQueriesDep,
    read: Annotated[PageRead, Depends(console_read("audit"))],
    aggregate_id: Annotated[FormUuid, Query()] = None,
    actor_id: Annotated[FormUuid, Query()] = None,
    event_type: Annotated[FormText, Query()] = None,
    since: Annotated[FormTime, Query()] = None,
    until: Annotated[FormTime, Query()] = None,
    after_position: Annotated[FormPosition, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=AUDIT_LIMIT_MAX)] = AUDIT_PAGE_SIZE_DEFAULT,
) -> HTMLResponse:
    """Entries matching every filter given, oldest first, ``limit`` at a time after
    ``after_position``."""
    page = await run_in_threadpool(
        audit.entries,
        admin.viewer,
        aggregate_id=aggregate_id,
        actor_id=actor_id,
        event_type=event_type,
        since=since,
        until=until,
        after_position=after_position,
        limit=limit,
    )
    return render(
        request,
        "audit.html",
        user=admin,
        section="audit",
        read=read,
        page=page,
        filters={
            "aggregate_id": "" if aggregate_id is None else str(aggregate_id),
            "actor_id": "" if actor_id is None else str(actor_id),
            "event_type": event_type or "",
            "since": request.query_params.get("since", "").strip(),
            "until": request.query_params.get("until", "").strip(),
        },
        after_position=after_position,
        limit=limit,
        page_sizes=sorted({*PAGE_SIZES, limit}),
        event_types=EVENT_TYPES,
        event_type_length_max=EVENT_TYPE_LENGTH_MAX,
        time_help=TIME_HELP,
    )
