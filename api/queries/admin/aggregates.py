"""An aggregate's events and its state at a point, read from the event store itself
(what the aggregate is rebuilt from), not from a projection."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from aggregates.errors import InvalidRequest
from api.deps import AdminUser, EventStoreRead, PageParams, TimeTravelQueriesDep
from api.queries.params import (
    ERASED_FIELDS_HELP,
    ERASED_HELP,
    POINT_IN_TIME_HELP,
    PointInTime,
    query_responses,
)
from prep_es.store.replay import EVENTS_PER_AGGREGATE_MAX
from queries.timetravel import AggregateStateView, StoredEventView

router = APIRouter(prefix="/admin", tags=["admin"])

AggregateId = Annotated[UUID, Path(description="The aggregate's id (a user, kitchen, …).")]


class StoredEventOut(BaseModel):
    """One event as stored."""

    version: int = Field(description="Its place in the aggregate's stream, from 1.")
    type: str = Field(description="The event's topic.", examples=["Booking.BookingRequested"])
    timestamp: datetime
    actor_id: UUID | None
    actor_role: str | None = Field(examples=["customer"])
    request_id: str | None
    correlation_id: str | None
    payload: dict[str, Any] = Field(
        description="The event's fields (secrets redacted; personal fields of an erased "
        "person null)."
    )
    erased: bool = Field(description=ERASED_HELP)
    erased_fields: list[str] = Field(description=ERASED_FIELDS_HELP, examples=[[]])

    @classmethod
    def of(cls, event: StoredEventView) -> StoredEventOut:
        return cls(**event.model_dump())


class AggregateEventsOut(BaseModel):
    aggregate_id: UUID
    items: list[StoredEventOut] = Field(
        description="Events `offset + 1` to `offset + limit` (by version), oldest first."
    )
    total: int = Field(description="How many events (the latest version).", examples=[5])
    limit: int
    offset: int


@router.get(
    "/aggregates/{aggregate_id}/events",
    summary="An aggregate's events",
    description="The raw stream of one aggregate (user, kitchen, booking, account, …) from "
    "the event store: version, type, timestamp, actor, request and correlation ids, "
    "payload (secrets redacted), a page at a time: `offset` skips that many versions. "
    "`X-Prep-Position` is the event store's position.",
    responses=query_responses(401, 403, 404, 422),
)
def aggregate_events(
    aggregate_id: AggregateId,
    admin: AdminUser,
    timetravel: TimeTravelQueriesDep,
    page: PageParams,
    _: EventStoreRead,
) -> AggregateEventsOut:
    events = timetravel.events(admin.viewer, aggregate_id, page)
    return AggregateEventsOut(
        aggregate_id=aggregate_id,
        items=[StoredEventOut.of(event) for event in events.items],
        total=events.total,
        limit=events.limit,
        offset=events.offset,
    )


class AggregateStateOut(BaseModel):
    """An aggregate's state replayed from its events up to ``version``."""

    aggregate_id: UUID
    aggregate_type: str = Field(examples=["Booking"])
    version: int = Field(description="The version the state was rebuilt at.", examples=[2])
    latest_version: int = Field(examples=[4])
    as_of: datetime | None = Field(description="The moment asked for, if any.")
    state: dict[str, Any] = Field(
        description="The aggregate's attributes at that point (secrets redacted; personal "
        "attributes of an erased person null)."
    )
    erased: bool = Field(
        description="Some attribute of `state` reads null because the person it was "
        "about was erased."
    )
    erased_fields: list[str] = Field(
        description="Those attributes (the password hash reads `***` either way and is "
        "never named).",
        examples=[[]],
    )

    @classmethod
    def of(cls, view: AggregateStateView) -> AggregateStateOut:
        return cls(**view.model_dump())


@router.get(
    "/aggregates/{aggregate_id}/state",
    summary="An aggregate's state at a point",
    description="Replays the aggregate's events up to `version`, or up to every event "
    "recorded at or before `as_of`. Give exactly one of them (422 otherwise). 404 for "
    "an unknown aggregate or a moment before it existed; 422 (`version_out_of_range`) "
    "for a version it never reached.",
    responses=query_responses(401, 403, 404, 422),
)
def aggregate_state(
    aggregate_id: AggregateId,
    admin: AdminUser,
    timetravel: TimeTravelQueriesDep,
    _: EventStoreRead,
    version: Annotated[
        int | None,
        Query(ge=1, le=EVENTS_PER_AGGREGATE_MAX, description="Replay up to this version."),
    ] = None,
    as_of: Annotated[
        PointInTime | None,
        Query(description=f"Replay what was recorded by then. {POINT_IN_TIME_HELP}"),
    ] = None,
) -> AggregateStateOut:
    if (version is None) == (as_of is None):
        raise InvalidRequest(
            "give exactly one of version and as_of", code="version_or_as_of_required"
        )
    return AggregateStateOut.of(
        timetravel.state(admin.viewer, aggregate_id, version=version, as_of=as_of)
    )
