"""The event classes of the domain, for projections that follow all of them."""

from __future__ import annotations

from typing import Any

from eventsourcing.utils import resolve_topic

from aggregates import AGGREGATE_CLASSES
from aggregates.base import AggregateSnapshot, DomainEvent


def domain_event_types() -> tuple[type[Any], ...]:
    """Every event class with an explicit topic, of every aggregate."""
    topics = {
        topic
        for aggregate_class in AGGREGATE_CLASSES
        for value in vars(aggregate_class).values()
        if isinstance(value, type)
        and issubclass(value, DomainEvent)
        and (topic := getattr(value, "TOPIC", None)) is not None
        and topic != AggregateSnapshot.TOPIC
    }
    # The class a stored topic resolves to is the one the mapper builds on reading.
    return tuple(resolve_topic(topic) for topic in sorted(topics))
