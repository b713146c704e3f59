"""A worker process that dies (SIGKILL) in the middle of saving a booking: after its
events were sent to the database, before the transaction commits."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from commands.bookings import RequestBooking
from commands.handling import Actor, CommandContext
from tests.support import MutableClock, open_test_runtime


def request_booking_and_die(
    database_url: str, kitchen_id: str, customer_id: str, start: str, now: str
) -> None:
    runtime = open_test_runtime(database_url, MutableClock(datetime.fromisoformat(now)))
    recorder: Any = runtime.app.recorder
    insert_name = (
        "_insert_stored_events" if hasattr(recorder, "_insert_stored_events") else "_insert_events"
    )
    insert = getattr(recorder, insert_name)

    def insert_then_die(*args: Any, **kwargs: Any) -> Any:
        insert(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(recorder, insert_name, insert_then_die)
    begin = datetime.fromisoformat(start)
    runtime.commands.bookings.request_booking(
        RequestBooking(
            kitchen_id=UUID(kitchen_id), start_time=begin, end_time=begin + timedelta(hours=2),
            guests=1,
        ),
        CommandContext(actor=Actor(user_id=UUID(customer_id), role="customer")),
    )
    raise AssertionError("the worker should have died before the commit")
