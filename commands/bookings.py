"""Booking commands. Each loads the booking (or its kitchen), has the domain decide
(``aggregates.booking_decisions``), and saves, in one transaction, the booking, the
kitchen-day schedules it claims or frees, and the accounts whose holds or balances it
moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from aggregates import booking_decisions
from aggregates.account import account_id_for
from aggregates.booking import Booking, BookingStatus
from aggregates.errors import PermissionDenied
from aggregates.jurisdictions import JurisdictionCatalog
from aggregates.kitchen import Kitchen
from aggregates.policies import check_notes
from aggregates.schedule import KitchenSchedule
from commands.clock import Clock
from commands.context import Actor, CommandContext, require_role
from commands.processor import CommandProcessor, Executed
from commands.unit_of_work import UnitOfWork


class RequestBooking(BaseModel):
    model_config = ConfigDict(frozen=True)

    kitchen_id: UUID
    start_time: datetime
    end_time: datetime
    guests: int
    notes: str = ""


class BookingAction(BaseModel):
    """confirm, complete"""

    model_config = ConfigDict(frozen=True)

    booking_id: UUID


class DeclineBooking(BaseModel):
    model_config = ConfigDict(frozen=True)

    booking_id: UUID
    reason: str | None = None


class CancelBooking(BaseModel):
    model_config = ConfigDict(frozen=True)

    booking_id: UUID
    reason: str | None = None


class RescheduleBooking(BaseModel):
    model_config = ConfigDict(frozen=True)

    booking_id: UUID
    start_time: datetime
    end_time: datetime


class Refund(BaseModel):
    """How a booking's hold ended: released back to the customer, captured for the host."""

    released_cents: int
    captured_cents: int


class BookingState(BaseModel):
    PERSONAL_SUBJECTS: ClassVar[tuple[str, ...]] = ("customer_id",)
    """Whose personal data this holds (the notes): see ``commands.processor``."""

    id: UUID
    kitchen_id: UUID
    host_id: UUID
    customer_id: UUID
    start_time: datetime
    end_time: datetime
    guests: int
    notes: str | None
    """None once the customer is erased."""
    hourly_rate_cents: int
    price_cents: int
    status: BookingStatus
    refund: Refund | None
    version: int

    @classmethod
    def of(cls, booking: Booking) -> BookingState:
        settled = not booking.is_active
        return cls(
            id=booking.id,
            kitchen_id=booking.kitchen_id,
            host_id=booking.host_id,
            customer_id=booking.customer_id,
            start_time=booking.start_time,
            end_time=booking.end_time,
            guests=booking.guests,
            notes=booking.notes,
            hourly_rate_cents=booking.hourly_rate_cents,
            price_cents=booking.price_cents,
            status=booking.status,
            refund=Refund(
                released_cents=booking.released_cents, captured_cents=booking.captured_cents
            )
            if settled
            else None,
            version=booking.version,
        )


READ_AHEAD_SPAN_MAX = timedelta(days=2)
_MICROSECOND = timedelta(microseconds=1)


def _schedules_claimed(kitchen_id: UUID, start: datetime, end: datetime) -> list[UUID]:
    """The kitchen-day schedules a window claims (see ``BookingWindow.days``), for
    reading ahead: none for a window the checks will refuse anyway (no offset, empty, or
    longer than any jurisdiction allows)."""
    if start.tzinfo is None or end.tzinfo is None or not start < end <= start + READ_AHEAD_SPAN_MAX:
        return []
    first, last = start.astimezone(UTC).date(), (end.astimezone(UTC) - _MICROSECOND).date()
    return [
        KitchenSchedule.create_id(kitchen_id=kitchen_id, day=first + timedelta(days=offset))
        for offset in range((last - first).days + 1)
    ]


def _load_booking(unit: UnitOfWork, booking_id: UUID, actor: Actor, *roles: str) -> Booking:
    """The booking, if ``actor`` takes part in it in one of ``roles``
    (``customer``: its customer; ``host``: its kitchen's host; ``admin``)."""
    booking = unit.get(Booking, booking_id, not_found_code="booking_not_found")
    allowed = (
        ("customer" in roles and actor.role == "customer" and booking.customer_id == actor.user_id)
        or ("host" in roles and actor.role == "host" and booking.host_id == actor.user_id)
        or ("admin" in roles and actor.role == "admin")
    )
    if not allowed:
        raise PermissionDenied("you do not take part in this booking in a role that may do this")
    return booking


class BookingCommands:
    def __init__(
        self,
        processor: CommandProcessor,
        jurisdictions: JurisdictionCatalog,
        clock: Clock,
        *,
        commission_basis_points: int,
    ) -> None:
        self._processor = processor
        self._jurisdictions = jurisdictions
        self._clock = clock
        self._commission_basis_points = commission_basis_points

    def request_booking(
        self, command: RequestBooking, context: CommandContext
    ) -> Executed[BookingState]:
        customer = require_role(context, "customer")
        check_notes(command.notes)

        def decide(unit: UnitOfWork) -> BookingState:
            kitchen = unit.get(Kitchen, command.kitchen_id, not_found_code="kitchen_not_found")
            booking = booking_decisions.request_booking(
                kitchen,
                customer_id=customer.user_id,
                start_time=command.start_time,
                end_time=command.end_time,
                guests=command.guests,
                notes=command.notes,
                rules=self._jurisdictions.get(kitchen.jurisdiction),
                now=self._clock(),
                parties=unit,
            )
            unit.add(booking)
            return BookingState.of(booking)

        return self._processor.execute(
            "request_booking",
            context,
            command,
            BookingState,
            decide,
            read_ahead=[
                command.kitchen_id,
                account_id_for(customer.user_id),
                *_schedules_claimed(command.kitchen_id, command.start_time, command.end_time),
            ],
        )

    def confirm_booking(
        self, command: BookingAction, context: CommandContext
    ) -> Executed[BookingState]:
        actor = require_role(context, "host")

        def decide(unit: UnitOfWork) -> BookingState:
            booking = _load_booking(unit, command.booking_id, actor, "host")
            booking.confirm(self._clock())
            return BookingState.of(booking)

        return self._processor.execute("confirm_booking", context, command, BookingState, decide)

    def decline_booking(
        self, command: DeclineBooking, context: CommandContext
    ) -> Executed[BookingState]:
        actor = require_role(context, "host")

        def decide(unit: UnitOfWork) -> BookingState:
            booking = _load_booking(unit, command.booking_id, actor, "host")
            booking_decisions.decline_booking(booking, command.reason, parties=unit)
            return BookingState.of(booking)

        return self._processor.execute("decline_booking", context, command, BookingState, decide)

    def cancel_booking(
        self, command: CancelBooking, context: CommandContext
    ) -> Executed[BookingState]:
        actor = require_role(context, "customer", "host")

        def decide(unit: UnitOfWork) -> BookingState:
            booking = _load_booking(unit, command.booking_id, actor, "customer", "host")
            booking_decisions.cancel_booking(
                booking,
                by_role=actor.role,
                reason=command.reason,
                now=self._clock(),
                commission_basis_points=self._commission_basis_points,
                parties=unit,
            )
            return BookingState.of(booking)

        return self._processor.execute("cancel_booking", context, command, BookingState, decide)

    def reschedule_booking(
        self, command: RescheduleBooking, context: CommandContext
    ) -> Executed[BookingState]:
        actor = require_role(context, "customer")

        def decide(unit: UnitOfWork) -> BookingState:
            booking = _load_booking(unit, command.booking_id, actor, "customer")
            kitchen = unit.get(Kitchen, booking.kitchen_id, not_found_code="kitchen_not_found")
            booking_decisions.reschedule_booking(
                booking,
                kitchen,
                start_time=command.start_time,
                end_time=command.end_time,
                rules=self._jurisdictions.get(kitchen.jurisdiction),
                now=self._clock(),
                parties=unit,
            )
            return BookingState.of(booking)

        return self._processor.execute("reschedule_booking", context, command, BookingState, decide)

    def complete_booking(
        self, command: BookingAction, context: CommandContext
    ) -> Executed[BookingState]:
        actor = require_role(context, "host", "admin")

        def decide(unit: UnitOfWork) -> BookingState:
            booking = _load_booking(unit, command.booking_id, actor, "host", "admin")
            booking_decisions.complete_booking(
                booking,
                self._clock(),
                automatically=False,
                commission_basis_points=self._commission_basis_points,
                parties=unit,
            )
            return BookingState.of(booking)

        return self._processor.execute("complete_booking", context, command, BookingState, decide)
