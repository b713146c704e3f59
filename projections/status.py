"""How each projection is doing: where it is, how far behind the event store, whether it
failed and on what, and how far a rebuild has got. Read by ``prep-es projections
status``; meant for ``GET /admin/projections`` and ``/metrics`` as well."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from prep_es.store.eventstore import PrepApplication
from projections import PROJECTIONS
from projections.base import Projection
from projections.database import ReadDatabase, Sql
from projections.generations import STATE_TABLE, GenerationState, generations

NOT_STARTED = "not_started"
"""The state of a projection no runner has set up yet."""


class ProjectionFailure(BaseModel):
    """The event a generation stopped at; it resumes from there once the cause is fixed."""

    position: int
    topic: str
    error: str


class GenerationProgress(BaseModel):
    """A generation being built from position 0 while the active one serves."""

    generation: int
    version: int
    state: str
    position: int
    lag_events: int
    events_applied: int
    progress: float
    """``position / head``: 1.0 once caught up (it then switches in)."""
    failure: ProjectionFailure | None


class ProjectionStatus(BaseModel):
    """One projection: its active generation (the one queries read) and any building."""

    name: str
    code_version: int
    generation: int | None
    """The active generation; ``None`` before a runner set the projection up."""
    version: int | None
    """The code version that built the active generation."""
    state: str
    """``running``, ``failed``, or ``not_started``."""
    position: int
    head: int
    """The event store's latest position."""
    lag_events: int
    """Events in the store after ``position`` (of any topic)."""
    lag_s: float
    """Seconds since the first event after ``position`` was recorded; 0 when caught up."""
    events_applied: int
    updated_at: datetime | None
    failure: ProjectionFailure | None
    building: list[GenerationProgress]


def _failure(state: GenerationState) -> ProjectionFailure | None:
    if state.failed_position is None:
        return None
    return ProjectionFailure(
        position=state.failed_position,
        topic=state.failed_topic or "",
        error=state.failed_error or "",
    )


def state_table_exists(sql: Sql) -> bool:
    """Whether a runner has set up ``projection_state`` yet."""
    if sql.dialect == "postgresql":
        return sql.scalar("SELECT to_regclass(%s) IS NOT NULL", (STATE_TABLE,)) is True
    count = sql.scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = %s", (STATE_TABLE,)
    )
    return bool(count)


class _RecordedTimes:
    """When the first event after a position was recorded, asked once per position."""

    def __init__(self, app: PrepApplication) -> None:
        self._app = app
        self._times: dict[int, float | None] = {}

    def after(self, position: int) -> float | None:
        if position not in self._times:
            notifications = self._app.recorder.select_notifications(
                start=position, limit=1, inclusive_of_start=False
            )
            if notifications:
                event: Any = self._app.mapper.to_domain_event(notifications[0])
                self._times[position] = event.timestamp.timestamp()
            else:
                self._times[position] = None
        return self._times[position]


def projection_statuses(
    app: PrepApplication,
    database: ReadDatabase,
    projection_classes: Sequence[type[Projection]] = PROJECTIONS,
    *,
    now: float | None = None,
) -> list[ProjectionStatus]:
    """The status of each of ``projection_classes``, in their order. ``now`` (seconds
    since the epoch) defaults to the clock."""
    with database.reading() as sql:
        known = (
            {cls.name: generations(sql, cls.name) for cls in projection_classes}
            if state_table_exists(sql)
            else {}
        )
    head = app.position()  # after reading positions, so no position is past it
    now_s = time.time() if now is None else now
    times = _RecordedTimes(app)
    statuses = []
    for projection_class in projection_classes:
        states = known.get(projection_class.name, [])
        active = next((s for s in states if s.active), None)
        building = [
            GenerationProgress(
                generation=s.generation,
                version=s.version,
                state=s.state,
                position=s.position,
                lag_events=max(0, head - s.position),
                events_applied=s.events_applied,
                progress=1.0 if head == 0 else min(1.0, s.position / head),
                failure=_failure(s),
            )
            for s in states
            if not s.active and s.state != "retired"
        ]
        position = 0 if active is None else active.position
        recorded = times.after(position) if position < head else None
        statuses.append(
            ProjectionStatus(
                name=projection_class.name,
                code_version=projection_class.version,
                generation=None if active is None else active.generation,
                version=None if active is None else active.version,
                state=NOT_STARTED if active is None else active.state,
                position=position,
                head=head,
                lag_events=max(0, head - position),
                lag_s=0.0 if recorded is None else max(0.0, now_s - recorded),
                events_applied=0 if active is None else active.events_applied,
                updated_at=(
                    None if active is None else datetime.fromtimestamp(active.updated_at, UTC)
                ),
                failure=None if active is None else _failure(active),
                building=building,
            )
        )
    return statuses
