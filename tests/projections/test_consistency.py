"""Read-your-writes: a query waits for the position a command reached, woken as soon as a
runner commits it (in this process through ``on_position``, from elsewhere through
PostgreSQL LISTEN or, on SQLite, a short poll), and gives up in bounded time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from commands.top_ups import RequestTopUp
from prep_es.services.readside import ReadSide, start_projectors
from projections import PROJECTIONS
from projections.audit import AuditProjection
from projections.database import PostgresReadDatabase, ReadDatabase, Sql
from projections.generations import ensure_ready
from projections.runners import ProjectionRunner
from queries.consistency import ReadModelBehind, ReadPositions
from tests.support import Marketplace, as_actor, store_settings
from tests.waiting import wait_until

PROMPT_S = 2.0
"""Generous bound for "at once" on a loaded test machine (the bar, p99 ≤ 50 ms, is
measured by the benchmarks)."""


@pytest.fixture
def positions(read_side: ReadSide) -> Iterator[ReadPositions]:
    read_positions = ReadPositions(read_side.query_database)
    read_positions.start()
    yield read_positions
    read_positions.close()


def request_top_up(market: Marketplace) -> int:
    """The position a top-up request reached (its payment ``processing``)."""
    executed = market.runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=2500, payment_method="pm_card_visa"),
        as_actor(market.customer),
    )
    return executed.position


def test_a_query_waits_for_its_command_while_the_supervisor_runs(
    market: Marketplace, read_side: ReadSide, positions: ReadPositions, database_url: str
) -> None:
    settings = store_settings(database_url)
    supervisor, append_signal = start_projectors(
        settings, market.runtime.app, read_side, on_position=positions.observe
    )
    try:
        for projection_class in PROJECTIONS:
            positions.wait_for(projection_class.name, market.runtime.app.position(), 10)
        for _ in range(5):
            position = request_top_up(market)
            started = time.monotonic()
            reached = positions.wait_for("audit", position, timeout_s=5)
            assert time.monotonic() - started < PROMPT_S
            assert reached >= position
            with read_side.query_database.reading() as sql:
                entry = sql.fetchone(
                    "SELECT event_type FROM audit_entries WHERE position = %s", (position,)
                )
            assert entry == {"event_type": "TopUp.TopUpProcessing"}
    finally:
        supervisor.stop()
        append_signal.stop()
    assert positions.position("audit") == market.runtime.app.position()


def test_without_a_runner_the_wait_ends_in_read_model_behind(
    market: Marketplace, read_side: ReadSide, positions: ReadPositions
) -> None:
    assert positions.position("audit") == 0  # no runner ever set anything up
    ensure_ready(read_side.write_database, AuditProjection)
    head = market.runtime.app.position()

    started = time.monotonic()
    with pytest.raises(ReadModelBehind) as behind:
        positions.wait_for("audit", head, timeout_s=0.2)
    assert 0.2 <= time.monotonic() - started < PROMPT_S
    assert (behind.value.name, behind.value.position) == ("audit", 0)
    assert behind.value.required_position == head
    assert behind.value.retry_after_s >= 1
    assert behind.value.code == "read_model_behind"


def test_a_runner_elsewhere_wakes_the_wait_without_the_callback(
    market: Marketplace, read_side: ReadSide, positions: ReadPositions
) -> None:
    """Nothing calls ``observe``: PostgreSQL announces the commit (LISTEN), SQLite is
    polled."""
    ensure_ready(read_side.write_database, AuditProjection)
    head = market.runtime.app.position()
    runner = ProjectionRunner(AuditProjection, market.runtime.app, read_side.write_database)
    applied_at: list[float] = []

    def apply_later() -> None:
        wait_until(lambda: positions.waiting == 1, 10, "the wait to begin")
        runner.catch_up()
        applied_at.append(time.monotonic())

    thread = threading.Thread(target=apply_later)
    thread.start()
    try:
        reached = positions.wait_for("audit", head, timeout_s=10)
        woken_at = time.monotonic()
    finally:
        thread.join()
    assert reached == head
    assert woken_at - applied_at[0] < PROMPT_S


def test_close_ends_waits_at_once(read_side: ReadSide) -> None:
    positions = ReadPositions(read_side.query_database)
    positions.start()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            positions.wait_for("audit", 10, timeout_s=20)
        except ReadModelBehind as error:
            outcome.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    wait_until(lambda: positions.waiting == 1, 10, "the wait to begin")
    started = time.monotonic()
    positions.close()
    thread.join(timeout=5)
    assert time.monotonic() - started < PROMPT_S
    assert len(outcome) == 1
    assert isinstance(outcome[0], ReadModelBehind)


def test_waits_are_capped(read_side: ReadSide) -> None:
    positions = ReadPositions(read_side.query_database, wait_timeout_s_max=0.1)
    started = time.monotonic()
    with pytest.raises(ReadModelBehind):
        positions.wait_for("audit", 1, timeout_s=3600)
    assert time.monotonic() - started < PROMPT_S
    positions.close()


def test_on_a_replica_announcements_are_confirmed_by_reading(
    market: Marketplace, read_side: ReadSide
) -> None:
    """The primary announces positions the replica may not have yet."""
    positions = ReadPositions(read_side.query_database, replica=True)
    ensure_ready(read_side.write_database, AuditProjection)
    positions.observe("audit", 1000)
    assert positions.position("audit") == 0
    ProjectionRunner(AuditProjection, market.runtime.app, read_side.write_database).catch_up()
    positions.observe("audit", market.runtime.app.position())
    assert positions.wait_for("audit", market.runtime.app.position(), 1) == (
        market.runtime.app.position()
    )
    positions.close()


def count_reads(database: ReadDatabase, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the reads made through ``database`` from now on (``[count]``)."""
    reads = [0]
    reading = database.reading

    @contextmanager
    def counted() -> Iterator[Sql]:
        reads[0] += 1
        with reading() as sql:
            yield sql

    monkeypatch.setattr(database, "reading", counted)
    return reads


def test_while_listening_positions_come_from_announcements_without_a_read(
    market: Marketplace, read_side: ReadSide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a commit anywhere is announced, so a query's position needs no round
    trip; and what is announced follows a commit, so it never runs ahead of the views."""
    if read_side.query_database.dialect != "postgresql":
        pytest.skip("SQLite announces nothing: positions are read")
    database = read_side.query_database
    assert isinstance(database, PostgresReadDatabase)
    own = PostgresReadDatabase(database.conninfo, pool_size=2)  # the runner's reads apart
    reads = count_reads(own, monkeypatch)
    positions = ReadPositions(own)
    positions.start()
    try:
        ensure_ready(read_side.write_database, AuditProjection)
        runner = ProjectionRunner(AuditProjection, market.runtime.app, read_side.write_database)
        runner.catch_up()
        head = market.runtime.app.position()
        assert positions.wait_for("audit", head, timeout_s=10) == head
        reads_before = reads[0]
        for _ in range(3):
            assert positions.position("audit") == head
        assert reads[0] == reads_before
        position = request_top_up(market)
        assert positions.position("audit") == head  # not applied yet: not claimed
        runner.catch_up()
        wait_until(lambda: positions.position("audit") >= position, PROMPT_S, "the announcement")
        assert positions.position("audit") == position  # announced
        assert reads[0] == reads_before
    finally:
        positions.close()
        own.close()


def test_without_announcements_positions_are_read(
    market: Marketplace, read_side: ReadSide, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite, or a replica: nothing announces what a runner elsewhere committed."""
    database = read_side.query_database
    reads = count_reads(database, monkeypatch)
    positions = ReadPositions(database, replica=True)
    positions.start()
    try:
        ensure_ready(read_side.write_database, AuditProjection)
        ProjectionRunner(AuditProjection, market.runtime.app, read_side.write_database).catch_up()
        reads_before = reads[0]
        assert positions.position("audit") == market.runtime.app.position()
        assert reads[0] == reads_before + 1
    finally:
        positions.close()
