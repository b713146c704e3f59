"""PostgreSQL restarts (``fast`` and ``immediate``) while threads book through the
command handlers: every failure is one the API answers 503 (none a 500), no
acknowledged booking is lost or made twice, no slot is booked twice, every hold matches
its booking, and bookings go through again within seconds."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import pytest

from aggregates.account import Account, account_id_for
from aggregates.booking import Booking
from aggregates.errors import DomainError
from api.problems import database_unavailable
from commands.context import Actor
from prep_es.store.eventstore import open_application
from tests.faults.conftest import StopMode, ThrowawayPostgres
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    build_marketplace,
    open_test_runtime,
    store_settings,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres

CUSTOMERS = 4
ACKNOWLEDGED_BEFORE_RESTART = 8
ACKNOWLEDGED_AFTER_RESTART = 8
BOOKING_AGAIN_WITHIN_S = 30.0
"""How soon after the restart bookings must go through again."""
RETRY_FOR_S = 60.0
"""How long a client retries one request (same key) while the database fails."""
SLOTS = [
    START_OF_TESTS + timedelta(days=day, hours=hours)
    for day in range(1, 200)
    for hours in (0, 2, 4)
]
"""Two-hour slots every customer tries, in order: each goes to one of them."""


@dataclass
class Load:
    """What the booking threads were told, shared between them."""

    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: dict[UUID, tuple[Actor, datetime, int]] = field(default_factory=dict)
    """Booking id: who booked it, its start, its price."""
    failures: Counter[str] = field(default_factory=Counter)
    """Database failures seen (and retried), by type."""
    refusals: Counter[str] = field(default_factory=Counter)
    unexpected: list[BaseException] = field(default_factory=list)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def book_until_stopped(market: Marketplace, customer: Actor, load: Load) -> None:
    """Try every slot in turn, each under its own idempotency key, retrying one that
    fails for the database's sake with the same key (as a client retries a 503)."""
    try:
        for start in SLOTS:
            if load.stopping.is_set():
                return
            key = f"{customer.user_id}-{start.isoformat()}"
            give_up_at = time.monotonic() + RETRY_FOR_S
            while True:
                try:
                    booking = market.request_booking(start, customer=customer, idempotency_key=key)
                except DomainError as refused:
                    with load.lock:
                        load.refusals[refused.code] += 1
                    if refused.code != "concurrency_conflict":
                        break
                except Exception as failed:
                    # The API answers these 503 (retry); anything else would be a 500.
                    if not database_unavailable(failed):
                        raise
                    with load.lock:
                        load.failures[type(failed).__name__] += 1
                else:
                    with load.lock:
                        load.acknowledged[booking.id] = (customer, start, booking.price_cents)
                    break
                assert time.monotonic() < give_up_at, "the database did not come back"
                load.stopping.wait(0.05)  # a client's pause before it retries
    except BaseException as error:
        load.unexpected.append(error)
        raise


@pytest.fixture
def market(throwaway_postgres: ThrowawayPostgres) -> Iterator[Marketplace]:
    url = throwaway_postgres.create_database(f"load_{secrets.token_hex(4)}")
    clock = MutableClock()
    runtime = open_test_runtime(url, clock)
    yield build_marketplace(runtime, clock, capacity=20)
    runtime.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_bookings_survive_a_restart_under_load(
    throwaway_postgres: ThrowawayPostgres, market: Marketplace, mode: StopMode
) -> None:
    customers = [market.customer] + [
        market.add_customer(f"customer-{n}@example.com", 1_000_000) for n in range(1, CUSTOMERS)
    ]
    load = Load()
    threads = [
        threading.Thread(target=book_until_stopped, args=(market, customer, load))
        for customer in customers
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: load.count() >= ACKNOWLEDGED_BEFORE_RESTART, 60, "load before the restart"
        )
        throwaway_postgres.restart(mode)
        restarted = load.count()
        wait_until(
            lambda: load.count() >= restarted + ACKNOWLEDGED_AFTER_RESTART,
            BOOKING_AGAIN_WITHIN_S,
            "bookings going through again",
        )
    finally:
        load.stopping.set()
        for thread in threads:
            thread.join()
    assert load.unexpected == []
    assert set(load.refusals) <= {"booking_conflict", "concurrency_conflict"}, load.refusals

    # Read back through a store opened afresh: what was acknowledged is there, once.
    store = open_application(store_settings(market.runtime.settings.database_url))
    try:
        requested = [
            store.mapper.to_domain_event(notification)
            for notification in store.notifications(0, None, 100_000, ["Booking.BookingRequested"])
        ]
        assert sorted(event.originator_id for event in requested) == sorted(load.acknowledged)
        starts = Counter(event.start_time for event in requested)
        assert max(starts.values()) == 1, "a slot was booked twice"
        for booking_id, (customer, start, _) in load.acknowledged.items():
            booking = store.repository.get(booking_id)
            assert isinstance(booking, Booking)
            assert (booking.customer_id, booking.start_time) == (customer.user_id, start)
        for customer in customers:
            account = store.repository.get(account_id_for(customer.user_id))
            assert isinstance(account, Account)
            assert account.held_cents == sum(
                price for who, _, price in load.acknowledged.values() if who == customer
            )
    finally:
        store.close()
