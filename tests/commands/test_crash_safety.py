"""A command interrupted before its commit leaves nothing behind; one interrupted after
it is found done by the client's retry."""

from __future__ import annotations

import multiprocessing
import signal
from datetime import timedelta

import pytest

from aggregates.account import Account, account_id_for
from aggregates.booking import Booking
from aggregates.errors import DomainError
from aggregates.schedule import KitchenSchedule
from commands.bookings import RequestBooking
from commands.unit_of_work import UnitOfWork
from tests.commands.crashing_worker import request_booking_and_die, request_booking_commit_and_die
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    as_actor,
)

SLOT = START_OF_TESTS + timedelta(days=5)


def held_cents(market: Marketplace) -> int:
    customer = market.runtime.app.repository.get(account_id_for(market.customer.user_id))
    assert isinstance(customer, Account)
    return customer.held_cents


def test_process_killed_mid_save_writes_nothing(market: Marketplace, database_url: str) -> None:
    position = market.runtime.app.position()
    worker = multiprocessing.get_context("spawn").Process(
        target=request_booking_and_die,
        args=(
            database_url,
            str(market.kitchen_id),
            str(market.customer.user_id),
            SLOT.isoformat(),
            START_OF_TESTS.isoformat(),
        ),
    )
    worker.start()
    worker.join(timeout=60)

    assert worker.exitcode == -signal.SIGKILL
    assert market.runtime.app.position() == position
    assert held_cents(market) == 0
    # The slot was never taken: the same booking goes through now.
    assert market.request_booking(SLOT).status == "pending"


def test_a_retry_after_a_crash_past_the_commit_finds_the_booking_made(
    market: Marketplace, database_url: str
) -> None:
    """A process commits a booking and dies before answering; the client sends the same
    request with the same Idempotency-Key to another process (here, the test's): it gets
    the booking that was made, and nothing is booked or held twice."""
    position = market.runtime.app.position()
    key = "commit-then-crash-1"
    worker = multiprocessing.get_context("spawn").Process(
        target=request_booking_commit_and_die,
        args=(
            database_url,
            str(market.kitchen_id),
            str(market.customer.user_id),
            SLOT.isoformat(),
            START_OF_TESTS.isoformat(),
            key,
        ),
    )
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == -signal.SIGKILL
    committed = market.runtime.app.position()
    assert committed > position  # the booking is stored; its answer never left

    retried = market.request_booking(SLOT, guests=1, idempotency_key=key)

    assert retried.status == "pending"
    assert market.runtime.app.position() == committed  # nothing appended by the retry
    requested = [
        market.runtime.app.mapper.to_domain_event(notification)
        for notification in market.runtime.app.notifications(
            position, None, 1000, [Booking.BookingRequested.TOPIC]
        )
    ]
    assert [event.originator_id for event in requested] == [retried.id]
    assert held_cents(market) == retried.price_cents


def refuse_hold_inserts(market: Marketplace, database_url: str) -> None:
    """Make the database itself fail an append half way: a trigger that refuses the
    third kind of event a booking writes, after its first rows went in."""
    if database_url.startswith("postgresql"):
        import psycopg

        table = "prep_es_events"
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                "CREATE FUNCTION refuse_holds() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.topic = 'Account.HoldPlaced' THEN RAISE EXCEPTION 'disk full'; END IF; "
                "RETURN NEW; END $$"
            )
            connection.execute(
                f"CREATE TRIGGER refuse_holds BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_holds()"
            )
    else:
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            connection.execute(
                "CREATE TRIGGER refuse_holds BEFORE INSERT ON stored_events "
                "WHEN NEW.topic = 'Account.HoldPlaced' BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )


def test_database_failure_mid_append_writes_nothing(market: Marketplace, database_url: str) -> None:
    position = market.runtime.app.position()
    refuse_hold_inserts(market, database_url)

    with pytest.raises(Exception):  # noqa: B017, PT011 (any failure will do; nothing may persist)
        market.request_booking(SLOT)

    assert market.runtime.app.position() == position
    schedule = KitchenSchedule.create_id(kitchen_id=market.kitchen_id, day=SLOT.date())
    assert market.runtime.app.recorder.select_events(schedule) == []
    assert held_cents(market) == 0


def test_failure_while_deciding_writes_nothing(market: Marketplace) -> None:
    position = market.runtime.app.position()

    class Boom(DomainError):
        default_code = "boom"

    def decide(unit: UnitOfWork) -> RequestBooking:
        account = unit.get(
            Account, account_id_for(market.customer.user_id), not_found_code="account_not_found"
        )
        account.place_hold(market.kitchen_id, 100)
        raise Boom("the handler failed half way")

    command = RequestBooking(
        kitchen_id=market.kitchen_id,
        start_time=SLOT,
        end_time=SLOT + timedelta(hours=1),
        guests=1,
    )
    with pytest.raises(Boom):
        market.runtime.commands.processor.execute(
            "failing", as_actor(market.customer), command, RequestBooking, decide
        )

    assert market.runtime.app.position() == position
    assert held_cents(market) == 0
