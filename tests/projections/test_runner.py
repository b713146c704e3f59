"""The projection runner on both backends: batches with their position, exactly once,
failures that stop visibly and resume, rebuilds that switch without downtime."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.utils import get_topic

from aggregates.idempotency import IdempotencyRecord
from aggregates.user import User
from prep_es.services.readside import ReadSide
from prep_es.store.personal_cipher import is_envelope
from prep_es.store.serialization import OrjsonTranscoder, PydanticMapper
from projections.append_signals import AppendSignal
from projections.audit import AuditProjection
from projections.base import Projection, fold
from projections.bookings import BookingsProjection
from projections.database import Sql
from projections.decoding import EventDecoder
from projections.failures import ProjectionFailed
from projections.generations import ensure_ready, generations, request_rebuild
from projections.locks import ProcessRunnerLock, RunnerLock
from projections.runners import ProjectionRunner
from projections.shared_commits import SharedCommits
from projections.supervisor import Supervisor
from tests.support import (
    START_OF_TESTS,
    Marketplace,
)
from tests.waiting import wait_until


def audit_rows(read_side: ReadSide) -> list[dict[str, Any]]:
    with read_side.query_database.reading() as sql:
        return sql.fetchall("SELECT * FROM audit_entries ORDER BY position")


def state_of(read_side: ReadSide, name: str) -> list[Any]:
    with read_side.write_database.reading() as sql:
        return generations(sql, name)


def test_catch_up_applies_every_event_once(market: Marketplace, read_side: ReadSide) -> None:
    ensure_ready(read_side.write_database, AuditProjection)
    runner = ProjectionRunner(
        AuditProjection, market.runtime.app, read_side.write_database, batch_size=7
    )
    runner.catch_up()
    head = market.runtime.app.position()

    rows = audit_rows(read_side)
    assert [row["position"] for row in rows] == list(range(1, head + 1))
    [state] = state_of(read_side, "audit")
    assert (state.position, state.events_applied, state.state) == (head, head, "running")

    market.request_booking(START_OF_TESTS + timedelta(days=3))
    runner.catch_up()
    assert len(audit_rows(read_side)) == market.runtime.app.position()
    booking_rows = [
        r for r in audit_rows(read_side) if r["event_type"] == "Booking.BookingRequested"
    ]
    assert booking_rows[0]["actor_role"] == "customer"


class Poisoned(Projection):
    """Fails on bookings until told otherwise."""

    name: ClassVar[str] = "poisoned"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("seen",)
    poisoned: ClassVar[bool] = True

    def create_tables(self, sql: Sql) -> None:
        sql.execute(f"CREATE TABLE {self.table('seen')} (position bigint PRIMARY KEY)")

    @fold(*AuditProjection.event_types)
    def _seen(self, event: Any, position: int, sql: Sql) -> None:
        if self.poisoned and type(event).__name__ == "BookingRequested":
            raise ValueError("cannot read this booking")
        sql.execute(f"INSERT INTO {self.table('seen')} (position) VALUES (%s)", (position,))


def test_a_poisoned_event_stops_the_projection_visibly_and_resumes_once_fixed(
    market: Marketplace, read_side: ReadSide
) -> None:
    booking = market.request_booking(START_OF_TESTS + timedelta(days=3))
    ensure_ready(read_side.write_database, Poisoned)
    runner = ProjectionRunner(Poisoned, market.runtime.app, read_side.write_database)

    with pytest.raises(ProjectionFailed) as failed:
        runner.catch_up()

    [state] = state_of(read_side, "poisoned")
    assert state.state == "failed"
    assert state.failed_topic == "Booking.BookingRequested"
    assert state.failed_position == failed.value.position
    assert "cannot read this booking" in (state.failed_error or "")
    # Nothing of the failing batch was applied: the position is before it.
    assert state.position < failed.value.position
    assert booking.id

    Poisoned.poisoned = False
    try:
        runner.catch_up()
    finally:
        Poisoned.poisoned = True
    [state] = state_of(read_side, "poisoned")
    assert (state.state, state.position) == ("running", market.runtime.app.position())
    assert state.failed_position is None
    with read_side.write_database.reading() as sql:
        seen = sql.scalar("SELECT count(*) FROM poisoned_seen")
    assert seen == market.runtime.app.position()


def test_rebuild_fills_new_tables_while_the_old_serve_then_switches(
    market: Marketplace, read_side: ReadSide
) -> None:
    ensure_ready(read_side.write_database, AuditProjection)
    runner = ProjectionRunner(
        AuditProjection, market.runtime.app, read_side.write_database, rebuild_batch_size=5
    )
    runner.catch_up()
    before = audit_rows(read_side)

    generation = request_rebuild(read_side.write_database, AuditProjection)
    assert generation == 2
    runner.step()  # one rebuild batch: the old generation still answers in full
    assert audit_rows(read_side) == before
    states = {s.generation: s for s in state_of(read_side, "audit")}
    assert states[1].active and not states[2].active
    assert states[2].state == "building" and states[2].position > 0

    runner.catch_up()
    states = {s.generation: s for s in state_of(read_side, "audit")}
    assert states[2].active and states[1].state == "retired"
    assert audit_rows(read_side) == before


def index_names(read_side: ReadSide, table: str) -> set[str]:
    with read_side.write_database.reading() as sql:
        if sql.dialect == "postgresql":
            rows = sql.fetchall(
                "SELECT indexname AS name FROM pg_indexes WHERE tablename = %s", (table,)
            )
        else:
            rows = sql.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s", (table,)
            )
    return {str(row["name"]) for row in rows}


def test_a_rebuild_builds_query_indexes_when_it_switches_over(
    market: Marketplace, read_side: ReadSide
) -> None:
    ensure_ready(read_side.write_database, AuditProjection)
    runner = ProjectionRunner(
        AuditProjection, market.runtime.app, read_side.write_database, rebuild_batch_size=5
    )
    runner.catch_up()
    query_indexes = {
        f"audit_g1_entries_{column}"
        for column in ("aggregate_id", "actor_id", "event_type", "recorded_at")
    }
    assert query_indexes <= index_names(read_side, "audit_g1_entries")  # served at once

    request_rebuild(read_side.write_database, AuditProjection)
    runner.step()
    assert not {name.replace("_g1_", "_g2_") for name in query_indexes} & index_names(
        read_side, "audit_g2_entries"
    )  # building: only its keys

    runner.catch_up()
    assert {name.replace("_g1_", "_g2_") for name in query_indexes} <= index_names(
        read_side, "audit_g2_entries"
    )


class FlakyLock(RunnerLock):
    """A runner lock whose first ``failures`` requests fail as an unreachable database
    would, then a real one."""

    def __init__(self, name: str, failures: int) -> None:
        self._lock = ProcessRunnerLock(f"flaky:{name}:{uuid4()}")
        self.failures = failures

    def try_acquire(self) -> bool:
        if self.failures > 0:
            self.failures -= 1
            raise psycopg.OperationalError("connection refused")
        return self._lock.try_acquire()

    def is_held(self) -> bool:
        return self._lock.is_held()

    def release(self) -> None:
        self._lock.release()


def start_supervisor(
    market: Marketplace,
    read_side: ReadSide,
    projections: list[type[Projection]],
    lock_factory: Callable[[str], RunnerLock],
) -> Supervisor:
    """A started supervisor of ``projections``, woken by polling the store's head."""
    app = market.runtime.app
    supervisor = Supervisor(
        app,
        read_side.write_database,
        projections,
        lock_factory=lock_factory,
        signal=AppendSignal(app, conninfo=None, channel="unused"),
    )
    supervisor.start()
    return supervisor


def test_a_supervised_runner_outlives_a_database_it_cannot_reach_for_its_lock(
    market: Marketplace, read_side: ReadSide
) -> None:
    app = market.runtime.app
    supervisor = start_supervisor(
        market, read_side, [AuditProjection], lambda name: FlakyLock(name, failures=2)
    )
    try:
        wait_until(lambda: len(audit_rows(read_side)) >= app.position(), 30, "the audit caught up")
    finally:
        supervisor.stop()
    assert len(audit_rows(read_side)) == app.position()


def test_shared_commits_write_projections_together_and_a_failing_one_alone(
    market: Marketplace, read_side: ReadSide
) -> None:
    market.request_booking(START_OF_TESTS + timedelta(days=3))
    app, database = market.runtime.app, read_side.write_database
    shared = SharedCommits(database)
    head = app.position()
    batches = []
    for projection in (AuditProjection, Poisoned, BookingsProjection):
        ensure_ready(database, projection)
        runner = ProjectionRunner(projection, app, database, shared_commits=shared)
        [state] = runner.generations()
        notifications = runner.decoder.notifications(0, head, 1000, runner.topics, rebuilding=False)
        batches.append(runner.prepare(state, notifications, head, full=False))

    outcomes = shared._commit_group(batches)

    # The shared transaction failed on the poisoned batch; committed one by one, the
    # others went through and the poisoned one stopped visibly.
    assert outcomes[0] is False and outcomes[2] is False
    assert isinstance(outcomes[1], ProjectionFailed)
    assert len(audit_rows(read_side)) == head
    assert [(s.state, s.position) for s in state_of(read_side, "bookings")] == [("running", head)]
    [poisoned] = state_of(read_side, "poisoned")
    assert poisoned.state == "failed"
    assert poisoned.failed_topic == "Booking.BookingRequested"


def test_a_supervisor_commits_its_runners_batches_together(
    market: Marketplace, read_side: ReadSide
) -> None:
    app = market.runtime.app
    supervisor = start_supervisor(
        market,
        read_side,
        [AuditProjection, BookingsProjection],
        lambda name: ProcessRunnerLock(f"shared:{name}:{uuid4()}"),
    )
    try:
        for day in range(4, 10):
            market.request_booking(START_OF_TESTS + timedelta(days=day))
        head = app.position()
        wait_until(
            lambda: all(
                state.position >= head
                for name in ("audit", "bookings")
                for state in state_of(read_side, name)
            ),
            30,
            "the audit and bookings caught up",
        )
    finally:
        supervisor.stop()
    assert len(audit_rows(read_side)) == head
    with read_side.query_database.reading() as sql:
        assert sql.scalar("SELECT count(*) FROM bookings_bookings") == 6


def test_audit_rows_built_by_postgresql_equal_the_rows_built_in_python(
    market: Marketplace, read_side: ReadSide
) -> None:
    """On PostgreSQL the audit projection builds its rows by SQL from the events table;
    they must be the rows its Python path builds: personal fields as sealed, secrets
    redacted at any depth (also in an event written before personal fields were sealed,
    which a store not yet migrated still holds)."""
    database = read_side.write_database
    if database.dialect != "postgresql":
        pytest.skip("SQLite builds audit rows in Python only")
    app = market.runtime.app
    market.request_booking(START_OF_TESTS + timedelta(days=3))
    nested_secret = {"user": {"password_hash": "x", "logins": [{"password_hash": "y"}]}}
    unsealed = PydanticMapper(transcoder=OrjsonTranscoder())
    written_before_sealing = IdempotencyRecord(
        scope="test", key="k", request_hash="h", result=nested_secret
    )
    app.recorder.insert_events(
        [unsealed.to_stored_event(e) for e in written_before_sealing.collect_events()]
    )
    app.save(IdempotencyRecord(scope="test", key="sealed", request_hash="h", result=nested_secret))
    ensure_ready(database, AuditProjection)
    in_database = ProjectionRunner(AuditProjection, app, database, batch_size=9)
    assert in_database.events_table is not None
    in_database.catch_up()
    built_by_sql = audit_rows(read_side)

    request_rebuild(database, AuditProjection)
    in_python = ProjectionRunner(AuditProjection, app, database, rebuild_batch_size=9)
    in_python.events_table = None
    in_python.catch_up()

    assert len(built_by_sql) == app.position()
    assert audit_rows(read_side) == built_by_sql
    recorded = {
        r["aggregate_id"]: r["payload"]["result"]
        for r in built_by_sql
        if r["event_type"].startswith("IdempotencyRecord.")
    }
    assert recorded.pop(written_before_sealing.id) == {
        "user": {"password_hash": "***", "logins": [{"password_hash": "***"}]}
    }
    [sealed] = recorded.values()
    assert is_envelope(sealed)
    registered = [r for r in built_by_sql if r["event_type"] == "User.UserRegistered"]
    assert registered and all(r["payload"]["password_hash"] == "***" for r in registered)
    assert all(is_envelope(r["payload"]["email"]) for r in registered)


def test_an_event_audit_cannot_build_by_sql_stops_it_at_that_event(
    market: Marketplace, read_side: ReadSide
) -> None:
    database = read_side.write_database
    if database.dialect != "postgresql":
        pytest.skip("SQLite builds audit rows in Python only")
    app = market.runtime.app
    ensure_ready(database, AuditProjection)
    runner = ProjectionRunner(AuditProjection, app, database)
    runner.catch_up()
    good_until = app.position()
    with database.transaction() as sql:  # a stored event that is not JSON
        sql.execute(
            f"INSERT INTO {runner.events_table} (originator_id, originator_version, topic, "
            "state) VALUES (%s, 1, %s, %s)",
            (uuid4(), "Booking.BookingRequested", b"not json"),
        )
    market.request_booking(START_OF_TESTS + timedelta(days=3))

    with pytest.raises(ProjectionFailed) as failed:
        runner.catch_up()

    poisoned = (good_until + 1, "Booking.BookingRequested")
    assert (failed.value.position, failed.value.topic) == poisoned
    assert "invalid input syntax for type json" in failed.value.error
    [state] = state_of(read_side, "audit")
    assert (state.state, state.position) == ("failed", good_until)
    assert (state.failed_position, state.failed_topic) == poisoned


def test_the_decoder_reads_the_topics_of_the_runners_that_follow_it(
    market: Marketplace,
) -> None:
    app = market.runtime.app
    market.request_booking(START_OF_TESTS + timedelta(days=3))
    head = app.position()
    every = app.recorder.select_notifications(start=0, limit=head, inclusive_of_start=False)
    # The store's own read, statement made once and rows as tuples, reads the same.
    assert app.notifications(0, head, head) == every
    bookings = frozenset(BookingsProjection.topics())
    assert app.notifications(0, head, head, sorted(bookings)) == [
        n for n in every if n.topic in bookings
    ]

    decoder = EventDecoder(app, chunk_ids=4)
    users = frozenset({get_topic(User.UserRegistered)})
    decoder.follow(users)
    assert decoder.notifications(0, head, head, users, rebuilding=False) == [
        n for n in every if n.topic in users
    ]
    # A runner that comes later with other topics is served too: chunks read without
    # its topics are dropped.
    decoder.follow(bookings)
    found = decoder.notifications(0, head, head, bookings, rebuilding=False)
    assert found == [n for n in every if n.topic in bookings] and found
    assert [decoder.decode(n) for n in found] == [app.mapper.to_domain_event(n) for n in found]
    # Events no runner follows were never read.
    assert {n.topic for chunk in decoder._chunks.values() for n in chunk.notifications} <= (
        users | bookings
    )
