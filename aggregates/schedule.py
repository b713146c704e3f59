"""Kitchen schedules: the aggregate that makes double booking impossible.

One ``KitchenSchedule`` per kitchen per UTC day, with an id derived from both. A
booking claims its window on every day it touches, and the claims are saved in the
same transaction as the booking and its hold. Two concurrent claims on one day both
write the schedule's next version; the event store commits one and refuses the
other, which then reloads, sees the overlap and fails with ``booking_conflict``.
Any two overlapping windows share at least one UTC day, so checking every touched day
is enough.

State is JSON-native (epoch seconds, string keys) so snapshots round-trip exactly.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated, derived_id
from aggregates.errors import BookingConflict
from aggregates.policies import BookingWindow

SNAPSHOT_INTERVAL = 50


class KitchenSchedule(Aggregate):
    """The pending and confirmed bookings of one kitchen on one UTC day."""

    TOPIC: ClassVar[str] = "KitchenSchedule"

    class Event(Aggregate.Event):
        pass

    class ScheduleOpened(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "KitchenSchedule.ScheduleOpened"
        kitchen_id: UUID
        day: date

    class SlotClaimed(Event):
        TOPIC: ClassVar[str] = "KitchenSchedule.SlotClaimed"
        booking_id: UUID
        start_time: datetime
        end_time: datetime

    class SlotReleased(Event):
        TOPIC: ClassVar[str] = "KitchenSchedule.SlotReleased"
        booking_id: UUID

    @staticmethod
    def create_id(kitchen_id: UUID, day: date, **_: Any) -> UUID:
        return derived_id("kitchen-schedule", kitchen_id, day.isoformat())

    @event(ScheduleOpened)
    def __init__(self, kitchen_id: UUID, day: date) -> None:
        self.kitchen_id = str(kitchen_id)
        self.day = day.isoformat()
        # booking id -> [start, end) in epoch seconds
        self.claims: dict[str, list[int]] = {}

    def check_free(self, window: BookingWindow, booking_id: UUID) -> None:
        """Raise ``BookingConflict`` if another booking's claim overlaps ``window``."""
        start, end = _epoch(window.start), _epoch(window.end)
        for other_id, (other_start, other_end) in self.claims.items():
            if other_id != str(booking_id) and start < other_end and other_start < end:
                raise BookingConflict("the kitchen is already booked for part of this window")

    def claim(self, booking_id: UUID, window: BookingWindow) -> None:
        self.check_free(window, booking_id)
        claimed = self.claims.get(str(booking_id))
        if claimed != [_epoch(window.start), _epoch(window.end)]:
            self._slot_claimed(booking_id=booking_id, start_time=window.start, end_time=window.end)

    def release(self, booking_id: UUID) -> None:
        if str(booking_id) in self.claims:
            self._slot_released(booking_id=booking_id)

    @event(SlotClaimed)
    def _slot_claimed(self, booking_id: UUID, start_time: datetime, end_time: datetime) -> None:
        self.claims[str(booking_id)] = [_epoch(start_time), _epoch(end_time)]

    @event(SlotReleased)
    def _slot_released(self, booking_id: UUID) -> None:
        del self.claims[str(booking_id)]


def _epoch(moment: datetime) -> int:
    assert moment.tzinfo is not None
    return int(moment.timestamp())
