"""Time-driven transitions: expire pending bookings at their start, complete confirmed
bookings 24 h after their end (or cancel one whose host was erased, its hold released:
an erasure missed it, see ``commands.erasure``), record certificate lapses, hand the
payment provider what it never took (a top-up's payment or a payout's transfer whose
first asking failed: a provider outage must not leave a customer's money in transit for
ever), and destroy the data key of every erased user whose key remains (the process that
erased them died between recording the erasure and destroying the key: see
``commands.erasure``).

Each transition is its own command, decided on the aggregate's current state, so a
sweep is idempotent: running it twice, or in two processes at once, changes nothing
the first did not. A lost write race retries and finds the work done; so does a
refusal on state a concurrent sweep was changing (it expired the booking between our
reading the booking and reading its account, say). One transition failing does not
end the sweep: it is reported (``SweepReport.failed``) and the others go on (unless
the database is out of reach, which ends it).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from threading import Lock
from typing import TypeVar
from uuid import UUID, uuid4

from eventsourcing.persistence import InterfaceError, Notification, OperationalError
from eventsourcing.utils import get_topic
from pydantic import BaseModel

from aggregates import booking_decisions
from aggregates.booking import Booking, BookingStatus
from aggregates.erasure import BOOKING_HOST_ERASED_REASON
from aggregates.errors import StateConflict
from aggregates.jurisdictions import JurisdictionCatalog
from aggregates.kitchen import Kitchen
from aggregates.payout import Payout
from aggregates.top_up import TopUp
from aggregates.user import User
from commands.bookings import BookingState
from commands.clock import Clock
from commands.context import SYSTEM_ACTOR, SYSTEM_ROLE, CommandContext
from commands.payouts import PayoutCommands
from commands.processor import AggregateTarget, CommandProcessor
from commands.store import CommandStore
from commands.top_ups import TopUpCommands
from commands.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)

AUTO_COMPLETE_AFTER = timedelta(hours=24)
PROVIDER_RETRY_AFTER = timedelta(minutes=1)
"""How long after it was asked for a top-up or payout the provider never took is asked
again (the request that made it asks at once; a client retry may ask meanwhile)."""
AGENDA_BATCH_SIZE = 1000
TRANSITION_ATTEMPTS_MAX = 3
"""Times one transition is decided while it is refused on state a concurrent writer is
changing: each time on fresher state, where it is no longer due or goes through."""


class FailedTransition(BaseModel):
    """A due transition this sweep could not make (the next sweep tries again)."""

    transition: str
    """``expire_booking``, ``auto_complete_booking``, ``lapse_certificates``,
    ``submit_top_up_payment``, ``send_payout`` or ``destroy_personal_data``."""
    aggregate_id: UUID
    error: str


class SweepReport(BaseModel):
    expired_booking_ids: list[UUID]
    completed_booking_ids: list[UUID]
    cancelled_booking_ids: list[UUID] = []
    """Confirmed bookings due for completion whose host was erased, cancelled instead,
    each hold released (an erasure missed them: see ``commands.erasure``)."""
    lapsed_certificate_ids: list[UUID]
    submitted_top_up_ids: list[UUID] = []
    """Top-ups whose payment the provider had not taken, asked again."""
    sent_payout_ids: list[UUID] = []
    """Payouts and refunds the provider had not taken, sent again."""
    erased_user_ids: list[UUID] = []
    """Erased users whose data key remained, destroyed now."""
    failed: list[FailedTransition] = []


class SweepIncomplete(Exception):
    """Some due transitions failed (see ``report.failed``)."""

    def __init__(self, report: SweepReport) -> None:
        failures = "; ".join(
            f"{failure.transition} {failure.aggregate_id}: {failure.error}"
            for failure in report.failed
        )
        super().__init__(f"{len(report.failed)} transition(s) failed: {failures}")
        self.report = report


class LapsedCertificates(BaseModel):
    certificate_ids: list[UUID]


_Made = TypeVar("_Made")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_BOOKING_DUE = struct.Struct("<?qq")
"""A booking in the agenda: confirmed (else pending), start and end in µs since the epoch."""
_START, _END = 1, 2
"""Where a booking's start and end are in its unpacked ``_BOOKING_DUE``."""
_CERTIFICATE_DUE = struct.Struct("<16si")
"""A certificate in the agenda: its kitchen's id and the day it expires (ordinal)."""


def _microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


@dataclass
class EventStoreAgenda:
    """What may be due, read incrementally from the event store's booking and
    certificate events. Candidates only: each transition re-checks the aggregate.

    It holds every pending and confirmed booking, so each is packed into bytes keyed by
    the id's bytes: ~130 bytes a booking, where objects (a UUID, two datetimes, a
    status) took ~400 (measured: 59 MB for 138k bookings and 43k certificates)."""

    store: CommandStore
    _position: int = 0
    _bookings: dict[bytes, bytes] = field(default_factory=dict)
    _attached: dict[bytes, bytes] = field(default_factory=dict)
    _verified: dict[bytes, bytes] = field(default_factory=dict)
    _unsubmitted_top_ups: dict[UUID, datetime] = field(default_factory=dict)
    _unsent_payouts: dict[UUID, datetime] = field(default_factory=dict)
    _erased_users: set[UUID] = field(default_factory=set)
    """Erased since this process started reading, their key not yet seen destroyed."""
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
            TopUp.TopUpRequested,
            TopUp.TopUpProcessing,
            TopUp.TopUpSucceeded,
            TopUp.TopUpFailed,
            Payout.PayoutRequested,
            Payout.PayoutSubmitted,
            Payout.PayoutPaid,
            Payout.PayoutFailed,
            User.UserErased,
        )
    )

    def catch_up(self) -> None:
        with self._lock:
            while True:
                notifications = self._read_after(self._position)
                for notification in notifications:
                    self._apply(self.store.mapper.to_domain_event(notification))
                    self._position = notification.id
                if len(notifications) < AGENDA_BATCH_SIZE:
                    return

    def _read_after(self, position: int) -> Sequence[Notification]:
        """The next batch of the agenda's events, through the store's own read (on
        PostgreSQL a statement prepared once, rows read as tuples: a first catch-up over
        545k stored events took 2.5 s of CPU, not 2.95)."""
        return self.store.notifications(position, None, AGENDA_BATCH_SIZE, self.TOPICS)

    def _apply(self, event: object) -> None:
        if isinstance(event, Booking.BookingRequested):
            self._bookings[event.originator_id.bytes] = _BOOKING_DUE.pack(
                event.status == BookingStatus.CONFIRMED,
                _microseconds(event.start_time),
                _microseconds(event.end_time),
            )
        elif isinstance(event, Booking.BookingRescheduled):
            key = event.originator_id.bytes
            confirmed, _, _ = _BOOKING_DUE.unpack(self._bookings[key])
            self._bookings[key] = _BOOKING_DUE.pack(
                confirmed, _microseconds(event.start_time), _microseconds(event.end_time)
            )
        elif isinstance(event, Booking.BookingConfirmed):
            key = event.originator_id.bytes
            _, start, end = _BOOKING_DUE.unpack(self._bookings[key])
            self._bookings[key] = _BOOKING_DUE.pack(True, start, end)
        elif isinstance(
            event,
            Booking.BookingDeclined
            | Booking.BookingCancelled
            | Booking.BookingCompleted
            | Booking.BookingExpired,
        ):
            self._bookings.pop(event.originator_id.bytes, None)
        elif isinstance(event, Kitchen.CertificateAttached):
            self._attached[event.certificate_id.bytes] = _CERTIFICATE_DUE.pack(
                event.originator_id.bytes, event.expires_on.toordinal()
            )
        elif isinstance(event, Kitchen.CertificateVerified):
            certificate = event.certificate_id.bytes
            self._verified[certificate] = self._attached.pop(certificate)
        elif isinstance(event, Kitchen.CertificateLapsed):
            self._verified.pop(event.certificate_id.bytes, None)
        elif isinstance(event, TopUp.TopUpRequested):
            self._unsubmitted_top_ups[event.originator_id] = event.requested_at
        elif isinstance(event, TopUp.Event):
            self._unsubmitted_top_ups.pop(event.originator_id, None)
        elif isinstance(event, Payout.PayoutRequested):
            self._unsent_payouts[event.originator_id] = event.requested_at
        elif isinstance(event, Payout.Event):
            self._unsent_payouts.pop(event.originator_id, None)
        elif isinstance(event, User.UserErased):
            self._erased_users.add(event.originator_id)

    def erased_users(self) -> list[UUID]:
        """Users erased whose key this agenda has not seen destroyed (a process reading
        from the start lists every erased user once)."""
        with self._lock:
            return sorted(self._erased_users)

    def key_destroyed(self, user_id: UUID) -> None:
        with self._lock:
            self._erased_users.discard(user_id)

    def unsubmitted_top_ups(self, asked_before: datetime) -> list[UUID]:
        with self._lock:
            return [i for i, asked in self._unsubmitted_top_ups.items() if asked <= asked_before]

    def unsent_payouts(self, asked_before: datetime) -> list[UUID]:
        with self._lock:
            return [i for i, asked in self._unsent_payouts.items() if asked <= asked_before]

    def pending_started(self, now: datetime) -> list[UUID]:
        return self._bookings_due(confirmed=False, moment=_START, at_or_before=_microseconds(now))

    def confirmed_ended(self, before: datetime) -> list[UUID]:
        return self._bookings_due(confirmed=True, moment=_END, at_or_before=_microseconds(before))

    def _bookings_due(self, *, confirmed: bool, moment: int, at_or_before: int) -> list[UUID]:
        """Bookings in status ``confirmed`` (else pending) whose ``moment`` (``_START``
        or ``_END``) is at or before ``at_or_before``; unpacked one at a time, so a
        sweep holds no second copy of the agenda."""
        unpack = _BOOKING_DUE.unpack
        with self._lock:
            return [
                UUID(bytes=booking)
                for booking, packed in self._bookings.items()
                if (due := unpack(packed))[0] == confirmed and due[moment] <= at_or_before
            ]

    def kitchens_with_certificates_expiring(self, on_or_before: date) -> list[UUID]:
        last_day = on_or_before.toordinal()
        kitchens = set()
        with self._lock:
            for packed in self._verified.values():
                kitchen, expires = _CERTIFICATE_DUE.unpack(packed)
                if expires <= last_day:
                    kitchens.add(kitchen)
        return sorted(UUID(bytes=kitchen) for kitchen in kitchens)


class Sweeper:
    def __init__(
        self,
        processor: CommandProcessor,
        jurisdictions: JurisdictionCatalog,
        clock: Clock,
        agenda: EventStoreAgenda,
        *,
        commission_basis_points: int,
        top_ups: TopUpCommands,
        payouts: PayoutCommands,
    ) -> None:
        self._processor = processor
        self._jurisdictions = jurisdictions
        self._clock = clock
        self._agenda = agenda
        self._commission_basis_points = commission_basis_points
        self._top_ups = top_ups
        self._payouts = payouts

    def sweep(self) -> SweepReport:
        """Run every due transition once. Those that failed are in ``failed``; the
        others were made, by this sweep or (found no longer due) by someone else."""
        self._agenda.catch_up()
        now = self._clock()
        context = CommandContext(actor=SYSTEM_ACTOR, request_id=f"sweep-{uuid4().hex}")
        report = SweepReport(
            expired_booking_ids=[], completed_booking_ids=[], lapsed_certificate_ids=[]
        )
        for booking_id in self._agenda.pending_started(now):
            if self._attempt(report, "expire_booking", booking_id, self._expire, now, context):
                report.expired_booking_ids.append(booking_id)
        for booking_id in self._agenda.confirmed_ended(now - AUTO_COMPLETE_AFTER):
            outcome = self._attempt(
                report, "auto_complete_booking", booking_id, self._auto_complete, now, context
            )
            if outcome == BookingStatus.COMPLETED:
                report.completed_booking_ids.append(booking_id)
            elif outcome == BookingStatus.CANCELLED:
                report.cancelled_booking_ids.append(booking_id)
        # A certificate lapses after its last valid day in the kitchen's time zone, which
        # is never ahead of the UTC date: candidates by UTC date, the kitchen decides.
        for kitchen_id in self._agenda.kitchens_with_certificates_expiring(now.date()):
            lapsed = self._attempt(
                report, "lapse_certificates", kitchen_id, self._lapse, now, context
            )
            report.lapsed_certificate_ids.extend(lapsed or [])
        asked_before = now - PROVIDER_RETRY_AFTER
        for top_up_id in self._agenda.unsubmitted_top_ups(asked_before):
            if self._attempt(
                report, "submit_top_up_payment", top_up_id, self._submit_top_up, now, context
            ):
                report.submitted_top_up_ids.append(top_up_id)
        for payout_id in self._agenda.unsent_payouts(asked_before):
            if self._attempt(report, "send_payout", payout_id, self._send_payout, now, context):
                report.sent_payout_ids.append(payout_id)
        for user_id in self._agenda.erased_users():
            if self._attempt(
                report, "destroy_personal_data", user_id, self._destroy_key, now, context
            ):
                report.erased_user_ids.append(user_id)
        return report

    def _destroy_key(self, user_id: UUID, now: datetime, context: CommandContext) -> bool:
        """Whether the key was still there (destroying it twice changes nothing)."""
        store = self._agenda.store
        remained = not store.personal_data_destroyed(user_id)
        if remained:
            logger.warning("destroying the data key of erased user %s, which remained", user_id)
            store.destroy_personal_data(user_id)
            self._processor.known.forget_all()  # as an erasure does once it destroys the key
        self._agenda.key_destroyed(user_id)
        return remained

    def _submit_top_up(self, top_up_id: UUID, now: datetime, context: CommandContext) -> bool:
        self._top_ups.submit_payment(top_up_id, context)
        return True

    def _send_payout(self, payout_id: UUID, now: datetime, context: CommandContext) -> bool:
        self._payouts.send(payout_id, context)
        return True

    def _attempt(
        self,
        report: SweepReport,
        name: str,
        aggregate_id: UUID,
        transition: Callable[[UUID, datetime, CommandContext], _Made],
        now: datetime,
        context: CommandContext,
    ) -> _Made | None:
        """``transition`` of ``aggregate_id``, decided again while it is refused on
        state a concurrent writer was changing. Reads are not one snapshot: another
        sweep may expire a booking between this one reading the booking (pending) and
        its account (hold released), and the refusal (``hold_not_pending``) says only
        that someone got there first. Decided again on fresh state, the booking is no
        longer due and the transition is skipped. A failure is recorded in ``report``
        (``None``), and the sweep goes on, unless the database is out of reach (then
        the sweep fails, to be tried again soon)."""
        error: Exception | None = None
        for _ in range(TRANSITION_ATTEMPTS_MAX):
            try:
                return transition(aggregate_id, now, context)
            except StateConflict as refused:
                error = refused
                logger.debug("%s %s refused (%s); deciding again", name, aggregate_id, refused)
            except (OperationalError, InterfaceError):
                # The database is out of reach: so it is for every other transition,
                # each waiting out a connection timeout. The sweep ends here.
                raise
            except Exception as failed:
                error = failed
                break
        logger.error("sweep: %s %s failed: %s", name, aggregate_id, error)
        report.failed.append(
            FailedTransition(transition=name, aggregate_id=aggregate_id, error=str(error))
        )
        return None

    def _expire(self, booking_id: UUID, now: datetime, context: CommandContext) -> bool:
        changed = False

        def decide(unit: UnitOfWork) -> BookingState:
            nonlocal changed
            booking = unit.get(Booking, booking_id, not_found_code="booking_not_found")
            changed = booking.status == BookingStatus.PENDING and booking.start_time <= now
            if changed:
                booking_decisions.expire_booking(booking, self._clock(), parties=unit)
            return BookingState.of(booking)

        self._processor.execute(
            "expire_booking",
            context,
            AggregateTarget(aggregate_id=booking_id),
            BookingState,
            decide,
        )
        return changed

    def _auto_complete(
        self, booking_id: UUID, now: datetime, context: CommandContext
    ) -> BookingStatus | None:
        """The booking's new status (completed, or cancelled: its host was erased), or
        ``None`` when it was not due."""
        outcome: BookingStatus | None = None

        def decide(unit: UnitOfWork) -> BookingState:
            nonlocal outcome
            outcome = None
            booking = unit.get(Booking, booking_id, not_found_code="booking_not_found")
            due = booking.end_time + AUTO_COMPLETE_AFTER <= now
            if booking.status != BookingStatus.CONFIRMED or not due:
                return BookingState.of(booking)
            host = unit.find(User, booking.host_id)
            if host is not None and host.erased:
                # An erasure missed it (see ``commands.erasure``): completing it would
                # capture the customer's money into an account nobody can use.
                booking_decisions.cancel_for_erasure(
                    booking, by_role=SYSTEM_ROLE, reason=BOOKING_HOST_ERASED_REASON, parties=unit
                )
            else:
                booking_decisions.complete_booking(
                    booking,
                    self._clock(),
                    automatically=True,
                    commission_basis_points=self._commission_basis_points,
                    parties=unit,
                )
            outcome = booking.status
            return BookingState.of(booking)

        self._processor.execute(
            "auto_complete_booking",
            context,
            AggregateTarget(aggregate_id=booking_id),
            BookingState,
            decide,
        )
        return outcome

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
            AggregateTarget(aggregate_id=kitchen_id),
            LapsedCertificates,
            decide,
        )
        return executed.result.certificate_ids
