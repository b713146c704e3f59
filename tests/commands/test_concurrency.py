"""Concurrency on real PostgreSQL: real threads, real processes, one winner."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from aggregates.account import Account, account_id_for
from commands.bookings import RequestBooking
from commands.context import CommandContext
from commands.users import RegisterUser
from tests.commands.concurrent_booking import (
    book_same_slot,
    book_same_slot_in_process,
    race,
)
from tests.support import (
    PASSWORD,
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    open_test_runtime,
)

pytestmark = pytest.mark.postgres

SLOT = START_OF_TESTS + timedelta(days=5)


@pytest.fixture
def market(fresh_postgres_url: str) -> Iterator[Marketplace]:
    clock = MutableClock()
    runtime = open_test_runtime(fresh_postgres_url, clock, postgres_pool_size=24)
    yield build_marketplace(runtime, clock)
    runtime.close()


def test_twenty_threads_one_slot_one_booking(market: Marketplace) -> None:
    customers = [market.add_customer(f"c{i}@example.com", 50_000) for i in range(20)]

    outcomes = book_same_slot(
        market.runtime, market.kitchen_id, [c.user_id for c in customers], SLOT
    )

    assert Counter(outcomes) == {"ok": 1, "booking_conflict": 19}
    held = [
        market.runtime.app.repository.get(account_id_for(c.user_id)).held_cents for c in customers
    ]
    assert sorted(held) == [0] * 19 + [10000]


def test_two_processes_one_slot_one_booking(market: Marketplace, fresh_postgres_url: str) -> None:
    customers = [market.add_customer(f"c{i}@example.com", 50_000) for i in range(20)]
    ids = [str(c.user_id) for c in customers]
    context = multiprocessing.get_context("spawn")

    with context.Pool(2) as pool:
        results = pool.starmap(
            book_same_slot_in_process,
            [
                (
                    fresh_postgres_url,
                    str(market.kitchen_id),
                    half,
                    SLOT.isoformat(),
                    START_OF_TESTS.isoformat(),
                )
                for half in (ids[:10], ids[10:])
            ],
        )

    outcomes = Counter(outcome for result in results for outcome in result)
    assert outcomes == {"ok": 1, "booking_conflict": 19}


def test_ten_threads_one_idempotency_key_one_booking_one_hold(market: Marketplace) -> None:
    bookings = market.runtime.commands.bookings
    command = RequestBooking(
        kitchen_id=market.kitchen_id,
        start_time=SLOT,
        end_time=SLOT + timedelta(hours=2),
        guests=2,
    )
    results: list[object] = []

    def retry() -> object:
        executed = bookings.request_booking(command, as_actor(market.customer, "retry-me"))
        results.append(executed.result)
        return executed

    outcomes = race([retry] * 10)

    assert outcomes == ["ok"] * 10
    assert len({result.id for result in results}) == 1  # type: ignore[attr-defined]
    customer = market.runtime.app.repository.get(account_id_for(market.customer.user_id))
    assert isinstance(customer, Account)
    assert customer.holds == {str(results[0].id): 10000}  # type: ignore[attr-defined]


def test_ten_threads_one_email_one_user(market: Marketplace) -> None:
    users = market.runtime.commands.users

    def register(n: int) -> Callable[[], object]:
        return lambda: users.register_user(
            RegisterUser(
                email=f"Same@Example.com{'' if n % 2 else ' '}",
                password=PASSWORD,
                full_name=f"Twin {n}",
                role="customer",
            ),
            CommandContext(actor=None),
        )

    outcomes = race([register(n) for n in range(10)])

    assert Counter(outcomes) == {"ok": 1, "email_taken": 9}
