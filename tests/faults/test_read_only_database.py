"""The whole PostgreSQL server turns read-only (``default_transaction_read_only``, as
a failed-over or disk-full server may) and back: commands fail at once with a database
error (the HTTP API answers it 503; see the API's tests), reading goes on, nothing is
stored, and once writes are allowed again the same request goes through and the
sweeper catches up within seconds."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from eventsourcing.persistence import PersistenceError

from aggregates.booking import Booking
from aggregates.kitchen import Kitchen
from prep_es.services.container import locked_sweeper
from tests.faults.conftest import ThrowawayPostgres
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    build_marketplace,
    open_test_runtime,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres

SLOT = START_OF_TESTS + timedelta(days=3)
REFUSED_WITHIN_S = 10.0
BACK_WITHIN_S = 20.0
SWEEP_INTERVAL_S = 120.0
"""Far longer than the test waits: only a prompt retry of the failed sweep can pass it."""


def set_read_only(server: ThrowawayPostgres, read_only: bool) -> None:
    with server.connect() as connection:
        connection.execute("SET default_transaction_read_only = off")
        connection.execute(
            f"ALTER SYSTEM SET default_transaction_read_only = {'on' if read_only else 'off'}"
        )
        connection.execute("SELECT pg_reload_conf()")


@pytest.fixture
def market(throwaway_postgres: ThrowawayPostgres) -> Iterator[Marketplace]:
    url = throwaway_postgres.create_database(f"read_only_{secrets.token_hex(4)}")
    clock = MutableClock()
    runtime = open_test_runtime(url, clock)
    try:
        yield build_marketplace(runtime, clock)
    finally:
        set_read_only(throwaway_postgres, False)
        runtime.close()


def test_commands_fail_while_the_server_is_read_only_and_work_after(
    throwaway_postgres: ThrowawayPostgres,
    market: Marketplace,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = market.runtime.app
    pending = market.request_booking(SLOT)  # due once the clock passes its start
    position = app.position()
    set_read_only(throwaway_postgres, True)

    started = time.monotonic()
    with pytest.raises(PersistenceError):
        market.request_booking(SLOT + timedelta(days=1), idempotency_key="read-only-1")
    assert time.monotonic() - started < REFUSED_WITHIN_S  # refused, not retried for long
    assert isinstance(app.repository.get(market.kitchen_id), Kitchen)  # reading goes on
    assert app.position() == position

    market.clock.now = SLOT + timedelta(minutes=1)
    sweeper = locked_sweeper(market.runtime, SWEEP_INTERVAL_S)
    try:
        with caplog.at_level(logging.ERROR, logger="prep_es.services.container"):
            sweeper.start()
            wait_until(lambda: caplog.records, REFUSED_WITHIN_S, "the sweep failing")
        set_read_only(throwaway_postgres, False)
        booked = market.request_booking(SLOT + timedelta(days=1), idempotency_key="read-only-1")
        assert booked.status == "pending"

        def expired() -> bool:
            booking = app.repository.get(pending.id)
            assert isinstance(booking, Booking)
            return booking.status == "expired"

        wait_until(expired, BACK_WITHIN_S, "a sweep once writes are allowed again")
    finally:
        sweeper.stop()
