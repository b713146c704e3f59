"""Prep ES domain model: event-sourced aggregates and pure domain policies.

Nothing here does I/O or reads a clock: times, prices and ids come in as arguments.
"""

from typing import Any

# Aggregate class -> snapshot every N events. Filled in by the aggregate modules' owners;
# the application reads it when wiring the event store.
SNAPSHOTTING_INTERVALS: dict[type[Any], int] = {}
