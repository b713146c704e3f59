"""The sweeper after PostgreSQL restarts, and while it is down: it sweeps again within
seconds, not a sweep interval later (finding: ten failures in a row, one per pooled
connection, each followed by a whole interval)."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from aggregates.booking import Booking
from prep_es.services.container import SweeperThread, locked_sweeper
from prep_es.services.runtime import Runtime
from prep_es.store.eventstore import open_application
from tests.faults.conftest import StopMode, ThrowawayPostgres
from tests.support import (
    START_OF_TESTS,
    MutableClock,
    build_marketplace,
    open_test_runtime,
    store_settings,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres

SWEEP_INTERVAL_S = 120.0
"""Far longer than the test waits: only a prompt retry can pass it."""
EXPIRED_WITHIN_S = 20.0
SLOT = START_OF_TESTS + timedelta(days=3)


@pytest.fixture
def database_url(throwaway_postgres: ThrowawayPostgres) -> str:
    return throwaway_postgres.create_database(f"sweeper_{secrets.token_hex(4)}")


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def runtime(database_url: str, clock: MutableClock) -> Iterator[Runtime]:
    opened = open_test_runtime(database_url, clock)
    yield opened
    opened.close()


def due_booking(runtime: Runtime, clock: MutableClock) -> UUID:
    """A pending booking whose start ``clock`` (the runtime's) has reached."""
    market = build_marketplace(runtime, clock)
    booking = market.request_booking(SLOT)
    assert booking.status == "pending"
    clock.now = SLOT + timedelta(minutes=1)
    return booking.id


def wait_until_expired(database_url: str, booking_id: UUID, sweeper: SweeperThread) -> float:
    """Seconds until the booking is expired in the store (fails after ``EXPIRED_WITHIN_S``)."""
    started = time.monotonic()
    reader = open_application(store_settings(database_url))

    def expired() -> bool:
        booking = reader.repository.get(booking_id)
        assert isinstance(booking, Booking)
        return booking.status == "expired"

    try:
        wait_until(expired, EXPIRED_WITHIN_S, "the booking expired")
        return time.monotonic() - started
    finally:
        reader.close()
        sweeper.stop()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_the_sweeper_sweeps_at_once_after_a_restart(
    throwaway_postgres: ThrowawayPostgres,
    database_url: str,
    runtime: Runtime,
    clock: MutableClock,
    mode: StopMode,
) -> None:
    """Every connection the runtime's pool holds is dead after the restart; the first
    sweep after it must not spend a failure (and an interval) on each."""
    booking_id = due_booking(runtime, clock)
    throwaway_postgres.restart(mode)

    sweeper = locked_sweeper(runtime, SWEEP_INTERVAL_S)
    sweeper.start()
    assert wait_until_expired(database_url, booking_id, sweeper) < EXPIRED_WITHIN_S


def test_a_sweep_that_fails_is_tried_again_soon(
    throwaway_postgres: ThrowawayPostgres,
    database_url: str,
    runtime: Runtime,
    clock: MutableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database is down when the sweep starts: it fails, and the sweeper tries again
    after a short wait (doubling), so it sweeps soon after the database is back."""
    booking_id = due_booking(runtime, clock)
    throwaway_postgres.stop("fast")
    try:
        with caplog.at_level(logging.ERROR, logger="prep_es.services.container"):
            sweeper = locked_sweeper(runtime, SWEEP_INTERVAL_S)
            sweeper.start()
            # It fails asking for the sweeper's lock, or sweeping.
            wait_until(
                lambda: caplog.records, EXPIRED_WITHIN_S, "the sweep failing with the database down"
            )
    finally:
        throwaway_postgres.start()
    assert wait_until_expired(database_url, booking_id, sweeper) < EXPIRED_WITHIN_S
