"""Booking decisions across aggregates: the booking, its kitchen's day schedules and the
accounts its hold moves, over parties held in memory."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

import pytest

from aggregates import booking_decisions
from aggregates.account import Account
from aggregates.booking import Booking, BookingStatus
from aggregates.errors import BookingConflict, InvalidRequest, KitchenNotBookable
from aggregates.kitchen import Kitchen
from aggregates.schedule import KitchenSchedule
from tests.domain.scenario import (
    BOOKING_START,
    CUSTOMER_ID,
    HOST_ID,
    LA,
    NOW,
    RATE_CENTS,
    compliant_kitchen,
    funded_account,
    given,
    then,
)

H = timedelta(hours=1)
COMMISSION_BASIS_POINTS = 1000
PRICE_CENTS = 2 * RATE_CENTS


class Parties:
    """``BookingParties`` over aggregates in memory, noting each one asked for."""

    def __init__(self, *accounts: Account) -> None:
        self.accounts = {UUID(account.owner_id): account for account in accounts}
        self.schedules: dict[tuple[UUID, date], KitchenSchedule] = {}
        self.asked: list[tuple[str, object]] = []

    def schedule(self, kitchen_id: UUID, day: date) -> KitchenSchedule:
        self.asked.append(("schedule", day))
        key = (kitchen_id, day)
        if key not in self.schedules:
            self.schedules[key] = KitchenSchedule(kitchen_id=kitchen_id, day=day)
        return self.schedules[key]

    def account_of(self, user_id: UUID) -> Account:
        self.asked.append(("account", user_id))
        return self.accounts[user_id]


def kitchen() -> Kitchen:
    found: Kitchen = given(*compliant_kitchen())
    return found


def parties() -> Parties:
    host_account = Account(owner_id=HOST_ID)
    return Parties(given(*funded_account()), given(*host_account.collect_events()))


def request(
    of: Kitchen, into: Parties, *, guests: int = 2, start: datetime = BOOKING_START
) -> Booking:
    return booking_decisions.request_booking(
        of,
        customer_id=CUSTOMER_ID,
        start_time=start,
        end_time=start + 2 * H,
        guests=guests,
        notes="",
        rules=LA,
        now=NOW,
        parties=into,
    )


def test_a_request_claims_its_day_and_holds_its_price() -> None:
    listed, held = kitchen(), parties()
    booking = request(listed, held)
    assert booking.status == BookingStatus.PENDING
    assert booking.price_cents == PRICE_CENTS
    (schedule,) = held.schedules.values()
    then(
        schedule,
        (KitchenSchedule.ScheduleOpened, {"kitchen_id": listed.id, "day": BOOKING_START.date()}),
        (
            KitchenSchedule.SlotClaimed,
            {
                "booking_id": booking.id,
                "start_time": BOOKING_START,
                "end_time": BOOKING_START + 2 * H,
            },
        ),
    )
    then(
        held.accounts[CUSTOMER_ID],
        (Account.HoldPlaced, {"hold_id": booking.id, "amount_cents": PRICE_CENTS}),
    )


def test_a_request_checks_its_window_and_guests_before_asking_for_anything() -> None:
    listed, held = kitchen(), parties()
    with pytest.raises(InvalidRequest) as refused:
        request(listed, held, guests=11)
    assert refused.value.code == "guests_over_capacity"
    assert held.asked == []


def test_an_unpublished_kitchen_takes_no_booking() -> None:
    unpublished: Kitchen = given(*compliant_kitchen(published=False))
    held = parties()
    with pytest.raises(KitchenNotBookable):
        request(unpublished, held)
    assert held.asked == []


def test_a_window_taken_is_refused_before_the_account_is_asked_for() -> None:
    listed, held = kitchen(), parties()
    request(listed, held)
    held.asked.clear()
    with pytest.raises(BookingConflict):
        request(listed, held, start=BOOKING_START + H)
    assert held.asked == [("schedule", BOOKING_START.date())]


def test_a_hosts_cancellation_releases_everything_without_the_hosts_account() -> None:
    listed, held = kitchen(), parties()
    booking = request(listed, held)
    for aggregate in (booking, *held.schedules.values(), *held.accounts.values()):
        aggregate.collect_events()
    held.asked.clear()
    booking_decisions.cancel_booking(
        booking,
        by_role="host",
        reason=None,
        now=NOW,
        commission_basis_points=COMMISSION_BASIS_POINTS,
        parties=held,
    )
    assert ("account", HOST_ID) not in held.asked
    then(
        held.accounts[CUSTOMER_ID],
        (Account.HoldReleased, {"hold_id": booking.id, "amount_cents": PRICE_CENTS}),
    )
    (schedule,) = held.schedules.values()
    then(schedule, (KitchenSchedule.SlotReleased, {"booking_id": booking.id}))


def test_a_completion_pays_the_host_less_commission_and_keeps_the_slot() -> None:
    listed, held = kitchen(), parties()
    booking = request(listed, held)
    booking.confirm(NOW)
    for aggregate in (booking, *held.schedules.values(), *held.accounts.values()):
        aggregate.collect_events()
    booking_decisions.complete_booking(
        booking,
        BOOKING_START + 2 * H,
        automatically=True,
        commission_basis_points=COMMISSION_BASIS_POINTS,
        parties=held,
    )
    customer, host = held.accounts[CUSTOMER_ID], held.accounts[HOST_ID]
    then(
        customer,
        (
            Account.HoldCaptured,
            {
                "hold_id": booking.id,
                "captured_cents": PRICE_CENTS,
                "released_cents": 0,
                "payee_account_id": host.id,
                "payee_cents": PRICE_CENTS - PRICE_CENTS // 10,
                "commission_cents": PRICE_CENTS // 10,
            },
        ),
    )
    then(
        host,
        (
            Account.PaymentReceived,
            {
                "hold_id": booking.id,
                "payer_account_id": customer.id,
                "amount_cents": PRICE_CENTS - PRICE_CENTS // 10,
            },
        ),
    )
    (schedule,) = held.schedules.values()
    assert schedule.collect_events() == []
