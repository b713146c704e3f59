"""Replay safety: folding the events of a scenario into a fresh aggregate reproduces the
state the live aggregate reached, and old histories load whatever today's rules say —
the private ``@event`` methods only assign."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_OID, UUID, uuid5

from aggregates.account import Account, account_id_for
from aggregates.base import DomainEvent
from aggregates.booking import Booking
from aggregates.idempotency import IdempotencyRecord
from aggregates.kitchen import Kitchen
from aggregates.policies import settle
from aggregates.schedule import KitchenSchedule
from aggregates.user import User
from tests.domain.scenario import (
    BOOKING_START,
    CUSTOMER_ID,
    HOST_ID,
    KITCHEN_ID,
    LA,
    NOW,
    attach,
    given,
    new_kitchen,
    state_of,
    window,
)

H = timedelta(hours=1)


def assert_replays(live: Any) -> list[DomainEvent]:
    events: list[DomainEvent] = live.collect_events()
    dumped = [e.model_dump() for e in events]
    first, second = given(*events), given(*events)
    assert state_of(first) == state_of(live)
    assert state_of(second) == state_of(live)
    assert first is not second
    assert [e.model_dump() for e in events] == dumped
    return events


def test_user_replays() -> None:
    user = User.register(email="A@Example.com", full_name="A", role="customer", password_hash="h")
    now = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)
    user.change_role("host", at=now - timedelta(seconds=1))
    user.set_active(False, at=now)
    user.set_active(True, at=now)
    user.change_password("h2", at=now + timedelta(seconds=1))
    for number in range(40):  # beyond the list's bound: the earliest are folded
        user.revoke_token(
            f"token-{number}",
            issued_at_us=int((now.timestamp() + 2 + number) * 1_000_000),
            expires_at_s=int(now.timestamp()) + 3600,
            at=now + timedelta(seconds=60),
        )
    user.set_active(False, at=now + timedelta(seconds=61))
    assert_replays(user)


def test_kitchen_replays() -> None:
    kitchen = new_kitchen()
    kitchen.update(name="Renamed", amenities=["Sink"], instant_book=True, hourly_rate_cents=7000)
    for kind in sorted(LA.required_certificates):
        kitchen.verify_certificate(attach(kitchen, kind, date(2030, 1, 10)))
    rejected = attach(kitchen, "food_handler")
    kitchen.reject_certificate(rejected, "illegible")
    kitchen.submit_for_review()
    kitchen.reject("photos")
    kitchen.submit_for_review()
    kitchen.approve()
    kitchen.suspend("complaint")
    kitchen.reinstate()
    kitchen.lapse_expired_certificates(datetime(2030, 2, 1, tzinfo=UTC), LA)
    events = assert_replays(kitchen)
    replayed = given(*events)
    assert replayed.status == "published"
    assert {c.status for c in replayed.certificates.values()} == {"expired", "rejected"}

    replayed.update(amenities=["Oven", "Sink"])
    assert given(*events).amenities == ["sink"]


def test_booking_replays_through_each_ending() -> None:
    for ending in ("cancel", "complete", "decline", "expire"):
        booking = Booking.request(
            kitchen_id=KITCHEN_ID,
            host_id=HOST_ID,
            customer_id=CUSTOMER_ID,
            window=window(BOOKING_START, 2),
            guests=2,
            notes="n",
            hourly_rate_cents=5001,
            instant_book=False,
        )
        booking.reschedule(window(BOOKING_START + 24 * H, 3), NOW)
        if ending == "decline":
            booking.decline("no")
        elif ending == "expire":
            booking.expire(BOOKING_START + 24 * H)
        else:
            booking.confirm(NOW)
            if ending == "cancel":
                booking.cancel(by_role="customer", reason=None, now=BOOKING_START)
            else:
                booking.complete(BOOKING_START + 27 * H)
        assert_replays(booking)


def test_account_replays() -> None:
    account = Account(owner_id=CUSTOMER_ID)
    holds = [uuid5(NAMESPACE_OID, f"hold-{n}") for n in range(3)]
    account.credit_top_up(uuid5(NAMESPACE_OID, "d"), 50000, "pi_replay")
    for hold in holds:
        account.place_hold(hold, 10000)
    account.adjust_hold(holds[0], 15001)
    account.release_hold(holds[1])
    account.capture_hold(holds[0], settle(15001, 7500, 1000), account_id_for(HOST_ID))
    account.receive_payment(holds[2], account_id_for(UUID(int=9)), 1234)
    account.reserve_payout(uuid5(NAMESPACE_OID, "p"), 100)
    account.post_payout(uuid5(NAMESPACE_OID, "p"))
    account.reserve_payout(uuid5(NAMESPACE_OID, "v"), 200)
    account.void_payout(uuid5(NAMESPACE_OID, "v"), None)
    events = assert_replays(account)
    replayed = given(*events)
    assert (replayed.balance_cents, replayed.held_cents) == (50000 - 7500 + 1234 - 100, 10000)


def test_schedule_replays() -> None:
    schedule = KitchenSchedule(kitchen_id=KITCHEN_ID, day=BOOKING_START.date())
    first, second = UUID(int=1), UUID(int=2)
    schedule.claim(first, window(BOOKING_START, 2))
    schedule.claim(second, window(BOOKING_START + 2 * H, 2))
    schedule.claim(first, window(BOOKING_START - H, 2))
    schedule.release(second)
    assert_replays(schedule)


def test_idempotency_record_replays() -> None:
    assert_replays(IdempotencyRecord(scope="s", key="k", request_hash="h", result={"a": 1}))


def test_history_that_todays_rules_would_refuse_still_loads() -> None:
    kitchen_id = UUID(int=77)
    at = datetime(2020, 1, 1, tzinfo=UTC)
    events: list[DomainEvent] = [
        Kitchen.KitchenCreated(
            originator_id=kitchen_id,
            originator_version=1,
            timestamp=at,
            originator_topic="Kitchen",
            host_id=HOST_ID,
            name="",  # today: invalid_name
            description="",
            city="Los Angeles",
            jurisdiction="los_angeles",
            address="1 Main St",
            hourly_rate_cents=0,  # today: invalid_hourly_rate
            capacity=80,  # today: invalid_capacity
            amenities=[],
            instant_book=False,
        ),
        Kitchen.KitchenApproved(originator_id=kitchen_id, originator_version=2, timestamp=at),
    ]
    kitchen = given(*events)
    assert (kitchen.status, kitchen.capacity, kitchen.name) == ("published", 80, "")

    booking_id = UUID(int=78)
    start = datetime(2020, 1, 2, 10, 7, tzinfo=UTC)  # unaligned, in the past
    booking = given(
        Booking.BookingRequested(
            originator_id=booking_id,
            originator_version=1,
            timestamp=at,
            originator_topic="Booking",
            kitchen_id=kitchen_id,
            host_id=HOST_ID,
            customer_id=CUSTOMER_ID,
            start_time=start,
            end_time=start + timedelta(minutes=20),
            guests=80,
            notes="",
            hourly_rate_cents=0,
            price_cents=0,
            status="pending",
        ),
        Booking.BookingConfirmed(originator_id=booking_id, originator_version=2, timestamp=at),
    )
    assert booking.status == "confirmed"
