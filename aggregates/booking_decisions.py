"""What each booking command decides, across every aggregate a booking moves.

A booking is more than itself: its window is claimed on its kitchen's day schedules
(``KitchenSchedule``: no double booking), its price is held on the customer's account,
and every way out of pending/confirmed frees its slots and settles that hold once,
released to the customer or captured for the host. Each function here makes one such
decision whole, from the booking (or kitchen) its handler loaded, the kitchen's
jurisdiction rules and the time; the handler loads, calls one function, saves.

Which other aggregates a decision touches depends on what it decides (the days of the
window the checks accepted; the host's account only when a fee is captured), so it asks
for them through :class:`BookingParties`, in the order it needs them, and never for one
it does not need. The command side's unit of work provides them; nothing here does I/O.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol
from uuid import UUID

from aggregates.account import Account
from aggregates.booking import Booking, BookingStatus
from aggregates.jurisdictions import JurisdictionRules
from aggregates.kitchen import Kitchen
from aggregates.policies import BookingWindow, booking_window, check_guests, settle
from aggregates.schedule import KitchenSchedule


class BookingParties(Protocol):
    """The aggregates besides the booking that its decisions change."""

    def schedule(self, kitchen_id: UUID, day: date) -> KitchenSchedule:
        """The kitchen's schedule for the UTC ``day`` (opened if it has none yet)."""

    def account_of(self, user_id: UUID) -> Account:
        """The account of ``user_id`` (every user has one)."""


def checked_window(
    kitchen: Kitchen,
    start_time: datetime,
    end_time: datetime,
    guests: int,
    *,
    rules: JurisdictionRules,
    now: datetime,
) -> BookingWindow:
    """The checks every new window passes, booking or reschedule: its shape and the
    guests first (``InvalidRequest``), then whether the kitchen can take it
    (``KitchenNotBookable``)."""
    window = booking_window(start_time, end_time, now=now, rules=rules)
    check_guests(guests, kitchen.capacity)
    kitchen.check_bookable(window, rules)
    return window


def request_booking(
    kitchen: Kitchen,
    *,
    customer_id: UUID,
    start_time: datetime,
    end_time: datetime,
    guests: int,
    notes: str,
    rules: JurisdictionRules,
    now: datetime,
    parties: BookingParties,
) -> Booking:
    """A new booking of ``kitchen`` at its current rate, once the window passes the
    checks: its window claimed on every day it touches (``BookingConflict`` if taken)
    and its price held on the customer's account (``InsufficientFunds``)."""
    window = checked_window(kitchen, start_time, end_time, guests, rules=rules, now=now)
    booking = Booking.request(
        kitchen_id=kitchen.id,
        host_id=kitchen.host_id,
        customer_id=customer_id,
        window=window,
        guests=guests,
        notes=notes,
        hourly_rate_cents=kitchen.hourly_rate_cents,
        instant_book=kitchen.instant_book,
    )
    for day in window.days():
        parties.schedule(kitchen.id, day).claim(booking.id, window)
    parties.account_of(customer_id).place_hold(booking.id, booking.price_cents)
    return booking


def reschedule_booking(
    booking: Booking,
    kitchen: Kitchen,
    *,
    start_time: datetime,
    end_time: datetime,
    rules: JurisdictionRules,
    now: datetime,
    parties: BookingParties,
) -> None:
    """Move ``booking`` of ``kitchen`` to a new window that passes the checks (see
    ``Booking.reschedule`` for the price and the fee it locks in): days it no longer
    touches are freed, the new window claimed, the hold set to the new price."""
    assert kitchen.id == booking.kitchen_id
    old_days = set(booking.window.days())
    window = checked_window(kitchen, start_time, end_time, booking.guests, rules=rules, now=now)
    booking.reschedule(window, now)
    for day in old_days - set(window.days()):
        parties.schedule(booking.kitchen_id, day).release(booking.id)
    for day in window.days():
        parties.schedule(booking.kitchen_id, day).claim(booking.id, window)
    parties.account_of(booking.customer_id).adjust_hold(booking.id, booking.price_cents)


def decline_booking(booking: Booking, reason: str | None, *, parties: BookingParties) -> None:
    """The host declines: the slots are freed and the whole hold released."""
    booking.decline(reason)
    _release(booking, parties)


def cancel_booking(
    booking: Booking,
    *,
    by_role: str,
    reason: str | None,
    now: datetime,
    commission_basis_points: int,
    parties: BookingParties,
) -> None:
    """Cancel: the slots are freed; the fee ``Booking.cancel`` calls for is captured for
    the host, and the rest released (all of it when there is no fee)."""
    captured_cents = booking.cancel(by_role=by_role, reason=reason, now=now)
    if captured_cents:
        _capture(booking, captured_cents, commission_basis_points, parties)
    else:
        _release(booking, parties)


def cancel_for_erasure(
    booking: Booking, *, by_role: str, reason: str, parties: BookingParties
) -> None:
    """The erasure of the booking's host or customer cancels it: the slots are freed
    and the whole hold released (see ``Booking.cancel_for_erasure``)."""
    booking.cancel_for_erasure(by_role=by_role, reason=reason)
    _release(booking, parties)


def complete_booking(
    booking: Booking,
    now: datetime,
    *,
    automatically: bool,
    commission_basis_points: int,
    parties: BookingParties,
) -> None:
    """Complete (by a person, or the sweeper once it is due): the whole hold is
    captured for the host, less the commission; the slots stay taken."""
    booking.complete(now, automatically=automatically)
    _capture(booking, booking.price_cents, commission_basis_points, parties)


def expire_booking(booking: Booking, now: datetime, *, parties: BookingParties) -> None:
    """A pending booking reached its start unconfirmed: the slots are freed and the
    whole hold released."""
    booking.expire(now)
    _release(booking, parties)


def _release(booking: Booking, parties: BookingParties) -> None:
    """Free the booking's slots and give its whole hold back to the customer."""
    for day in booking.window.days():
        parties.schedule(booking.kitchen_id, day).release(booking.id)
    parties.account_of(booking.customer_id).release_hold(booking.id)


def _capture(
    booking: Booking, captured_cents: int, commission_basis_points: int, parties: BookingParties
) -> None:
    """Settle the hold: ``captured_cents`` to the host less commission, the rest
    released. A cancelled booking's slots are freed; a completed one's stay."""
    if booking.status == BookingStatus.CANCELLED:
        for day in booking.window.days():
            parties.schedule(booking.kitchen_id, day).release(booking.id)
    customer_account = parties.account_of(booking.customer_id)
    host_account = parties.account_of(booking.host_id)
    settlement = settle(booking.price_cents, captured_cents, commission_basis_points)
    customer_account.capture_hold(booking.id, settlement, payee_account_id=host_account.id)
    host_account.receive_payment(
        booking.id,
        payer_account_id=customer_account.id,
        amount_cents=settlement.host_share_cents,
    )
