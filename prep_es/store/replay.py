"""Replay one aggregate: its recorded history and its state at a version or a moment.

Used by ``prep-es replay`` and the admin endpoints (``/admin/aggregates/{id}/events``
and ``/state``): both read the event store itself, not a projection, so what they show
is exactly what the aggregate is rebuilt from.

Secrets never leave: a field named in :data:`prep_es.store.redaction.SECRET_FIELDS` (the
password hash) is printed as ``"***"``, in event payloads and in the reconstructed state
alike. Personal data whose subject was erased is ``null``, and named: each event says
``erased`` and lists its ``erased_fields``, and so does the state for the attributes that
were set from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Final
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.utils import get_topic
from pydantic import BaseModel

from aggregates.base import Aggregate, DomainEvent
from aggregates.errors import InvalidRequest, NotFound
from prep_es.store.eventstore import PrepApplication
from prep_es.store.redaction import ENVELOPE_FIELDS, redact_secrets, shown_erased_fields

EVENTS_PER_AGGREGATE_MAX: Final = 100_000
"""A limit on one replay. No aggregate comes near it (long-lived ones are snapshotted
every 50–100 events), so reaching it means something is wrong, and we say so."""

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Event fields that are columns or metadata, shown apart from the payload.
_ENVELOPE_FIELDS: Final = ENVELOPE_FIELDS
_STATE_DEPTH_MAX: Final = 20


class RecordedEvent(BaseModel):
    """One stored event of an aggregate, with who caused it and why."""

    version: int
    topic: str
    timestamp: datetime
    actor_id: UUID | None
    actor_role: str | None
    request_id: str | None
    correlation_id: str | None
    payload: dict[str, Any]
    erased: bool
    """Some personal field of the payload reads ``null`` because its subject was erased."""
    erased_fields: list[str]
    """Those fields, by name (secrets, shown as ``"***"`` either way, are not named)."""


class AggregateReplay(BaseModel):
    """An aggregate's history up to a point, and its state rebuilt at that point."""

    aggregate_id: UUID
    aggregate_type: str
    version: int
    """The version the state was rebuilt at (the last event in ``events``)."""
    latest_version: int
    as_of: datetime | None
    events: list[RecordedEvent]
    state: dict[str, Any]
    erased: bool
    """Some attribute of ``state`` reads ``null`` because its subject was erased."""
    erased_fields: list[str]
    """Those attributes: set from personal fields whose subject was erased."""


def parse_point_in_time(text: str) -> datetime:
    """RFC 3339 with an offset (``2030-01-07T17:00:00Z``), or a date (``2030-01-07``)
    meaning 00:00 UTC that day. Returned in UTC. Naive times are refused: a moment
    without an offset means a different instant in every time zone."""
    text = text.strip()
    if _DATE_ONLY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidRequest(f"not a date: {text!r}", code="invalid_timestamp") from None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"not an RFC 3339 timestamp or YYYY-MM-DD date: {text!r}", code="invalid_timestamp"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidRequest(
            f"timestamp {text!r} has no UTC offset; add one (Z or +HH:MM)",
            code="naive_datetime",
        )
    return moment.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the HTTP API writes times."""
    assert moment.tzinfo is not None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def replay_aggregate(
    app: PrepApplication,
    aggregate_id: UUID,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
) -> AggregateReplay:
    """The history of ``aggregate_id`` and its state at ``version``, or as of ``as_of``
    (after every event recorded at or before that moment), or else at its latest version.

    Raises ``NotFound`` for an unknown id or a moment before the aggregate existed, and
    ``InvalidRequest`` for a version it never reached.
    """
    replay, _ = _replay(app, aggregate_id, version, as_of, with_previous=False)
    return replay


def replay_with_previous(
    app: PrepApplication,
    aggregate_id: UUID,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
) -> tuple[AggregateReplay, AggregateReplay | None]:
    """As :func:`replay_aggregate`, and the replay at the version before (``None`` at
    version 1), from one read of the stream."""
    return _replay(app, aggregate_id, version, as_of, with_previous=True)


def _replay(
    app: PrepApplication,
    aggregate_id: UUID,
    version: int | None,
    as_of: datetime | None,
    *,
    with_previous: bool,
) -> tuple[AggregateReplay, AggregateReplay | None]:
    """The events read once are applied in order with ``project_aggregate``, what
    ``Repository.get`` applies (which would read the stream again); the state is taken
    before the last one too when ``with_previous``."""
    assert version is None or as_of is None, "version and as_of exclude each other"
    assert as_of is None or as_of.tzinfo is not None, "as_of must be aware"
    history = list(app.events.get(aggregate_id, limit=EVENTS_PER_AGGREGATE_MAX + 1))
    if not history:
        raise NotFound(f"aggregate {aggregate_id} not found")
    if len(history) > EVENTS_PER_AGGREGATE_MAX:
        raise InvalidRequest(
            f"aggregate {aggregate_id} has more than {EVENTS_PER_AGGREGATE_MAX} events; "
            "too many to replay here",
            code="history_too_long",
        )
    events = [_as_domain_event(event) for event in history]
    latest_version = events[-1].originator_version

    if as_of is not None:
        events = [event for event in events if event.timestamp <= as_of]
        if not events:
            raise NotFound(f"aggregate {aggregate_id} did not exist yet at {as_of.isoformat()}")
    elif version is not None:
        if not 1 <= version <= latest_version:
            raise InvalidRequest(
                f"aggregate {aggregate_id} has versions 1 to {latest_version}, not {version}",
                code="version_out_of_range",
            )
        events = [event for event in events if event.originator_version <= version]

    aggregate: Any = project_aggregate(None, events[:-1])
    previous_state = None if aggregate is None or not with_previous else aggregate_state(aggregate)
    aggregate = project_aggregate(aggregate, events[-1:])
    assert isinstance(aggregate, Aggregate), type(aggregate)
    assert aggregate.version == events[-1].originator_version, aggregate.version

    recorded = [recorded_event(event) for event in events]
    aggregate_type = str(getattr(type(aggregate), "TOPIC", type(aggregate).__name__))

    def replay(upto: int, state: dict[str, Any], moment: datetime | None) -> AggregateReplay:
        erased = {name for event in events[:upto] for name in event.erased_fields}
        state_erased = shown_erased_fields(
            name for name in erased if name in state and state[name] is None
        )
        return AggregateReplay(
            aggregate_id=aggregate_id,
            aggregate_type=aggregate_type,
            version=events[upto - 1].originator_version,
            latest_version=latest_version,
            as_of=moment,
            events=recorded[:upto],
            state=state,
            erased=bool(state_erased),
            erased_fields=state_erased,
        )

    asked = replay(len(events), aggregate_state(aggregate), as_of)
    if previous_state is None:
        return asked, None
    return asked, replay(len(events) - 1, previous_state, None)


def recorded_event(event: DomainEvent) -> RecordedEvent:
    """An event as the audit trail shows it: envelope, metadata, redacted payload, and
    which of its personal fields were erased."""
    erased_fields = shown_erased_fields(event.erased_fields)
    payload = {
        name: redact_secrets(name, value)
        for name, value in event.model_dump(mode="json").items()
        if name not in _ENVELOPE_FIELDS
    }
    return RecordedEvent(
        version=event.originator_version,
        topic=get_topic(type(event)),
        timestamp=event.timestamp,
        actor_id=event.metadata.actor_id,
        actor_role=event.metadata.actor_role,
        request_id=event.metadata.request_id,
        correlation_id=event.metadata.correlation_id,
        payload=payload,
        erased=bool(erased_fields),
        erased_fields=erased_fields,
    )


def aggregate_state(aggregate: Aggregate) -> dict[str, Any]:
    """The public attributes of an aggregate as JSON values: id, version, created and
    modified times, then what its events set (UUIDs and dates as strings, secrets
    redacted, nested objects such as a kitchen's certificates as objects)."""
    state: dict[str, Any] = {
        "id": str(aggregate.id),
        "version": aggregate.version,
        "created_on": _jsonable(aggregate.created_on, 0),
        "modified_on": _jsonable(aggregate.modified_on, 0),
    }
    for name, value in vars(aggregate).items():
        if not name.startswith("_"):
            state[name] = redact_secrets(name, _jsonable(value, 0))
    return state


def _as_domain_event(event: object) -> DomainEvent:
    assert isinstance(event, DomainEvent), type(event)
    return event


def _jsonable(value: Any, depth: int) -> Any:
    """A JSON-native copy of ``value``. Depth is bounded: aggregate state is shallow, so
    a deep structure is a programmer error (a cycle, most likely)."""
    assert depth <= _STATE_DEPTH_MAX, "aggregate state nests too deeply"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return format_timestamp(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return _jsonable(value.value, depth + 1)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(_jsonable(k, depth + 1)): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(item, depth + 1) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if hasattr(value, "__dict__"):
        return {
            name: redact_secrets(name, _jsonable(item, depth + 1))
            for name, item in vars(value).items()
            if not name.startswith("_")
        }
    return repr(value)
