"""The audit trail for admins: who did what, why and when, oldest first.

Reads the ``audit`` projection (one row per event, secrets already redacted by
:func:`projections.audit.audit_payload`). Pages are keyset pages: ask for the entries
after a position; a page says where the next one starts (``next_after_position``), or
``None`` when there is nothing after it. Entries never change and positions only
grow, so paging neither skips nor repeats an entry, whatever is appended meanwhile.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
from pydantic import BaseModel

from aggregates.errors import InvalidRequest, PermissionDenied
from projections.audit import AuditProjection
from projections.database import ReadDatabase, uuid_from_row, uuid_parameter
from queries.base import Viewer

AUDIT_LIMIT_DEFAULT: Final = 100
AUDIT_LIMIT_MAX: Final = 100
EVENT_TYPE_LENGTH_MAX: Final = 200

ENTRIES = AuditProjection.view("entries")


class AuditEntry(BaseModel):
    position: int
    recorded_at: datetime
    aggregate_type: str
    aggregate_id: UUID
    aggregate_version: int
    event_type: str
    actor_id: UUID | None
    actor_role: str | None
    request_id: str | None
    correlation_id: str | None
    payload: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    limit: int
    next_after_position: int | None
    """Pass as ``after_position`` for the next page; ``None`` on the last page."""


class AuditQueries:
    def __init__(self, database: ReadDatabase) -> None:
        self._database = database

    def _time(self, value: datetime) -> datetime | str:
        """As the projection stores it: on SQLite fixed-width UTC text, so text order is
        time order."""
        utc = value.astimezone(UTC)
        if self._database.dialect == "postgresql":
            return utc
        return utc.isoformat(timespec="microseconds")

    def entries(
        self,
        viewer: Viewer,
        aggregate_id: UUID | None = None,
        actor_id: UUID | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_position: int | None = None,
        limit: int = AUDIT_LIMIT_DEFAULT,
    ) -> AuditPage:
        """Admins only. Entries matching every filter given, oldest first: of one
        aggregate, by one actor, of one event type (its topic, e.g.
        ``Booking.BookingRequested``), recorded from ``since`` through ``until`` (both
        included), after ``after_position``; at most ``limit`` (1–100)."""
        if not viewer.is_admin:
            raise PermissionDenied("the audit trail is for admins")
        if not 1 <= limit <= AUDIT_LIMIT_MAX:
            raise InvalidRequest(f"limit is between 1 and {AUDIT_LIMIT_MAX}", code="invalid_limit")
        if after_position is not None and after_position < 0:
            raise InvalidRequest("after_position is at least 0", code="invalid_after_position")
        for moment in (since, until):
            if moment is not None and moment.utcoffset() is None:
                raise InvalidRequest("a time needs a UTC offset", code="naive_datetime")
        if since is not None and until is not None and since > until:
            raise InvalidRequest("since must not be after until", code="invalid_range")
        if event_type is not None and len(event_type) > EVENT_TYPE_LENGTH_MAX:
            raise InvalidRequest("event_type is too long", code="invalid_event_type")

        conditions = ["position > %s"]
        params: list[Any] = [after_position or 0]
        if aggregate_id is not None:
            conditions.append("aggregate_id = %s")
            params.append(uuid_parameter(self._database.dialect, aggregate_id))
        if actor_id is not None:
            conditions.append("actor_id = %s")
            params.append(uuid_parameter(self._database.dialect, actor_id))
        if event_type is not None:
            conditions.append("event_type = %s")
            params.append(event_type)
        if since is not None:
            conditions.append("recorded_at >= %s")
            params.append(self._time(since))
        if until is not None:
            conditions.append("recorded_at <= %s")
            params.append(self._time(until))
        # One row more than the page: whether it exists says if there is a next page.
        params.append(limit + 1)
        with self._database.reading() as sql:
            rows = sql.fetchall(
                "SELECT position, recorded_at, aggregate_type, aggregate_id, "
                "aggregate_version, event_type, actor_id, actor_role, request_id, "
                f"correlation_id, payload FROM {ENTRIES} WHERE {' AND '.join(conditions)} "
                "ORDER BY position LIMIT %s",
                params,
            )
        items = [_entry(row) for row in rows[:limit]]
        more = len(rows) > limit
        return AuditPage(
            items=items,
            limit=limit,
            next_after_position=items[-1].position if more else None,
        )


def _entry(row: dict[str, Any]) -> AuditEntry:
    payload = row["payload"]
    recorded_at = row["recorded_at"]
    return AuditEntry(
        position=int(row["position"]),
        recorded_at=(
            datetime.fromisoformat(recorded_at) if isinstance(recorded_at, str) else recorded_at
        ),
        aggregate_type=row["aggregate_type"],
        aggregate_id=uuid_from_row(row["aggregate_id"]),
        aggregate_version=int(row["aggregate_version"]),
        event_type=row["event_type"],
        actor_id=None if row["actor_id"] is None else uuid_from_row(row["actor_id"]),
        actor_role=row["actor_role"],
        request_id=row["request_id"],
        correlation_id=row["correlation_id"],
        payload=orjson.loads(payload) if isinstance(payload, str | bytes) else payload,
    )
