"""The base every Prep ES aggregate and event stands on.

Events are frozen pydantic models with an explicit, stable topic (``TOPIC``), so the
stored form of an event never depends on the module or name of its Python class:
``Booking.BookingRequested`` is what the store holds, wherever the class lives.

Every event carries :class:`EventMetadata` (who, why) taken from the recording
context that the command side opens around a command (see :func:`recording_metadata`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
)
from eventsourcing.utils import register_topic
from pydantic import BaseModel, ConfigDict, Field

PREP_NAMESPACE = uuid5(NAMESPACE_URL, "https://prep.es/aggregates")


def uncached_derived_id(kind: str, *parts: object) -> UUID:
    """:func:`derived_id` without its cache: for ids derived once each (a read model's
    row per event), which the cache would only miss."""
    return uuid5(PREP_NAMESPACE, ":".join([kind, *(str(part) for part in parts)]))


derived_id = functools.lru_cache(maxsize=65_536)(uncached_derived_id)
"""A deterministic aggregate id: two writers deriving the same id for the same thing (an
email, a kitchen-day, an idempotency key) collide in the event store."""


class EventMetadata(BaseModel):
    """Who caused an event and why: the audit trail of every change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actor_id: UUID | None = None
    actor_role: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None


_NO_METADATA = EventMetadata()  # frozen, so one shared default is safe
_recording_metadata: ContextVar[EventMetadata] = ContextVar(
    "recording_metadata", default=_NO_METADATA
)


@contextmanager
def recording_metadata(metadata: EventMetadata) -> Iterator[None]:
    """Stamp every event triggered inside this block with ``metadata``."""
    token = _recording_metadata.set(metadata)
    try:
        yield
    finally:
        _recording_metadata.reset(token)


def _current_metadata() -> EventMetadata:
    return _recording_metadata.get()


class DomainEvent(BaseModel):
    """A fact, immutable once recorded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TOPIC: ClassVar[str]

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    metadata: EventMetadata = Field(default_factory=_current_metadata)
    erased_fields: frozenset[str] = Field(default=frozenset(), exclude=True)
    """The personal fields (see ``aggregates.personal``) whose subject was erased: they
    read as ``None``. Never stored: the store finds them on load."""


class AggregateCreated(DomainEvent, CanInitAggregate[UUID]):
    """Mixed into each aggregate's first event."""

    originator_topic: str


class AggregateSnapshot(DomainEvent, CanSnapshotAggregate[UUID]):
    """The state of an aggregate at a version, so that loading a long-lived aggregate
    replays only the events after it. A snapshot holds the state JSON-native (ints,
    strings, lists, dicts with string keys): an aggregate whose state is not says how to
    convert it both ways (``Aggregate.snapshot_state`` and ``restored_state``), so a
    snapshot round-trips exactly."""

    TOPIC: ClassVar[str] = "Snapshot"

    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> AggregateSnapshot:
        taken = super().take(aggregate)
        return taken.model_copy(update={"state": type(aggregate).snapshot_state(taken.state)})

    def mutate(self, _: None) -> Any:
        aggregate = super().mutate(None)
        assert isinstance(aggregate, Aggregate), aggregate
        state = aggregate.__dict__
        for name in ("_created_on", "_modified_on"):
            value = state[name]
            if isinstance(value, str):
                state[name] = datetime.fromisoformat(value)
        object.__setattr__(aggregate, "__dict__", type(aggregate).restored_state(state))
        return aggregate


register_topic(AggregateSnapshot.TOPIC, AggregateSnapshot)


_IMMUTABLE_TYPES = frozenset({str, int, float, bool, type(None), UUID, datetime, date, bytes})


def clone_state(value: Any) -> Any:
    """A deep copy of aggregate state, which is immutable values (strings, numbers,
    UUIDs, dates, frozen events) in lists, dicts and ``StateObject``s. Much cheaper than
    ``copy.deepcopy``, which aggregates are copied with on every load from a cache."""
    kind = type(value)
    if kind in _IMMUTABLE_TYPES:
        return value
    if kind is dict:
        return {key: clone_state(item) for key, item in value.items()}
    if kind is list:
        return [clone_state(item) for item in value]
    if isinstance(value, StateObject):
        return value.__deepcopy__({})
    if isinstance(value, BaseModel) and value.model_config.get("frozen"):
        return value
    return copy.deepcopy(value)


class StateObject:
    """A mutable value object kept inside an aggregate's state (a kitchen's
    certificate, say): copied with the aggregate by ``clone_state``."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        clone = object.__new__(type(self))
        clone.__dict__ = {name: clone_state(item) for name, item in self.__dict__.items()}
        return clone


class Aggregate(StateObject, BaseAggregate[UUID]):
    """Base of Prep ES aggregates: public verbs decide, private ``@event`` methods
    record. Each subclass sets ``TOPIC`` and gives every nested event a ``TOPIC``."""

    TOPIC: ClassVar[str]

    @staticmethod
    def create_id(*_: Any, **__: Any) -> UUID:
        return uuid4()

    @classmethod
    def snapshot_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` (the aggregate's attributes) as its snapshot holds it, JSON-native
        once pydantic has written UUIDs, dates and times as strings (as it does for
        events). As it is, for aggregates of plain values."""
        return state

    @classmethod
    def restored_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """The aggregate's attributes from its snapshot's state (the inverse of
        :meth:`snapshot_state`, after JSON)."""
        return state

    class Event(DomainEvent, CanMutateAggregate[UUID]):
        pass

    Snapshot = AggregateSnapshot
