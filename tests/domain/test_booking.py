"""Bookings: request, confirm, decline, cancel (fee tiers), reschedule, complete, expire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from aggregates.base import DomainEvent
from aggregates.booking import Booking
from aggregates.errors import InvalidRequest, InvalidStateTransition, StateConflict
from tests.domain.scenario import (
    BOOKING_START,
    CUSTOMER_ID,
    HOST_ID,
    KITCHEN_ID,
    NOW,
    booking_requested,
    confirmed_booking,
    given,
    kitchen_created,
    refused,
    then,
    then_nothing,
    window,
)

H = timedelta(hours=1)
M = timedelta(minutes=1)
END = BOOKING_START + 2 * H


def test_request_is_pending_and_priced_at_the_current_rate() -> None:
    booking = Booking.request(
        kitchen_id=KITCHEN_ID,
        host_id=HOST_ID,
        customer_id=CUSTOMER_ID,
        window=window(BOOKING_START, 1.75),
        guests=4,
        notes="bring aprons",
        hourly_rate_cents=1001,
        instant_book=False,
    )
    then(
        booking,
        (
            Booking.BookingRequested,
            {
                "kitchen_id": KITCHEN_ID,
                "host_id": HOST_ID,
                "customer_id": CUSTOMER_ID,
                "start_time": BOOKING_START,
                "end_time": BOOKING_START + 105 * M,
                "guests": 4,
                "notes": "bring aprons",
                "hourly_rate_cents": 1001,
                "price_cents": 1752,  # 1001 × 105 / 60 = 1751.75 → 1752
                "status": "pending",
            },
        ),
    )
    assert booking.status == "pending"
    assert booking.is_active
    assert booking.window == window(BOOKING_START, 1.75)


def test_instant_book_is_confirmed_at_once() -> None:
    booking = given(*booking_requested(instant_book=True))
    assert booking.status == "confirmed"
    assert booking.price_cents == 10000


# --- confirm / decline ----------------------------------------------------------------


def test_confirm_a_pending_booking_before_start() -> None:
    booking = given(*booking_requested())
    booking.confirm(BOOKING_START - M)
    then(booking, (Booking.BookingConfirmed, {}))
    assert booking.status == "confirmed"


@pytest.mark.parametrize("now", [BOOKING_START, BOOKING_START + H])
def test_confirm_after_start_is_refused(now: datetime) -> None:
    booking = given(*booking_requested())
    with refused(booking, StateConflict, "booking_already_started"):
        booking.confirm(now)


def test_decline_releases_everything() -> None:
    booking = given(*booking_requested())
    booking.decline(" fully booked ")
    then(booking, (Booking.BookingDeclined, {"reason": "fully booked"}))
    assert booking.status == "declined"
    assert booking.released_cents == booking.price_cents == 10000
    assert booking.captured_cents == 0
    assert not booking.is_active


def test_decline_without_a_reason() -> None:
    booking = given(*booking_requested())
    booking.decline(None)
    then(booking, (Booking.BookingDeclined, {"reason": None}))


def test_decline_with_a_blank_reason_is_refused() -> None:
    booking = given(*booking_requested())
    with refused(booking, InvalidRequest, "invalid_reason"):
        booking.decline("  ")


# --- histories in every status ----------------------------------------------------------


def history_in(status: str) -> list[DomainEvent]:
    history = booking_requested()
    booking = given(*history)
    if status in ("confirmed", "completed"):
        booking.confirm(NOW)
    if status == "completed":
        booking.complete(END)
    if status == "declined":
        booking.decline(None)
    if status == "cancelled":
        booking.cancel(by_role="host", reason=None, now=NOW)
    if status == "expired":
        booking.expire(BOOKING_START)
    events: list[DomainEvent] = [*history, *booking.collect_events()]
    assert given(*events).status == status
    return events


Action = Callable[[Booking], Any]
ACTIONS: dict[str, Action] = {
    "confirm": lambda b: b.confirm(NOW),
    "decline": lambda b: b.decline(None),
    "cancel": lambda b: b.cancel(by_role="customer", reason=None, now=NOW),
    "reschedule": lambda b: b.reschedule(window(BOOKING_START + H, 2), NOW),
    "complete": lambda b: b.complete(END + H),
    "expire": lambda b: b.expire(BOOKING_START + H),
}
ALLOWED_FROM = {
    "confirm": ("pending",),
    "decline": ("pending",),
    "cancel": ("pending", "confirmed"),
    "reschedule": ("pending", "confirmed"),
    "complete": ("confirmed",),
    "expire": ("pending",),
}
STATUSES = ("pending", "confirmed", "declined", "cancelled", "expired", "completed")


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (status, action)
        for action, allowed in ALLOWED_FROM.items()
        for status in STATUSES
        if status not in allowed and not (action == "cancel" and status == "cancelled")
    ],
)
def test_invalid_transitions_are_refused(status: str, action: str) -> None:
    booking = given(*history_in(status))
    with refused(booking, InvalidStateTransition, "invalid_state_transition"):
        ACTIONS[action](booking)
    assert booking.status == status


# --- cancel ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "confirmed"])
@pytest.mark.parametrize(
    ("notice", "captured"),
    [
        (timedelta(days=5), 0),
        (48 * H, 0),
        (48 * H - M, 5000),
        (24 * H, 5000),
        (24 * H - M, 10000),
        (M, 10000),
    ],
)
def test_customer_cancel_fee_tiers(status: str, notice: timedelta, captured: int) -> None:
    booking = given(*history_in(status))
    assert booking.cancel(by_role="customer", reason=None, now=BOOKING_START - notice) == captured
    then(
        booking,
        (
            Booking.BookingCancelled,
            {
                "cancelled_by_role": "customer",
                "reason": None,
                "captured_cents": captured,
                "released_cents": 10000 - captured,
            },
        ),
    )
    assert booking.status == "cancelled"
    assert (booking.captured_cents, booking.released_cents) == (captured, 10000 - captured)


def test_half_fee_rounds_down_and_the_remainder_is_released() -> None:
    booking = given(*booking_requested(hours=1, rate_cents=5001))
    assert booking.cancel(by_role="customer", reason=None, now=BOOKING_START - 30 * H) == 2500
    then(
        booking,
        (
            Booking.BookingCancelled,
            {
                "cancelled_by_role": "customer",
                "reason": None,
                "captured_cents": 2500,
                "released_cents": 2501,
            },
        ),
    )


@pytest.mark.parametrize("role", ["host", "admin"])
def test_host_or_admin_cancel_captures_nothing(role: str) -> None:
    booking = given(*confirmed_booking())
    assert booking.cancel(by_role=role, reason=" oven broke ", now=BOOKING_START - M) == 0
    then(
        booking,
        (
            Booking.BookingCancelled,
            {
                "cancelled_by_role": role,
                "reason": "oven broke",
                "captured_cents": 0,
                "released_cents": 10000,
            },
        ),
    )


def test_cancel_twice_is_already_cancelled() -> None:
    booking = given(*history_in("cancelled"))
    with refused(booking, StateConflict, "already_cancelled"):
        booking.cancel(by_role="customer", reason=None, now=NOW)


@pytest.mark.parametrize("status", ["pending", "confirmed"])
@pytest.mark.parametrize("now", [BOOKING_START, BOOKING_START + H, END + H])
def test_cancel_after_start_is_refused(status: str, now: datetime) -> None:
    booking = given(*history_in(status))
    with refused(booking, StateConflict, "booking_already_started"):
        booking.cancel(by_role="customer", reason=None, now=now)


@pytest.mark.parametrize("status", ["pending", "confirmed"])
@pytest.mark.parametrize("role", ["admin", "system"])
def test_an_erasure_cancels_whatever_the_window_and_captures_nothing(
    status: str, role: str
) -> None:
    booking = given(*history_in(status))
    booking.cancel_for_erasure(by_role=role, reason="the host's account was erased")
    then(
        booking,
        (
            Booking.BookingCancelled,
            {
                "cancelled_by_role": role,
                "reason": "the host's account was erased",
                "captured_cents": 0,
                "released_cents": 10000,
            },
        ),
    )


@pytest.mark.parametrize("status", ["cancelled", "declined", "expired", "completed"])
def test_an_erasure_leaves_a_settled_booking_as_it_is(status: str) -> None:
    booking = given(*history_in(status))
    with refused(booking, InvalidStateTransition, "invalid_state_transition"):
        booking.cancel_for_erasure(by_role="admin", reason="the customer's account was erased")


def test_cancel_with_an_overlong_reason_is_refused() -> None:
    booking = given(*booking_requested())
    with refused(booking, InvalidRequest, "invalid_reason"):
        booking.cancel(by_role="customer", reason="x" * 1001, now=NOW)


# --- reschedule -----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "confirmed"])
def test_reschedule_reprices_at_the_original_rate(status: str) -> None:
    history = history_in(status)
    kitchen = given(*kitchen_created())
    kitchen.update(hourly_rate_cents=9000)  # the kitchen's rate changed since the request
    booking = given(*history)
    new_start = BOOKING_START + 24 * H
    booking.reschedule(window(new_start, 3.25), NOW)
    then(
        booking,
        (
            Booking.BookingRescheduled,
            {
                "start_time": new_start,
                "end_time": new_start + 195 * M,
                "price_cents": 16250,
                "fee_floor_cents": 0,  # a week's notice: cancelling now costs nothing
            },
        ),
    )
    assert booking.hourly_rate_cents == 5000
    assert booking.price_cents == 16250
    assert booking.status == status
    assert (booking.start_time, booking.end_time) == (new_start, new_start + 195 * M)


def test_reschedule_to_the_same_window_records_nothing() -> None:
    booking = given(*confirmed_booking())
    booking.reschedule(booking.window, NOW)
    then(booking)


@pytest.mark.parametrize("now", [BOOKING_START, BOOKING_START + M])
def test_reschedule_after_start_is_refused(now: datetime) -> None:
    booking = given(*confirmed_booking())
    with refused(booking, StateConflict, "booking_already_started"):
        booking.reschedule(window(BOOKING_START + 24 * H, 2), now)


# --- rescheduling never lowers the cancellation fee ------------------------------------


@pytest.mark.parametrize("status", ["pending", "confirmed"])
def test_a_reschedule_inside_the_fee_window_locks_the_fee_in(status: str) -> None:
    """19.5 h ahead a cancellation captures everything; moving the booking 70 days
    away first must not make it free."""
    booking = given(*history_in(status))
    now = BOOKING_START - 19 * H - 30 * M
    new_start = BOOKING_START + 70 * 24 * H
    booking.reschedule(window(new_start, 2), now)
    then(
        booking,
        (
            Booking.BookingRescheduled,
            {
                "start_time": new_start,
                "end_time": new_start + 2 * H,
                "price_cents": 10000,
                "fee_floor_cents": 10000,
            },
        ),
    )
    assert booking.cancel(by_role="customer", reason=None, now=now + M) == 10000
    then(
        booking,
        (
            Booking.BookingCancelled,
            {
                "cancelled_by_role": "customer",
                "reason": None,
                "captured_cents": 10000,
                "released_cents": 0,
            },
        ),
    )


def test_the_locked_in_fee_is_kept_through_later_reschedules() -> None:
    booking = given(*confirmed_booking())
    booking.reschedule(window(BOOKING_START + 24 * H, 3), BOOKING_START - 30 * H)
    assert booking.fee_floor_cents == 5000  # half of the 2 h price, 24–48 h ahead
    # Far ahead of the new start, with the floor from before: still 5000.
    booking.reschedule(window(BOOKING_START + 48 * H, 4), BOOKING_START - 29 * H)
    assert booking.fee_floor_cents == 5000
    assert booking.cancel(by_role="customer", reason=None, now=BOOKING_START - 28 * H) == 5000


def test_a_fee_by_notice_above_the_locked_in_fee_is_what_a_cancel_captures() -> None:
    booking = given(*confirmed_booking())
    later_start = BOOKING_START + 24 * H
    booking.reschedule(window(later_start, 4), BOOKING_START - 30 * H)  # floor: 5000
    assert booking.cancel(by_role="customer", reason=None, now=later_start - 10 * H) == 20000


def test_a_reschedule_priced_below_the_locked_in_fee_is_refused() -> None:
    booking = given(*confirmed_booking(hours=4))  # 20000, all of it captured < 24 h ahead
    with refused(booking, StateConflict, "reschedule_below_fee"):
        booking.reschedule(window(BOOKING_START + 24 * H, 3), BOOKING_START - 10 * H)
    booking.reschedule(window(BOOKING_START + 24 * H, 4), BOOKING_START - 10 * H)
    assert booking.fee_floor_cents == booking.price_cents == 20000


def test_a_reschedule_with_free_notice_locks_nothing_in() -> None:
    booking = given(*confirmed_booking(hours=4))
    booking.reschedule(window(BOOKING_START + 24 * H, 1), BOOKING_START - 48 * H)
    assert (booking.price_cents, booking.fee_floor_cents) == (5000, 0)
    assert booking.cancel(by_role="customer", reason=None, now=BOOKING_START - 47 * H) == 0


@pytest.mark.parametrize("role", ["host", "admin"])
def test_a_locked_in_fee_never_charges_a_cancel_by_the_host(role: str) -> None:
    booking = given(*confirmed_booking())
    booking.reschedule(window(BOOKING_START + 70 * 24 * H, 2), BOOKING_START - 10 * H)
    assert booking.cancel(by_role=role, reason="oven broke", now=BOOKING_START) == 0
    assert (booking.captured_cents, booking.released_cents) == (0, 10000)


def test_a_reschedule_recorded_before_the_rule_replays_with_no_floor() -> None:
    history = confirmed_booking()
    booking = given(*history)
    booking.reschedule(window(BOOKING_START + 24 * H, 2), BOOKING_START - 10 * H)
    (rescheduled,) = booking.collect_events()
    stored_v1 = rescheduled.model_dump(mode="json", exclude={"fee_floor_cents"})
    Booking.BookingRescheduled.upcast_v1_v2(stored_v1)
    replayed = given(*history, Booking.BookingRescheduled.model_validate(stored_v1))
    assert replayed.fee_floor_cents == 0
    assert replayed.start_time == BOOKING_START + 24 * H


# --- complete / expire ----------------------------------------------------------------


@pytest.mark.parametrize("automatically", [False, True])
def test_complete_a_confirmed_booking_after_its_end(automatically: bool) -> None:
    booking = given(*confirmed_booking())
    booking.complete(END, automatically=automatically)
    then(booking, (Booking.BookingCompleted, {"automatically": automatically}))
    assert booking.status == "completed"
    assert booking.captured_cents == 10000
    assert booking.released_cents == 0


@pytest.mark.parametrize("now", [NOW, BOOKING_START, END - M])
def test_complete_before_the_end_is_refused(now: datetime) -> None:
    booking = given(*confirmed_booking())
    with refused(booking, StateConflict, "booking_not_ended"):
        booking.complete(now)


def test_expire_a_pending_booking_at_its_start() -> None:
    booking = given(*booking_requested())
    booking.expire(BOOKING_START)
    then(booking, (Booking.BookingExpired, {}))
    assert booking.status == "expired"
    assert booking.released_cents == 10000
    assert booking.captured_cents == 0


def test_kitchen_rate_change_does_not_touch_an_existing_booking() -> None:
    history = booking_requested()
    kitchen = given(*kitchen_created())
    kitchen.update(hourly_rate_cents=1)
    then(kitchen, (type(kitchen).KitchenUpdated, {"hourly_rate_cents": 1}))
    booking = given(*history)
    assert (booking.hourly_rate_cents, booking.price_cents) == (5000, 10000)
    then_nothing(booking)
