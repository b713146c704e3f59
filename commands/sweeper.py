"""Time-driven transitions: expire pending bookings at their start, complete confirmed
bookings 24 h after their end, record certificate lapses.

Each transition is its own command, decided on the aggregate's current state, so a
sweep is idempotent: running it twice, or in two processes at once, changes nothing
the first did not (a lost write race retries and finds the work done).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from threading import Lock
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.utils import get_topic
from pydantic import BaseModel, ConfigDict

from aggregates.booking import Booking
from aggregates.jurisdictions import JurisdictionCatalog
from aggregates.kitchen import Kitchen
from commands.bookings import BookingCommands, BookingState
from commands.handling import (
    SYSTEM_ACTOR,
    Clock,
    CommandContext,
    CommandProcessor,
    UnitOfWork,
)

AUTO_COMPLETE_AFTER = timedelta(hours=24)
AGENDA_BATCH_SIZE = 1000


class SweepReport(BaseModel):
    expired_booking_ids: list[UUID]
    completed_booking_ids: list[UUID]
    lapsed_certificate_ids: list[UUID]


class SweepTarget(BaseModel):
    model_config = ConfigDict(frozen=True)

    aggregate_id: UUID


class LapsedCertificates(BaseModel):
    certificate_ids: list[UUID]


@dataclass(slots=True)
class _BookingDue:
    """slots: 100k of these in the agenda of a store with 100k active bookings."""

    status: str
    start_time: datetime
    end_time: datetime


@dataclass
class EventStoreAgenda:
    """What may be due, read incrementally from the event store's booking and
    certificate events. Candidates only: each transition re-checks the aggregate."""

    app: Application[UUID]
    _position: int = 0
    _bookings: dict[UUID, _BookingDue] = field(default_factory=dict)
    _attached: dict[UUID, tuple[UUID, date]] = field(default_factory=dict)
    _verified: dict[UUID, tuple[UUID, date]] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock)

    TOPICS = tuple(
        get_topic(event_class)
        for event_class in (
            Booking.BookingRequested,
            Booking.BookingConfirmed,
            Booking.BookingDeclined,
            Booking.BookingCancelled,
            Booking.BookingRescheduled,
            Booking.BookingCompleted,
            Booking.BookingExpired,
            Kitchen.CertificateAttached,
            Kitchen.CertificateVerified,
            Kitchen.CertificateLapsed,
        )
    )

    def catch_up(self) -> None:
        with self._lock:
            while True:
                notifications = self.app.recorder.select_notifications(
                    start=self._position,
                    limit=AGENDA_BATCH_SIZE,
                    topics=list(self.TOPICS),
                    inclusive_of_start=False,
                )
                for notification in notifications:
                    self._apply(self.app.mapper.to_domain_event(notification))
                    self._position = notification.id
                if len(notifications) < AGENDA_BATCH_SIZE:
                    return

    def _apply(self, event: object) -> None:
        if isinstance(event, Booking.BookingRequested):
            # One copy of each status string, not one per booking: the agenda of a big
            # store holds every pending and confirmed booking.
            self._bookings[event.originator_id] = _BookingDue(
                sys.intern(event.status), event.start_time, event.end_time
            )
        elif isinstance(event, Booking.BookingRescheduled):
            due = self._bookings[event.originator_id]
            due.start_time, due.end_time = event.start_time, event.end_time
        elif isinstance(event, Booking.BookingConfirmed):
            self._bookings[event.originator_id].status = "confirmed"
        elif isinstance(
            event,
            Booking.BookingDeclined
            | Booking.BookingCancelled
            | Booking.BookingCompleted
            | Booking.BookingExpired,
        ):
            self._bookings.pop(event.originator_id, None)
        elif isinstance(event, Kitchen.CertificateAttached):
            self._attached[event.certificate_id] = (event.originator_id, event.expires_on)
        elif isinstance(event, Kitchen.CertificateVerified):
            self._verified[event.certificate_id] = self._attached.pop(event.certificate_id)
        elif isinstance(event, Kitchen.CertificateLapsed):
            self._verified.pop(event.certificate_id, None)

    def pending_started(self, now: datetime) -> list[UUID]:
        return [
            i for i, b in self._bookings.items() if b.status == "pending" and b.start_time <= now
        ]

    def confirmed_ended(self, before: datetime) -> list[UUID]:
        return [
            i for i, b in self._bookings.items() if b.status == "confirmed" and b.end_time <= before
        ]

    def kitchens_with_certificates_expiring(self, on_or_before: date) -> list[UUID]:
        return sorted(
            {kitchen for kitchen, expires in self._verified.values() if expires <= on_or_before}
        )


class Sweeper:
    def __init__(
        self,
        processor: CommandProcessor,
        bookings: BookingCommands,
        jurisdictions: JurisdictionCatalog,
        clock: Clock,
        agenda: EventStoreAgenda,
    ) -> None:
        self._processor = processor
        self._bookings = bookings
        self._jurisdictions = jurisdictions
        self._clock = clock
        self._agenda = agenda

    def sweep(self) -> SweepReport:
        """Run every due transition once."""
        self._agenda.catch_up()
        now = self._clock()
        context = CommandContext(actor=SYSTEM_ACTOR, request_id=f"sweep-{uuid4().hex}")
        report = SweepReport(
            expired_booking_ids=[], completed_booking_ids=[], lapsed_certificate_ids=[]
        )
        for booking_id in self._agenda.pending_started(now):
            if self._expire(booking_id, now, context):
                report.expired_booking_ids.append(booking_id)
        for booking_id in self._agenda.confirmed_ended(now - AUTO_COMPLETE_AFTER):
            if self._auto_complete(booking_id, now, context):
                report.completed_booking_ids.append(booking_id)
        # A certificate lapses after its last valid day in the kitchen's time zone, which
        # is never ahead of the UTC date: candidates by UTC date, the kitchen decides.
        for kitchen_id in self._agenda.kitchens_with_certificates_expiring(now.date()):
            report.lapsed_certificate_ids.extend(self._lapse(kitchen_id, now, context))
        return report

    def _expire(self, booking_id: UUID, now: datetime, context: CommandContext) -> bool:
        changed = False

        def decide(unit: UnitOfWork) -> BookingState:
            nonlocal changed
            booking = unit.get(Booking, booking_id, not_found_code="booking_not_found")
            changed = booking.status == "pending" and booking.start_time <= now
            if changed:
                self._bookings.expire(unit, booking)
            return BookingState.of(booking)

        self._processor.execute(
            "expire_booking", context, SweepTarget(aggregate_id=booking_id), BookingState, decide
        )
        return changed

    def _auto_complete(self, booking_id: UUID, now: datetime, context: CommandContext) -> bool:
        changed = False

        def decide(unit: UnitOfWork) -> BookingState:
            nonlocal changed
            booking = unit.get(Booking, booking_id, not_found_code="booking_not_found")
            due = booking.end_time + AUTO_COMPLETE_AFTER <= now
            changed = booking.status == "confirmed" and due
            if changed:
                self._bookings.complete(unit, booking, automatically=True)
            return BookingState.of(booking)

        self._processor.execute(
            "auto_complete_booking",
            context,
            SweepTarget(aggregate_id=booking_id),
            BookingState,
            decide,
        )
        return changed

    def _lapse(self, kitchen_id: UUID, now: datetime, context: CommandContext) -> list[UUID]:
        def decide(unit: UnitOfWork) -> LapsedCertificates:
            kitchen = unit.get(Kitchen, kitchen_id, not_found_code="kitchen_not_found")
            rules = self._jurisdictions.get(kitchen.jurisdiction)
            return LapsedCertificates(
                certificate_ids=kitchen.lapse_expired_certificates(now, rules)
            )

        executed = self._processor.execute(
            "lapse_certificates",
            context,
            SweepTarget(aggregate_id=kitchen_id),
            LapsedCertificates,
            decide,
        )
        return executed.result.certificate_ids
