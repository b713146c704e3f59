"""Races many requests for one kitchen slot; importable by spawned worker processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from uuid import UUID

from aggregates.errors import DomainError
from commands.bookings import RequestBooking
from commands.context import Actor, CommandContext
from prep_es.services.runtime import Runtime
from tests.support import MutableClock, open_test_runtime


def race(calls: list[Callable[[], object]]) -> list[str]:
    """Run ``calls`` on one thread each, released together; each outcome is
    ``"ok"`` or the refusal's code."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> str:
        barrier.wait()
        try:
            call()
        except DomainError as error:
            return error.code
        return "ok"

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def book_same_slot(
    runtime: Runtime, kitchen_id: UUID, customer_ids: list[UUID], start: datetime
) -> list[str]:
    def request(customer_id: UUID) -> Callable[[], object]:
        return lambda: runtime.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=kitchen_id,
                start_time=start,
                end_time=start + timedelta(hours=2),
                guests=1,
            ),
            CommandContext(actor=Actor(user_id=customer_id, role="customer")),
        )

    return race([request(customer_id) for customer_id in customer_ids])


def book_same_slot_in_process(
    database_url: str, kitchen_id: str, customer_ids: list[str], start: str, now: str
) -> list[str]:
    """Entry point of a worker process: its own runtime, pool and aggregate cache."""
    runtime = open_test_runtime(database_url, MutableClock(datetime.fromisoformat(now)))
    try:
        return book_same_slot(
            runtime,
            UUID(kitchen_id),
            [UUID(customer_id) for customer_id in customer_ids],
            datetime.fromisoformat(start),
        )
    finally:
        runtime.close()
