"""Time travel for admins: an aggregate's raw stream, and its state at a version or a
moment.

Unlike every other query service this one reads the EVENT STORE, not a projection: what
it shows is exactly what the aggregate is rebuilt from. The replay itself is
:func:`prep_es.store.replay.replay_with_previous` (``prep-es replay`` uses the same
replay); payloads are redacted as the audit trail redacts them
(:func:`projections.audit.audit_payload`).

Errors: an unknown aggregate, or a moment before it existed, is ``NotFound`` (404); a
version it never reached is ``InvalidRequest`` ``version_out_of_range`` (422), as the
replay says; asking for both a version and a moment is ``InvalidRequest``
``version_and_as_of`` (422).

After an erasure, what was personal about the erased person reads ``null``, and each
event and state says so (``erased``, ``erased_fields``): never ciphertext, never an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from pydantic import BaseModel

from aggregates.base import DomainEvent
from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from prep_es.store.eventstore import PrepApplication
from prep_es.store.redaction import shown_erased_fields
from prep_es.store.replay import AggregateReplay, replay_with_previous
from projections.audit import audit_payload
from queries.base import Page, PageRequest, Viewer


class StoredEventView(BaseModel):
    """One event as stored: its place in the stream, who caused it and why, and its
    fields (secrets redacted)."""

    version: int
    type: str
    """The event's topic, e.g. ``Booking.BookingRequested``."""
    timestamp: datetime
    actor_id: UUID | None
    actor_role: str | None
    request_id: str | None
    correlation_id: str | None
    payload: dict[str, Any]
    erased: bool
    erased_fields: list[str]
    """The payload's personal fields that read ``null`` because their subject was
    erased."""


class AggregateStateView(BaseModel):
    """An aggregate's state rebuilt from its events up to ``version``."""

    aggregate_id: UUID
    aggregate_type: str
    version: int
    latest_version: int
    as_of: datetime | None
    state: dict[str, Any]
    erased: bool
    erased_fields: list[str]
    """The state's attributes that read ``null`` because their subject was erased."""


def _check_admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise PermissionDenied("aggregate history is for admins")


class TimeTravelQueries:
    def __init__(self, app: PrepApplication) -> None:
        self._app = app

    def events(
        self, viewer: Viewer, aggregate_id: UUID, page: PageRequest
    ) -> Page[StoredEventView]:
        """Admins only: a page of the events of ``aggregate_id``, oldest first. Versions
        run 1, 2, 3, … with no gap, so the page is read by version, however long the
        stream; ``total`` is the latest version."""
        _check_admin(viewer)
        latest = list(self._app.events.get(aggregate_id, desc=True, limit=1))
        if not latest:
            raise NotFound(f"aggregate {aggregate_id} not found")
        history = self._app.events.get(aggregate_id, gt=page.offset, lte=page.offset + page.limit)
        return Page[StoredEventView](
            items=[_stored_event(event) for event in history],
            total=latest[0].originator_version,
            limit=page.limit,
            offset=page.offset,
        )

    def state(
        self,
        viewer: Viewer,
        aggregate_id: UUID,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> AggregateStateView:
        """Admins only: the state after ``version``, or after every event recorded at
        or before ``as_of``, or else the latest state."""
        state, _ = self.state_and_previous(viewer, aggregate_id, version=version, as_of=as_of)
        return state

    def state_and_previous(
        self,
        viewer: Viewer,
        aggregate_id: UUID,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> tuple[AggregateStateView, AggregateStateView | None]:
        """Admins only: as :meth:`state`, and the state at the version before it
        (``None`` at version 1), from one read of the stream (what changed at that
        version is their difference)."""
        _check_admin(viewer)
        if version is not None and as_of is not None:
            raise InvalidRequest(
                "ask for a version or a moment (as_of), not both", code="version_and_as_of"
            )
        if as_of is not None and as_of.utcoffset() is None:
            raise InvalidRequest("as_of needs a UTC offset", code="naive_datetime")
        replay, previous = replay_with_previous(
            self._app, aggregate_id, version=version, as_of=as_of
        )
        return _state_view(replay), None if previous is None else _state_view(previous)


def _state_view(replay: AggregateReplay) -> AggregateStateView:
    return AggregateStateView(
        aggregate_id=replay.aggregate_id,
        aggregate_type=replay.aggregate_type,
        version=replay.version,
        latest_version=replay.latest_version,
        as_of=replay.as_of,
        state=replay.state,
        erased=replay.erased,
        erased_fields=replay.erased_fields,
    )


def _stored_event(event: object) -> StoredEventView:
    assert isinstance(event, DomainEvent), type(event)
    metadata = event.metadata
    erased_fields = shown_erased_fields(event.erased_fields)
    return StoredEventView(
        version=event.originator_version,
        type=get_topic(type(event)),
        timestamp=event.timestamp,
        actor_id=metadata.actor_id,
        actor_role=metadata.actor_role,
        request_id=metadata.request_id,
        correlation_id=metadata.correlation_id,
        payload=audit_payload(event),
        erased=bool(erased_fields),
        erased_fields=erased_fields,
    )
