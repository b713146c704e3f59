"""Booking, account and kitchen handlers end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from aggregates.account import Account, account_id_for
from aggregates.booking import Booking
from aggregates.errors import (
    BookingConflict,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidRequest,
    InvalidStateTransition,
    KitchenNotBookable,
    NotFound,
    PermissionDenied,
    StateConflict,
)
from aggregates.schedule import KitchenSchedule
from commands.bookings import (
    BookingAction,
    CancelBooking,
    DeclineBooking,
    RequestBooking,
    RescheduleBooking,
)
from commands.kitchens import KitchenAction, KitchenActionWithReason, UpdateKitchen
from commands.payouts import RequestPayout, SetPayoutDestination
from commands.sweeper import EventStoreAgenda
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    create_user,
    open_test_runtime,
)

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# 17:00 UTC is 09:00 in Los Angeles in January.
IN_A_WEEK = START_OF_TESTS + 7 * DAY


def account(market: Marketplace, user_id: UUID) -> Account:
    found = market.runtime.app.repository.get(account_id_for(user_id))
    assert isinstance(found, Account)
    return found


def booking_of(market: Marketplace, booking_id: UUID) -> Booking:
    found = market.runtime.app.repository.get(booking_id)
    assert isinstance(found, Booking)
    return found


def test_request_holds_the_price_and_claims_the_slot(market: Marketplace) -> None:
    booking = market.request_booking(IN_A_WEEK, hours=3)

    assert booking.status == "pending"
    assert booking.price_cents == 15000
    customer = account(market, market.customer.user_id)
    assert customer.held_cents == 15000
    assert customer.available_cents == 1_000_000 - 15000
    schedule_id = KitchenSchedule.create_id(kitchen_id=market.kitchen_id, day=IN_A_WEEK.date())
    schedule = market.runtime.app.repository.get(schedule_id)
    assert str(booking.id) in schedule.claims


@pytest.mark.postgres
def test_a_booking_reads_what_it_decides_on_in_one_round_trip(
    fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that knows none of them reads the customer, the kitchen, their account
    and the day's schedule (not there yet) together, not one at a time."""
    clock = MutableClock()
    market = build_marketplace(open_test_runtime(fresh_postgres_url, clock), clock)
    cold = open_test_runtime(fresh_postgres_url, clock)
    app = cold.app
    reads: list[list[UUID]] = []
    read_together = app.latest_events_of
    read_one_stream = app.events.get

    def counted_together(ids: list[UUID]) -> Any:
        reads.append(list(ids))
        return read_together(ids)

    def counted_stream(aggregate_id: UUID, **kwargs: Any) -> Any:
        reads.append([aggregate_id])
        return read_one_stream(aggregate_id, **kwargs)

    monkeypatch.setattr(app, "latest_events_of", counted_together)
    monkeypatch.setattr(app.events, "get", counted_stream)
    try:
        booking = cold.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=market.kitchen_id,
                start_time=IN_A_WEEK,
                end_time=IN_A_WEEK + 2 * HOUR,
                guests=2,
            ),
            as_actor(market.customer),
        ).result
        schedule = market.runtime.app.repository.get(
            KitchenSchedule.create_id(kitchen_id=market.kitchen_id, day=IN_A_WEEK.date())
        )
        stored = booking_of(market, booking.id)
    finally:
        cold.close()
        market.runtime.close()

    assert reads == [
        [
            market.customer.user_id,
            market.kitchen_id,
            account_id_for(market.customer.user_id),
            schedule.id,
        ]
    ]
    assert stored.status == "pending"
    assert str(booking.id) in schedule.claims


def test_instant_book_kitchens_confirm_at_once(database_url: str) -> None:
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    market = build_marketplace(runtime, clock, instant_book=True)
    try:
        assert market.request_booking(IN_A_WEEK).status == "confirmed"
    finally:
        runtime.close()


def test_overlap_is_refused_and_adjacent_is_not(market: Marketplace) -> None:
    market.request_booking(IN_A_WEEK, hours=2)
    other = market.add_customer("other@example.com", 100_000)

    with pytest.raises(BookingConflict) as refused:
        market.request_booking(IN_A_WEEK + HOUR, hours=2, customer=other)
    assert refused.value.code == "booking_conflict"
    assert market.request_booking(IN_A_WEEK + 2 * HOUR, customer=other).status == "pending"


def test_insufficient_funds_is_402_and_writes_nothing(market: Marketplace) -> None:
    poor = market.add_customer("poor@example.com", 100)
    position = market.runtime.app.position()

    with pytest.raises(InsufficientFunds) as refused:
        market.request_booking(IN_A_WEEK, customer=poor)

    assert refused.value.code == "insufficient_funds"
    assert market.runtime.app.position() == position


@pytest.mark.parametrize(
    ("start", "hours", "code"),
    [
        (START_OF_TESTS - DAY, 2, "booking_in_past"),
        (IN_A_WEEK + timedelta(minutes=5), 2, "booking_not_aligned"),
        (IN_A_WEEK, 0, "invalid_time_range"),
        (IN_A_WEEK, 17, "booking_too_long"),
    ],
)
def test_window_rules_are_422(market: Marketplace, start: datetime, hours: int, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        market.request_booking(start, hours=hours)
    assert refused.value.code == code


def test_guests_over_capacity_is_422(market: Marketplace) -> None:
    with pytest.raises(InvalidRequest) as refused:
        market.request_booking(IN_A_WEEK, guests=11)
    assert refused.value.code == "guests_over_capacity"


def test_outside_operating_hours_is_409(market: Marketplace) -> None:
    # 13:00 UTC is 05:00 in Los Angeles: 12:00 UTC is an hour before opening.
    early = IN_A_WEEK.replace(hour=12)
    with pytest.raises(KitchenNotBookable) as refused:
        market.request_booking(early)
    assert refused.value.code == "outside_operating_hours"


def test_suspended_kitchen_is_not_bookable(market: Marketplace) -> None:
    market.runtime.commands.kitchens.suspend_kitchen(
        KitchenActionWithReason(kitchen_id=market.kitchen_id, reason="inspection"),
        as_actor(market.admin),
    )
    with pytest.raises(KitchenNotBookable) as refused:
        market.request_booking(IN_A_WEEK)
    assert refused.value.code == "kitchen_not_bookable"


def test_unknown_kitchen_is_404(market: Marketplace) -> None:
    with pytest.raises(NotFound) as refused:
        market.runtime.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=uuid4(), start_time=IN_A_WEEK, end_time=IN_A_WEEK + HOUR, guests=1
            ),
            as_actor(market.customer),
        )
    assert refused.value.code == "kitchen_not_found"


def test_only_customers_request_bookings(market: Marketplace) -> None:
    with pytest.raises(PermissionDenied):
        market.request_booking(IN_A_WEEK, customer=market.host)


def test_rate_change_keeps_existing_prices_and_reschedule_uses_original_rate(
    market: Marketplace,
) -> None:
    booking = market.request_booking(IN_A_WEEK, hours=2)
    market.runtime.commands.kitchens.update_kitchen(
        UpdateKitchen(kitchen_id=market.kitchen_id, hourly_rate_cents=9000),
        as_actor(market.host),
    )
    assert booking_of(market, booking.id).price_cents == 10000

    moved = market.runtime.commands.bookings.reschedule_booking(
        RescheduleBooking(
            booking_id=booking.id, start_time=IN_A_WEEK + DAY, end_time=IN_A_WEEK + DAY + 3 * HOUR
        ),
        as_actor(market.customer),
    ).result
    assert moved.price_cents == 15000
    assert account(market, market.customer.user_id).held_cents == 15000
    old_day = KitchenSchedule.create_id(kitchen_id=market.kitchen_id, day=IN_A_WEEK.date())
    assert str(booking.id) not in market.runtime.app.repository.get(old_day).claims


def test_reschedule_into_another_booking_conflicts(market: Marketplace) -> None:
    first = market.request_booking(IN_A_WEEK, hours=2)
    other = market.add_customer("other@example.com", 100_000)
    market.request_booking(IN_A_WEEK + DAY, customer=other)
    with pytest.raises(BookingConflict):
        market.runtime.commands.bookings.reschedule_booking(
            RescheduleBooking(
                booking_id=first.id, start_time=IN_A_WEEK + DAY, end_time=IN_A_WEEK + DAY + HOUR
            ),
            as_actor(market.customer),
        )


def test_reschedule_needs_funds_for_a_dearer_window(market: Marketplace) -> None:
    poor = market.add_customer("poor@example.com", 10000)
    booking = market.request_booking(IN_A_WEEK, hours=2, customer=poor)
    with pytest.raises(InsufficientFunds):
        market.runtime.commands.bookings.reschedule_booking(
            RescheduleBooking(
                booking_id=booking.id, start_time=IN_A_WEEK, end_time=IN_A_WEEK + 3 * HOUR
            ),
            as_actor(poor),
        )


def test_confirm_decline_by_the_kitchen_host_only(market: Marketplace) -> None:
    bookings = market.runtime.commands.bookings
    first = market.request_booking(IN_A_WEEK)
    second = market.request_booking(IN_A_WEEK + DAY)
    stranger = create_user(market.runtime, "host", "stranger@example.com")

    with pytest.raises(PermissionDenied):
        bookings.confirm_booking(BookingAction(booking_id=first.id), as_actor(stranger))
    confirmed = bookings.confirm_booking(BookingAction(booking_id=first.id), as_actor(market.host))
    assert confirmed.result.status == "confirmed"
    with pytest.raises(InvalidStateTransition):
        bookings.confirm_booking(BookingAction(booking_id=first.id), as_actor(market.host))

    declined = bookings.decline_booking(
        DeclineBooking(booking_id=second.id, reason="closed for cleaning"), as_actor(market.host)
    ).result
    assert declined.status == "declined"
    assert declined.refund is not None
    assert declined.refund.released_cents == second.price_cents
    assert account(market, market.customer.user_id).held_cents == first.price_cents
    # The declined slot is free again.
    assert market.request_booking(IN_A_WEEK + DAY).status == "pending"


@pytest.mark.parametrize(
    ("notice", "captured_share"),
    [(timedelta(hours=48), 0), (timedelta(hours=30), 0.5), (timedelta(hours=23), 1)],
)
def test_customer_cancellation_tiers(
    market: Marketplace, notice: timedelta, captured_share: float
) -> None:
    booking = market.request_booking(IN_A_WEEK, hours=2)
    market.clock.now = IN_A_WEEK - notice

    cancelled = market.runtime.commands.bookings.cancel_booking(
        CancelBooking(booking_id=booking.id, reason="plans changed"), as_actor(market.customer)
    ).result

    captured = int(booking.price_cents * captured_share)
    assert cancelled.refund is not None
    assert cancelled.refund.captured_cents == captured
    assert cancelled.refund.released_cents == booking.price_cents - captured
    commission = captured // 10
    assert account(market, market.host.user_id).balance_cents == captured - commission
    customer = account(market, market.customer.user_id)
    assert customer.balance_cents == 1_000_000 - captured
    assert customer.held_cents == 0


def test_host_cancellation_releases_everything_and_second_cancel_conflicts(
    market: Marketplace,
) -> None:
    bookings = market.runtime.commands.bookings
    booking = market.request_booking(IN_A_WEEK)
    market.clock.now = IN_A_WEEK - HOUR
    cancelled = bookings.cancel_booking(CancelBooking(booking_id=booking.id), as_actor(market.host))
    assert cancelled.result.refund is not None
    assert cancelled.result.refund.captured_cents == 0

    with pytest.raises(StateConflict) as again:
        bookings.cancel_booking(CancelBooking(booking_id=booking.id), as_actor(market.customer))
    assert again.value.code == "already_cancelled"


def test_cannot_cancel_after_start(market: Marketplace) -> None:
    booking = market.request_booking(IN_A_WEEK)
    market.clock.now = IN_A_WEEK + timedelta(minutes=1)
    with pytest.raises(StateConflict) as refused:
        market.runtime.commands.bookings.cancel_booking(
            CancelBooking(booking_id=booking.id), as_actor(market.customer)
        )
    assert refused.value.code == "booking_already_started"


def test_other_customers_cannot_touch_a_booking(market: Marketplace) -> None:
    booking = market.request_booking(IN_A_WEEK)
    other = market.add_customer("other@example.com", 0)
    with pytest.raises(PermissionDenied):
        market.runtime.commands.bookings.cancel_booking(
            CancelBooking(booking_id=booking.id), as_actor(other)
        )


def test_complete_captures_with_commission_after_end(market: Marketplace) -> None:
    bookings = market.runtime.commands.bookings
    booking = market.request_booking(IN_A_WEEK, hours=3)
    bookings.confirm_booking(BookingAction(booking_id=booking.id), as_actor(market.host))
    with pytest.raises(StateConflict) as early:
        bookings.complete_booking(BookingAction(booking_id=booking.id), as_actor(market.host))
    assert early.value.code == "booking_not_ended"

    market.clock.now = IN_A_WEEK + 3 * HOUR
    completed = bookings.complete_booking(
        BookingAction(booking_id=booking.id), as_actor(market.admin)
    ).result

    assert completed.status == "completed"
    assert account(market, market.host.user_id).balance_cents == 13500
    customer = account(market, market.customer.user_id)
    assert (customer.balance_cents, customer.held_cents) == (1_000_000 - 15000, 0)


def test_payout_beyond_available_is_402(market: Marketplace) -> None:
    bookings = market.runtime.commands.bookings
    booking = market.request_booking(IN_A_WEEK)  # 2 hours at 50.00: the host earns 90.00
    bookings.confirm_booking(BookingAction(booking_id=booking.id), as_actor(market.host))
    market.clock.now = IN_A_WEEK + DAY
    bookings.complete_booking(BookingAction(booking_id=booking.id), as_actor(market.host))
    earned = account(market, market.host.user_id).balance_cents
    assert earned == 9000
    payouts = market.runtime.commands.payouts
    payouts.set_payout_destination(
        SetPayoutDestination(destination="bank-of-test"), as_actor(market.host)
    )
    with pytest.raises(InsufficientFunds):
        payouts.request_payout(RequestPayout(amount_cents=earned + 1), as_actor(market.host))
    entry = payouts.request_payout(RequestPayout(amount_cents=earned), as_actor(market.host))
    assert entry.result.account.balance_cents == 0
    with pytest.raises(PermissionDenied):
        payouts.request_payout(RequestPayout(amount_cents=1), as_actor(market.customer))


def test_sweep_expires_pending_and_auto_completes_confirmed(market: Marketplace) -> None:
    bookings = market.runtime.commands.bookings
    pending = market.request_booking(IN_A_WEEK)
    confirmed = market.request_booking(IN_A_WEEK + DAY)
    bookings.confirm_booking(BookingAction(booking_id=confirmed.id), as_actor(market.host))

    market.clock.now = IN_A_WEEK + DAY + 2 * HOUR + 24 * HOUR
    report = market.runtime.commands.sweeper.sweep()

    assert report.expired_booking_ids == [pending.id]
    assert report.completed_booking_ids == [confirmed.id]
    assert booking_of(market, pending.id).status == "expired"
    assert booking_of(market, confirmed.id).status == "completed"
    assert account(market, market.customer.user_id).held_cents == 0
    position = market.runtime.app.position()
    again = market.runtime.commands.sweeper.sweep()
    assert again.expired_booking_ids == again.completed_booking_ids == []
    assert market.runtime.app.position() == position


def test_the_sweep_agenda_follows_confirmations_reschedules_and_cancellations(
    market: Marketplace,
) -> None:
    bookings = market.runtime.commands.bookings
    moved = market.request_booking(IN_A_WEEK)
    confirmed = market.request_booking(IN_A_WEEK + DAY)
    cancelled = market.request_booking(IN_A_WEEK + 2 * DAY)
    bookings.reschedule_booking(
        RescheduleBooking(
            booking_id=moved.id,
            start_time=IN_A_WEEK + 3 * DAY,
            end_time=IN_A_WEEK + 3 * DAY + HOUR,
        ),
        as_actor(market.customer),
    )
    bookings.confirm_booking(BookingAction(booking_id=confirmed.id), as_actor(market.host))
    bookings.cancel_booking(CancelBooking(booking_id=cancelled.id), as_actor(market.customer))
    agenda = EventStoreAgenda(market.runtime.app)
    agenda.catch_up()

    # At a start, and at an end, exactly: due (to the microsecond), not a moment before.
    assert agenda.pending_started(IN_A_WEEK + 3 * DAY - timedelta(microseconds=1)) == []
    assert agenda.pending_started(IN_A_WEEK + 3 * DAY) == [moved.id]
    confirmed_end = IN_A_WEEK + DAY + 2 * HOUR
    assert agenda.confirmed_ended(confirmed_end - timedelta(microseconds=1)) == []
    assert agenda.confirmed_ended(confirmed_end) == [confirmed.id]
    assert agenda.pending_started(IN_A_WEEK + 30 * DAY) == [moved.id]  # not the cancelled


def test_sweep_records_certificate_lapses_once(database_url: str) -> None:
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    try:
        market = build_marketplace(
            runtime, clock, certificates_expire_on=(START_OF_TESTS + 2 * DAY).date()
        )
        with pytest.raises(KitchenNotBookable) as expired:
            market.request_booking(START_OF_TESTS + 3 * DAY)
        assert expired.value.code == "certificate_expired"

        clock.now = START_OF_TESTS + 4 * DAY
        report = runtime.commands.sweeper.sweep()
        assert len(report.lapsed_certificate_ids) == 4
        assert runtime.commands.sweeper.sweep().lapsed_certificate_ids == []
    finally:
        runtime.close()


def test_kitchen_moderation_is_admin_only(market: Marketplace) -> None:
    with pytest.raises(PermissionDenied):
        market.runtime.commands.kitchens.suspend_kitchen(
            KitchenActionWithReason(kitchen_id=market.kitchen_id, reason="x"),
            as_actor(market.host),
        )
    with pytest.raises(InvalidStateTransition):
        market.runtime.commands.kitchens.approve_kitchen(
            KitchenAction(kitchen_id=market.kitchen_id), as_actor(market.admin)
        )


def test_idempotent_request_returns_the_original_and_appends_nothing(market: Marketplace) -> None:
    first = market.request_booking(IN_A_WEEK, idempotency_key="booking-1")
    position = market.runtime.app.position()

    again = market.request_booking(IN_A_WEEK, idempotency_key="booking-1")

    assert again == first
    assert market.runtime.app.position() == position
    with pytest.raises(IdempotencyKeyReused) as reused:
        market.request_booking(IN_A_WEEK + DAY, idempotency_key="booking-1")
    assert reused.value.code == "idempotency_key_reused"


def test_events_carry_actor_request_and_correlation(market: Marketplace) -> None:
    context = as_actor(market.customer, idempotency_key="key-42")
    executed = market.runtime.commands.bookings.request_booking(
        RequestBooking(
            kitchen_id=market.kitchen_id,
            start_time=IN_A_WEEK,
            end_time=IN_A_WEEK + HOUR,
            guests=1,
        ),
        context,
    )
    events = market.runtime.app.events.get(executed.result.id)
    for event in events:
        metadata = event.metadata  # type: ignore[attr-defined]
        assert metadata.actor_id == market.customer.user_id
        assert metadata.actor_role == "customer"
        assert metadata.request_id == context.request_id
        assert metadata.correlation_id == "key-42"
    assert executed.position == market.runtime.app.position()
