"""A small aggregate for store tests, with explicit topics of its own."""

from __future__ import annotations

from typing import ClassVar

from eventsourcing.domain import event

import aggregates
from aggregates.base import Aggregate, AggregateCreated

SNAPSHOT_INTERVAL = 3


class Counter(Aggregate):
    TOPIC: ClassVar[str] = "StoreTest.Counter"

    class Event(Aggregate.Event):
        pass

    class CounterStarted(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "StoreTest.CounterStarted"
        label: str

    class CounterIncremented(Event):
        TOPIC: ClassVar[str] = "StoreTest.CounterIncremented"
        amount: int

    @event(CounterStarted)
    def __init__(self, label: str) -> None:
        self.label = label
        self.value = 0

    def increment(self, amount: int) -> None:
        assert amount > 0, amount
        self._incremented(amount=amount)

    @event(CounterIncremented)
    def _incremented(self, amount: int) -> None:
        self.value += amount


aggregates.SNAPSHOTTING_INTERVALS[Counter] = SNAPSHOT_INTERVAL
