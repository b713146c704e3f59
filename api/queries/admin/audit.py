"""The audit trail: every event, with who, why and when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import AdminUser, AuditQueriesDep, AuditReadModel
from api.queries.params import (
    ERASED_FIELDS_HELP,
    ERASED_HELP,
    POINT_IN_TIME_HELP,
    PointInTime,
    QueryText,
    query_responses,
)
from queries.audit import AUDIT_LIMIT_MAX, EVENT_TYPE_LENGTH_MAX, AuditEntry, AuditPage
from queries.base import PAGE_SIZE_DEFAULT

router = APIRouter(prefix="/admin", tags=["admin"])


class AuditEntryOut(BaseModel):
    """One event: what happened, to which aggregate, who did it and why."""

    position: int = Field(description="Its event store position.", examples=[1042])
    recorded_at: datetime
    aggregate_type: str = Field(examples=["Booking"])
    aggregate_id: UUID
    aggregate_version: int = Field(examples=[1])
    event_type: str = Field(examples=["Booking.BookingRequested"])
    actor_id: UUID | None = Field(description="Who caused it; null for the system.")
    actor_role: str | None = Field(examples=["customer"])
    request_id: str | None = Field(description="The HTTP request that caused it.")
    correlation_id: str | None = Field(description="The idempotency key, if one was sent.")
    payload: dict[str, Any] = Field(
        description="The event's fields as recorded (secrets redacted; personal fields of "
        "an erased person null)."
    )
    erased: bool = Field(description=ERASED_HELP)
    erased_fields: list[str] = Field(description=ERASED_FIELDS_HELP, examples=[[]])

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(**entry.model_dump())


class AuditPageOut(BaseModel):
    """A keyset page of the audit trail, oldest first."""

    items: list[AuditEntryOut]
    limit: int = Field(examples=[20])
    next_after_position: int | None = Field(
        description="Pass as `after_position` for the next page; null on the last page.",
        examples=[1042],
    )

    @classmethod
    def of(cls, page: AuditPage) -> AuditPageOut:
        return cls(
            items=[AuditEntryOut.of(item) for item in page.items],
            limit=page.limit,
            next_after_position=page.next_after_position,
        )


@router.get(
    "/audit",
    summary="Audit trail",
    description="Every event with who (actor id and role), why (request id, idempotency "
    "key) and when, oldest first, filtered by aggregate, actor, event type (e.g. "
    "`Booking.BookingRequested`) and time (`since` and `until`, both included). Pages "
    "by keyset: pass the last page's `next_after_position` as `after_position`.",
    responses=query_responses(401, 403, 422, 503),
)
def audit_trail(
    admin: AdminUser,
    audit: AuditQueriesDep,
    _: AuditReadModel,
    aggregate_id: Annotated[UUID | None, Query(description="Only this aggregate's.")] = None,
    actor_id: Annotated[UUID | None, Query(description="Only this actor's.")] = None,
    event_type: Annotated[
        QueryText | None,
        Query(
            max_length=EVENT_TYPE_LENGTH_MAX,
            description="Only this event type.",
            examples=["Booking.BookingRequested"],
        ),
    ] = None,
    since: Annotated[PointInTime | None, Query(description=POINT_IN_TIME_HELP)] = None,
    until: Annotated[PointInTime | None, Query(description=POINT_IN_TIME_HELP)] = None,
    after_position: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="Entries after this position.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=AUDIT_LIMIT_MAX, description="Entries per page (1–100).")
    ] = PAGE_SIZE_DEFAULT,
) -> AuditPageOut:
    page = audit.entries(
        admin.viewer,
        aggregate_id=aggregate_id,
        actor_id=actor_id,
        event_type=event_type,
        since=since,
        until=until,
        after_position=after_position,
        limit=limit,
    )
    return AuditPageOut.of(page)
