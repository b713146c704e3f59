"""A worker process that dies (SIGKILL) in the middle of saving a booking, or just after.

On SQLite it dies inside the open transaction, after its events were inserted and before
the commit. On PostgreSQL an append is one statement in its own transaction (see
``prep_es.store.eventstore``), so the last moment a client can die before the commit is just
before it sends that statement, with every event already serialized; once sent, the
statement commits or fails as a whole."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from commands.bookings import RequestBooking
from commands.context import Actor, CommandContext
from tests.support import MutableClock, open_test_runtime


def request_booking_and_die(
    database_url: str, kitchen_id: str, customer_id: str, start: str, now: str
) -> None:
    runtime = open_test_runtime(database_url, MutableClock(datetime.fromisoformat(now)))
    recorder: Any = runtime.app.recorder
    if hasattr(recorder, "group_commit"):

        def die_before_sending(*_: Any, **__: Any) -> Any:
            os.kill(os.getpid(), signal.SIGKILL)

        recorder.group_commit._insert = die_before_sending
    else:
        insert = recorder._insert_events

        def insert_then_die(*args: Any, **kwargs: Any) -> Any:
            insert(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        recorder._insert_events = insert_then_die
    begin = datetime.fromisoformat(start)
    runtime.commands.bookings.request_booking(
        RequestBooking(
            kitchen_id=UUID(kitchen_id),
            start_time=begin,
            end_time=begin + timedelta(hours=2),
            guests=1,
        ),
        CommandContext(actor=Actor(user_id=UUID(customer_id), role="customer")),
    )
    raise AssertionError("the worker should have died before the commit")


def request_booking_commit_and_die(
    database_url: str, kitchen_id: str, customer_id: str, start: str, now: str, key: str
) -> None:
    """Request a booking under idempotency key ``key`` and die (SIGKILL) once its append
    has committed, before the command returns: the client never hears the answer."""
    runtime = open_test_runtime(database_url, MutableClock(datetime.fromisoformat(now)))
    recorder: Any = runtime.app.recorder
    insert = recorder.insert_events

    def insert_commit_then_die(*args: Any, **kwargs: Any) -> Any:
        insert(*args, **kwargs)  # returns once the transaction has committed
        os.kill(os.getpid(), signal.SIGKILL)

    recorder.insert_events = insert_commit_then_die
    begin = datetime.fromisoformat(start)
    runtime.commands.bookings.request_booking(
        RequestBooking(
            kitchen_id=UUID(kitchen_id),
            start_time=begin,
            end_time=begin + timedelta(hours=2),
            guests=1,
        ),
        CommandContext(
            actor=Actor(user_id=UUID(customer_id), role="customer"), idempotency_key=key
        ),
    )
    raise AssertionError("the worker should have died after the commit")
