"""The projections' progress: how far each read model has got, and why one is behind."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from api.deps import AdminUser, ServicesDep
from api.queries.params import query_responses
from api.schemas import POSITION_HEADER
from projections.status import ProjectionStatus

router = APIRouter(prefix="/admin", tags=["admin"])


class ProjectionFailureOut(BaseModel):
    """The event a projection stopped at; it resumes from there once the cause is fixed."""

    position: int
    topic: str = Field(examples=["Booking.BookingRequested"])
    error: str


class ProjectionRebuildOut(BaseModel):
    """A generation being rebuilt from position 0 while the active one serves."""

    generation: int
    version: int = Field(description="The projection code version it is built with.")
    state: str = Field(examples=["running"])
    position: int
    lag_events: int
    events_applied: int
    progress: float = Field(description="`position / head`, 0 to 1.", examples=[0.42])
    failure: ProjectionFailureOut | None


class ProjectionOut(BaseModel):
    """One projection: where its active generation (the one queries read) is."""

    name: str = Field(examples=["bookings"])
    status: str = Field(
        description="`running`, `failed` (see `failure`) or `not_started`.",
        examples=["running"],
    )
    position: int = Field(description="The last event store position applied.")
    head: int = Field(description="The event store's latest position.")
    lag_events: int = Field(description="Events in the store after `position`.", examples=[0])
    lag_seconds: float = Field(
        description="Seconds since the first event after `position` was recorded; 0 when "
        "caught up.",
        examples=[0.0],
    )
    generation: int | None = Field(
        description="The active generation; null before a runner set the projection up."
    )
    version: int | None = Field(description="The code version that built it.")
    code_version: int = Field(description="The projection's code version now.")
    events_applied: int
    updated_at: datetime | None
    failure: ProjectionFailureOut | None
    rebuilding: list[ProjectionRebuildOut]

    @classmethod
    def of(cls, status: ProjectionStatus) -> ProjectionOut:
        return cls(
            name=status.name,
            status=status.state,
            position=status.position,
            head=status.head,
            lag_events=status.lag_events,
            lag_seconds=round(status.lag_s, 3),
            generation=status.generation,
            version=status.version,
            code_version=status.code_version,
            events_applied=status.events_applied,
            updated_at=status.updated_at,
            failure=None
            if status.failure is None
            else ProjectionFailureOut(**status.failure.model_dump()),
            rebuilding=[
                ProjectionRebuildOut(**building.model_dump()) for building in status.building
            ],
        )


class ProjectionsOut(BaseModel):
    items: list[ProjectionOut]


@router.get(
    "/projections",
    summary="Projections and their lag",
    description="Per projection: the position its read model has reached, the event store "
    "head, the lag in events and in seconds, and its status — with the failing event "
    "if one stopped it, and the progress of any rebuild. `X-Prep-Position` is the "
    "lowest position of them all; this route does not wait for `X-Prep-Min-Position` "
    "(it is how one sees why a read model is behind).",
    responses=query_responses(401, 403, 422),
)
def projections(admin: AdminUser, services: ServicesDep, response: Response) -> ProjectionsOut:
    statuses = services.projection_statuses()
    response.headers[POSITION_HEADER] = str(min((s.position for s in statuses), default=0))
    return ProjectionsOut(items=[ProjectionOut.of(status) for status in statuses])
