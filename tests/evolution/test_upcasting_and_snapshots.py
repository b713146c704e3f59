"""Schema evolution (a v1 stored event read as v2) and snapshots of long-lived
aggregates, through the real event store on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from aggregates.account import Account
from aggregates.booking import Booking
from aggregates.kitchen import Kitchen
from aggregates.policies import BookingWindow
from aggregates.schedule import KitchenSchedule
from aggregates.user import User
from prep_es.store.eventstore import PrepApplication, open_application
from tests.domain.scenario import (
    BOOKING_START,
    SF,
    attach,
    new_kitchen,
    state_of,
    window,
)
from tests.support import store_settings


@pytest.fixture
def uncached_application(database_url: str) -> Iterator[PrepApplication]:
    app = open_application(store_settings(database_url, aggregate_cache_size=0))
    yield app
    app.close()


def test_user_registered_v1_is_read_as_v2(application: PrepApplication) -> None:
    user_id = uuid4()
    v1_state = {
        "timestamp": "2025-03-01T12:00:00+00:00",
        "originator_topic": "User",
        "metadata": {},
        "email": "old@example.com",
        "name": "Olde Timer",
        "role": "host",
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    }
    application.recorder.insert_events(
        [
            StoredEvent(
                originator_id=user_id,
                originator_version=1,
                topic="User.UserRegistered",
                state=orjson.dumps(v1_state),
            )
        ]
    )

    user = application.repository.get(user_id)

    assert isinstance(user, User)
    assert user.full_name == "Olde Timer"
    assert user.role == "host"
    # New events are stored as v2.
    new_user = User.register(
        email="new@example.com", full_name="New", role="customer", password_hash="x"
    )
    application.save(new_user)
    stored = application.recorder.select_events(new_user.id)[0]
    assert orjson.loads(stored.state)["class_version"] == 2


def test_user_role_changed_v1_is_read_as_a_cut_off_at_its_timestamp(
    application: PrepApplication,
) -> None:
    """A role change recorded before it revoked tokens (v1, no ``changed_at``) replays
    as revoking the tokens issued before it was recorded."""
    user = User.register(
        email=f"{uuid4().hex}@example.com", full_name="Old", role="customer", password_hash="x"
    )
    application.save(user)
    recorded_at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    v1_state = {"timestamp": recorded_at.isoformat(), "metadata": {}, "role": "host"}
    application.recorder.insert_events(
        [
            StoredEvent(
                originator_id=user.id,
                originator_version=2,
                topic="User.UserRoleChanged",
                state=orjson.dumps(v1_state),
            )
        ]
    )

    loaded = application.repository.get(user.id)

    assert isinstance(loaded, User)
    assert loaded.role == "host"
    recorded_at_us = int(recorded_at.timestamp()) * 1_000_000
    assert loaded.token_revoked("before", recorded_at_us - 1)
    assert not loaded.token_revoked("after", recorded_at_us)
    # New role changes are stored as v2, with their time.
    loaded.change_role("customer", at=recorded_at + timedelta(days=1))
    application.save(loaded)
    stored = orjson.loads(application.recorder.select_events(user.id)[-1].state)
    assert stored["class_version"] == 2
    assert datetime.fromisoformat(stored["changed_at"]) == recorded_at + timedelta(days=1)


def test_booking_rescheduled_v1_is_read_with_no_fee_floor(application: PrepApplication) -> None:
    """A reschedule recorded before it locked in a cancellation fee (v1, no
    ``fee_floor_cents``) replays as it meant then: no floor."""
    booking = Booking.request(
        kitchen_id=uuid4(),
        host_id=uuid4(),
        customer_id=uuid4(),
        window=window(BOOKING_START, 2),
        guests=2,
        notes="",
        hourly_rate_cents=5000,
        instant_book=True,
    )
    application.save(booking)
    new_start = BOOKING_START + timedelta(days=70)
    v1_state = {
        "timestamp": "2030-01-13T20:00:00+00:00",
        "metadata": {},
        "start_time": new_start.isoformat(),
        "end_time": (new_start + timedelta(hours=3)).isoformat(),
        "price_cents": 15000,
    }
    application.recorder.insert_events(
        [
            StoredEvent(
                originator_id=booking.id,
                originator_version=2,
                topic="Booking.BookingRescheduled",
                state=orjson.dumps(v1_state),
            )
        ]
    )

    loaded = application.repository.get(booking.id)

    assert isinstance(loaded, Booking)
    assert (loaded.start_time, loaded.price_cents, loaded.fee_floor_cents) == (
        new_start,
        15000,
        0,
    )
    # New reschedules are stored as v2, with the fee they lock in.
    loaded.reschedule(window(BOOKING_START, 2), BOOKING_START - timedelta(hours=30))
    application.save(loaded)
    stored = application.recorder.select_events(booking.id)[-1]
    assert orjson.loads(stored.state)["class_version"] == 2
    assert orjson.loads(stored.state)["fee_floor_cents"] == 0  # 70 days' notice


def test_account_loads_from_its_latest_snapshot(uncached_application: PrepApplication) -> None:
    account = Account(owner_id=uuid4())
    for _ in range(349):
        account.credit_top_up(uuid4(), 1, "pay_snapshot")
    account.place_hold(uuid4(), 7)
    uncached_application.save(account)
    assert account.version == 351

    snapshots = uncached_application.snapshots
    assert snapshots is not None
    latest = list(snapshots.get(account.id, desc=True, limit=1))
    assert [s.originator_version for s in latest] == [300]

    loaded = uncached_application.repository.get(account.id)
    assert isinstance(loaded, Account)
    assert loaded.version == 351
    assert (loaded.balance_cents, loaded.held_cents, loaded.available_cents) == (349, 7, 342)
    assert loaded.holds == account.holds
    assert loaded.created_on == account.created_on


def test_schedule_snapshot_round_trips_exactly(uncached_application: PrepApplication) -> None:
    schedule = KitchenSchedule(kitchen_id=uuid4(), day=date(2030, 1, 7))
    for hour in range(49):
        booking_id = uuid4()
        start = datetime(2030, 1, 7, tzinfo=UTC) + timedelta(hours=hour % 24)
        schedule.claim(booking_id, BookingWindow(start=start, end=start + timedelta(minutes=30)))
        schedule.release(booking_id)
    uncached_application.save(schedule)

    loaded = uncached_application.repository.get(schedule.id)

    assert isinstance(loaded, KitchenSchedule)
    assert vars(loaded) == vars(schedule)


def test_kitchen_loads_from_its_snapshot_exactly(uncached_application: PrepApplication) -> None:
    """A kitchen's state holds UUIDs, dates and certificate objects: its snapshot holds
    them as JSON and gives them back as they were."""
    kitchen = new_kitchen(jurisdiction=SF)
    kinds = sorted(SF.required_certificates)
    for kind in kinds:
        kitchen.verify_certificate(attach(kitchen, kind))
    kitchen.reject_certificate(attach(kitchen, kinds[0]), "Blurred scan")
    kitchen.submit_for_review()
    kitchen.approve()
    uncached_application.save(kitchen)

    snapshots = uncached_application.snapshots
    assert snapshots is not None
    [latest] = snapshots.get(kitchen.id, desc=True, limit=1)
    assert latest.originator_version == kitchen.version - kitchen.version % 5
    loaded = uncached_application.repository.get(kitchen.id)

    assert isinstance(loaded, Kitchen)
    assert state_of(loaded) == state_of(kitchen)


def test_a_kitchen_snapshot_taken_before_edits_were_kept_restores_with_none() -> None:
    kitchen = new_kitchen(jurisdiction=SF)
    kitchen.submit_for_review()
    kitchen.approve()
    stored = Kitchen.Snapshot.take(kitchen).model_dump(mode="json")
    del stored["state"]["changed_since_approval"]

    restored = Kitchen.Snapshot.model_validate(stored).mutate(None)

    assert isinstance(restored, Kitchen)
    assert restored.changed_since_approval == []
    assert state_of(restored) == state_of(kitchen)
