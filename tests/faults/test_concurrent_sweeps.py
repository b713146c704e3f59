"""``prep-es sweep`` in six processes at once: every due transition happens exactly
once, and every process exits 0 (finding: three to five of six exited 1 with
``hold_not_pending``, skipping the rest of their transitions). And one transition that
fails does not end the sweep."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest

from aggregates.account import Account
from aggregates.booking import Booking
from commands.bookings import BookingAction
from prep_es.services.runtime import Runtime
from prep_es.store.eventstore import PrepApplication
from tests.cli.running import cli_runner
from tests.support import (
    MutableClock,
    as_actor,
    build_marketplace,
    master_key_environment,
    open_test_runtime,
)

SWEEPS = 6
BOOKINGS_EACH = 12
"""Bookings to complete, and as many to expire."""
SWEEP_TIMEOUT_S = 120


def sweep_environment(database_url: str) -> dict[str, str]:
    inherited = {
        name: value for name, value in os.environ.items() if not name.startswith("PREP_ES_")
    }
    return inherited | {"PREP_ES_DATABASE_URL": database_url} | master_key_environment(database_url)


def events_about(app: PrepApplication, event_class: type) -> Counter[UUID]:
    """How many events of ``event_class`` each booking has (bookings' own events by
    their id, holds by the hold's, which is the booking's)."""
    topic: str = event_class.TOPIC  # type: ignore[attr-defined]
    found: Counter[UUID] = Counter()
    for notification in app.notifications(0, None, 100_000, [topic]):
        event = app.mapper.to_domain_event(notification)
        found[getattr(event, "hold_id", event.originator_id)] += 1
    return found


def sweep_in_processes(database_url: str, count: int) -> Sequence[tuple[int, str, str]]:
    """``prep-es sweep --json`` in ``count`` processes started together: each one's exit
    status, output and errors."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "prep_es.cli", "sweep", "--json"],
            env=sweep_environment(database_url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    finished = []
    for process in processes:
        out, err = process.communicate(timeout=SWEEP_TIMEOUT_S)
        finished.append((process.returncode, out, err))
    return finished


@dataclass
class DueBookings:
    """A store as it was a month ago, when these bookings were made: now (the sweeps
    run on the real clock) some are due to complete, the others to expire."""

    runtime: Runtime
    to_complete: list[UUID]
    to_expire: list[UUID]


@pytest.fixture
def due(database_url: str) -> Iterator[DueBookings]:
    now = datetime.now(UTC)
    month_ago = now - timedelta(days=30)
    clock = MutableClock(month_ago.replace(hour=16, minute=0, second=0, microsecond=0))
    runtime = open_test_runtime(database_url, clock)
    market = build_marketplace(runtime, clock)
    to_complete, to_expire = [], []
    for day in range(1, 2 * BOOKINGS_EACH + 1):
        start = clock.now.replace(hour=17) + timedelta(days=day)
        booking = market.request_booking(start)
        if day <= BOOKINGS_EACH:
            runtime.commands.bookings.confirm_booking(
                BookingAction(booking_id=booking.id), as_actor(market.host)
            )
            to_complete.append(booking.id)
        else:
            to_expire.append(booking.id)
    assert start + timedelta(hours=2) < now
    yield DueBookings(runtime, to_complete, to_expire)
    runtime.close()


def test_concurrent_sweeps_each_make_every_due_transition_once(
    database_url: str, due: DueBookings
) -> None:
    finished = sweep_in_processes(database_url, SWEEPS)

    assert [code for code, _, _ in finished] == [0] * SWEEPS, [e for _, _, e in finished]
    reports = [json.loads(out) for _, out, _ in finished]
    assert all(report["failed"] == [] for report in reports)
    expired = Counter(UUID(i) for report in reports for i in report["expired_booking_ids"])
    completed = Counter(UUID(i) for report in reports for i in report["completed_booking_ids"])
    assert expired == Counter(due.to_expire)
    assert completed == Counter(due.to_complete)
    # The ledger: each booking moved once, each hold released or captured once.
    app = due.runtime.app
    assert events_about(app, Booking.BookingExpired) == Counter(due.to_expire)
    assert events_about(app, Account.HoldReleased) == Counter(due.to_expire)
    assert events_about(app, Booking.BookingCompleted) == Counter(due.to_complete)
    assert events_about(app, Account.HoldCaptured) == Counter(due.to_complete)


def refuse_to_expire(database_url: str, booking_id: UUID) -> None:
    """Make the database refuse the expiry of one booking (as a failing disk would)."""
    if database_url.startswith("postgresql"):
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                "CREATE FUNCTION refuse_expiry() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.originator_id = '{booking_id}' AND NEW.topic = 'Booking.BookingExpired' "
                "THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$"
            )
            connection.execute(
                "CREATE TRIGGER refuse_expiry BEFORE INSERT ON prep_es_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse_expiry()"
            )
    else:
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            connection.execute(
                "CREATE TRIGGER refuse_expiry BEFORE INSERT ON stored_events "
                f"WHEN NEW.originator_id = '{booking_id.hex}' "
                "AND NEW.topic = 'Booking.BookingExpired' "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )


def test_a_failed_transition_does_not_end_the_sweep(
    database_url: str,
    due: DueBookings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failing, *others = due.to_expire
    refuse_to_expire(database_url, failing)
    sweep = cli_runner(monkeypatch, capsys, database_url)

    ran = sweep("sweep", "--json")

    assert ran.code == 1
    assert f"error: expire_booking {failing} failed:" in ran.err
    report = json.loads(ran.out)
    assert [(f["transition"], UUID(f["aggregate_id"])) for f in report["failed"]] == [
        ("expire_booking", failing)
    ]
    assert sorted(UUID(i) for i in report["expired_booking_ids"]) == sorted(others)
    assert sorted(UUID(i) for i in report["completed_booking_ids"]) == sorted(due.to_complete)
