"""Bookings of a kitchen by a customer, and their lifecycle.

    pending ──confirm──▶ confirmed ──complete──▶ completed
       │ ├──decline──▶ declined        │
       │ └──expire───▶ expired         │
       └──────────cancel───────────────┴──▶ cancelled

(A forced erasure of its host or customer cancels an active booking whatever its
window: ``Booking.cancel_for_erasure``.)

The booking's money is a hold on the customer's account (``Account``); every way out
of pending/confirmed settles that hold exactly once. The decisions that move the
booking together with its kitchen's schedules and those accounts are in
``aggregates.booking_decisions``; the methods here decide the booking alone.

Rescheduling can never lower what a customer's cancellation costs: each reschedule
locks in the fee a cancellation at that moment would have captured
(``fee_floor_cents``); a later customer cancellation captures the greater of that and
the fee its own notice calls for, and a reschedule that would price the booking below
the locked-in fee is refused (the hold, which is the price, must still cover it).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated
from aggregates.errors import InvalidStateTransition, StateConflict
from aggregates.personal import Personal
from aggregates.policies import (
    BookingWindow,
    HoldSplit,
    captured_in_full,
    customer_cancellation_fee_cents,
    format_money,
    price_cents,
    released_in_full,
)
from aggregates.text import check_reason


class BookingStatus(StrEnum):
    """Where a booking is in its lifecycle (see the module's diagram). The values are
    what events, read models and the API carry."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    COMPLETED = "completed"


ACTIVE_STATUSES = (BookingStatus.PENDING, BookingStatus.CONFIRMED)
"""A booking in these holds its slots and its hold; every other status is final."""
BOOKING_STATUSES = tuple(BookingStatus)


class Booking(Aggregate):
    """One customer's booking of one kitchen for one window."""

    TOPIC: ClassVar[str] = "Booking"

    class Event(Aggregate.Event):
        pass

    class BookingRequested(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "Booking.BookingRequested"
        PERSONAL_SUBJECT: ClassVar[str] = "customer_id"
        kitchen_id: UUID
        host_id: UUID
        customer_id: UUID
        start_time: datetime
        end_time: datetime
        guests: int
        notes: Personal[str]
        hourly_rate_cents: int
        price_cents: int
        status: str

    class BookingConfirmed(Event):
        TOPIC: ClassVar[str] = "Booking.BookingConfirmed"

    class BookingDeclined(Event):
        TOPIC: ClassVar[str] = "Booking.BookingDeclined"
        reason: Personal[str] | None

    class BookingCancelled(Event):
        TOPIC: ClassVar[str] = "Booking.BookingCancelled"
        cancelled_by_role: str
        reason: Personal[str] | None
        captured_cents: int
        released_cents: int

    class BookingRescheduled(Event):
        """v2 added ``fee_floor_cents``: the least a customer's cancellation captures from
        then on. A v1 event (recorded before the rule) is read with a floor of 0, what
        it meant then."""

        TOPIC: ClassVar[str] = "Booking.BookingRescheduled"
        class_version: ClassVar[int] = 2
        start_time: datetime
        end_time: datetime
        price_cents: int
        fee_floor_cents: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["fee_floor_cents"] = 0

    class BookingCompleted(Event):
        TOPIC: ClassVar[str] = "Booking.BookingCompleted"
        automatically: bool

    class BookingExpired(Event):
        TOPIC: ClassVar[str] = "Booking.BookingExpired"

    @event(BookingRequested)
    def __init__(
        self,
        kitchen_id: UUID,
        host_id: UUID,
        customer_id: UUID,
        start_time: datetime,
        end_time: datetime,
        guests: int,
        notes: str,
        hourly_rate_cents: int,
        price_cents: int,
        status: str,
    ) -> None:
        self.kitchen_id = kitchen_id
        self.host_id = host_id
        self.customer_id = customer_id
        self.start_time = start_time
        self.end_time = end_time
        self.guests = guests
        self.notes: str | None = notes
        """None once its customer is erased (their data key destroyed)."""
        self.hourly_rate_cents = hourly_rate_cents
        self.price_cents = price_cents
        self.status = BookingStatus(status)
        self.captured_cents = 0
        self.released_cents = 0
        self.fee_floor_cents = 0

    @classmethod
    def request(
        cls,
        *,
        kitchen_id: UUID,
        host_id: UUID,
        customer_id: UUID,
        window: BookingWindow,
        guests: int,
        notes: str,
        hourly_rate_cents: int,
        instant_book: bool,
    ) -> Booking:
        """A new booking, priced at the kitchen's current rate, recorded as it is: the
        window, the guests and the kitchen's bookability are checked, and the slots
        and the hold taken, by ``booking_decisions.request_booking``, which calls this."""
        return cls(
            kitchen_id=kitchen_id,
            host_id=host_id,
            customer_id=customer_id,
            start_time=window.start,
            end_time=window.end,
            guests=guests,
            notes=notes,
            hourly_rate_cents=hourly_rate_cents,
            price_cents=price_cents(hourly_rate_cents, window.minutes),
            status=BookingStatus.CONFIRMED if instant_book else BookingStatus.PENDING,
        )

    @property
    def window(self) -> BookingWindow:
        return BookingWindow(start=self.start_time, end=self.end_time)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def _check_status(self, action: str, *allowed: str) -> None:
        if self.status not in allowed:
            raise InvalidStateTransition(
                f"cannot {action} a booking that is {self.status}"
                f" (allowed from: {', '.join(allowed)})"
            )

    def _check_not_started(self, action: str, now: datetime) -> None:
        if now >= self.start_time:
            raise StateConflict(
                f"cannot {action} a booking that has started", code="booking_already_started"
            )

    def confirm(self, now: datetime) -> None:
        self._check_status("confirm", BookingStatus.PENDING)
        self._check_not_started("confirm", now)
        self._confirmed()

    def decline(self, reason: str | None) -> None:
        self._check_status("decline", BookingStatus.PENDING)
        self._declined(reason=None if reason is None else check_reason(reason))

    def cancellation_fee_cents(self, now: datetime) -> int:
        """What the customer's cancellation at ``now`` would capture: the fee its notice
        calls for, never less than the fee a reschedule locked in."""
        return customer_cancellation_fee_cents(
            self.price_cents, self.start_time, now, fee_floor_cents=self.fee_floor_cents
        )

    def cancel(self, *, by_role: str, reason: str | None, now: datetime) -> int:
        """Cancel, and return the cents to capture from the hold: a host releases
        everything; a customer pays a fee by notice (see policies), at least the fee a
        reschedule locked in."""
        if self.status == BookingStatus.CANCELLED:
            raise StateConflict("the booking is already cancelled", code="already_cancelled")
        self._check_status("cancel", *ACTIVE_STATUSES)
        self._check_not_started("cancel", now)
        assert by_role in ("customer", "host", "admin")
        captured = self.cancellation_fee_cents(now) if by_role == "customer" else 0
        self._cancelled(
            cancelled_by_role=by_role,
            reason=None if reason is None else check_reason(reason),
            captured_cents=captured,
            released_cents=self.price_cents - captured,
        )
        return captured

    def cancel_for_erasure(self, *, by_role: str, reason: str) -> None:
        """The erasure of the booking's host or customer cancels it: an admin's forced
        erasure (``by_role`` "admin"), or the sweeper (``"system"``) for one an erasure
        missed. Nobody can settle it with the erased person any more. Whatever its
        window — started, even ended — nothing is captured: the whole hold is released,
        as when a host cancels."""
        self._check_status("cancel", *ACTIVE_STATUSES)
        assert by_role in ("admin", "system")
        self._cancelled(
            cancelled_by_role=by_role,
            reason=check_reason(reason),
            captured_cents=0,
            released_cents=self.price_cents,
        )

    def reschedule(self, window: BookingWindow, now: datetime) -> None:
        """Move to ``window``, re-priced at the booking's original rate, locking in the
        fee a customer's cancellation now would capture: the customer cannot reschedule
        their way out of it. A window priced below that fee is refused, since the hold
        (the new price) could not pay it. The new window and the kitchen's bookability
        are checked, and the slots and the hold moved, by
        ``booking_decisions.reschedule_booking``, which calls this."""
        self._check_status("reschedule", *ACTIVE_STATUSES)
        self._check_not_started("reschedule", now)
        if window == self.window:
            return
        fee_floor = self.cancellation_fee_cents(now)
        new_price = price_cents(self.hourly_rate_cents, window.minutes)
        if new_price < fee_floor:
            raise StateConflict(
                f"cancelling now would cost {format_money(fee_floor)}, more than the new "
                f"window's price of {format_money(new_price)}: choose a window that costs at "
                "least that",
                code="reschedule_below_fee",
            )
        self._rescheduled(
            start_time=window.start,
            end_time=window.end,
            price_cents=new_price,
            fee_floor_cents=fee_floor,
        )

    def complete(self, now: datetime, *, automatically: bool = False) -> None:
        self._check_status("complete", BookingStatus.CONFIRMED)
        if now < self.end_time:
            raise StateConflict("a booking completes after it ends", code="booking_not_ended")
        self._completed(automatically=automatically)

    def expire(self, now: datetime) -> None:
        self._check_status("expire", BookingStatus.PENDING)
        assert now >= self.start_time, "a pending booking expires at its start"
        self._expired()

    @event(BookingConfirmed)
    def _confirmed(self) -> None:
        self.status = BookingStatus.CONFIRMED

    @event(BookingDeclined)
    def _declined(self, reason: str | None) -> None:
        self.status = BookingStatus.DECLINED
        self._settled(released_in_full(self.price_cents))

    @event(BookingCancelled)
    def _cancelled(
        self, cancelled_by_role: str, reason: str | None, captured_cents: int, released_cents: int
    ) -> None:
        self.status = BookingStatus.CANCELLED
        self.captured_cents = captured_cents
        self.released_cents = released_cents

    @event(BookingRescheduled)
    def _rescheduled(
        self, start_time: datetime, end_time: datetime, price_cents: int, fee_floor_cents: int
    ) -> None:
        self.start_time = start_time
        self.end_time = end_time
        self.price_cents = price_cents
        self.fee_floor_cents = fee_floor_cents

    @event(BookingCompleted)
    def _completed(self, automatically: bool) -> None:
        self.status = BookingStatus.COMPLETED
        self._settled(captured_in_full(self.price_cents))

    @event(BookingExpired)
    def _expired(self) -> None:
        self.status = BookingStatus.EXPIRED
        self._settled(released_in_full(self.price_cents))

    def _settled(self, split: HoldSplit) -> None:
        self.captured_cents = split.captured_cents
        self.released_cents = split.released_cents
