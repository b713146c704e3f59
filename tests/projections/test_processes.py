"""Projectors as real processes: killed at random moments they still apply every event
exactly once, and of several processes one runs each projection while the others stand
by and take over when it dies."""

from __future__ import annotations

import multiprocessing
import random
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

from commands.context import Actor
from prep_es.services.readside import ReadSide, open_read_side, start_projectors
from projections import PROJECTIONS
from projections.database import ReadDatabase
from projections.generations import ensure_ready, generations
from projections.runners import BATCH_SIZE, ProjectionRunner
from queries.consistency import ReadPositions
from tests.conftest import PostgresServer
from tests.projections.projector_process import read_journal, run_projectors
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    build_marketplace,
    open_test_runtime,
    store_settings,
    top_up,
)
from tests.waiting import wait_until

KILLS = 8
CATCH_UP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 20.0
SMALL_BATCHES = {"sqlite": 1, "postgresql": 5}
"""Batch sizes while being killed: many commits, slow enough to be caught mid-work."""


@pytest.fixture
def positions(read_side: ReadSide) -> Iterator[ReadPositions]:
    read_positions = ReadPositions(read_side.query_database)
    read_positions.start()
    yield read_positions
    read_positions.close()


@pytest.fixture
def scratch_url(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second empty database on the same backend, for a from-scratch build."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


class Writer:
    """Appends events through the command handlers: top-ups by a few customers (six
    events each, over three commands: requested, then the provider's notification), and
    a booking every 10 top-ups."""

    def __init__(self, market: Marketplace) -> None:
        self.market = market
        self.customers: list[Actor] = [market.customer] + [
            market.add_customer(f"customer{i}@example.com", 500_000) for i in range(4)
        ]
        self.bookings = 0

    def write(self, top_ups: int) -> None:
        for i in range(top_ups):
            customer = self.customers[i % len(self.customers)]
            top_up(self.market.runtime, customer, 100 + i)
            if i % 10 == 0:
                self.bookings += 1
                start = START_OF_TESTS + timedelta(days=1 + self.bookings // 4)
                self.market.request_booking(
                    start + timedelta(hours=2 * (self.bookings % 4)), customer=customer
                )

    @property
    def head(self) -> int:
        return self.market.runtime.app.position()


def start_projector(
    database_url: str, journal: Path, label: str, batch_size: int | None = None
) -> BaseProcess:
    if batch_size is None:
        batch_size = SMALL_BATCHES[database_url.partition(":")[0]]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.projections.projector_process"])
    process = context.Process(
        target=run_projectors,
        args=(database_url, str(journal), label, batch_size),
        daemon=True,
    )
    process.start()
    return process


def wait_for_journal(journal: Path, *words: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    wait_until(
        lambda: list(words) in read_journal(str(journal)),
        timeout_s,
        lambda: f"{' '.join(words)} in {read_journal(str(journal))}",
    )


def kill(process: BaseProcess) -> None:
    assert process.pid is not None
    process.kill()
    process.join(timeout=10)
    assert process.exitcode == -signal.SIGKILL


def wait_until_caught_up(positions: ReadPositions, head: int) -> None:
    for projection_class in PROJECTIONS:
        positions.wait_for(projection_class.name, head, timeout_s=CATCH_UP_TIMEOUT_S)


def notification_ids(market: Marketplace) -> list[int]:
    recorder = market.runtime.app.recorder
    return [n.id for n in recorder.select_notifications(start=1, limit=1_000_000)]


def audit_positions(database: ReadDatabase) -> list[int]:
    with database.reading() as sql:
        rows = sql.fetchall("SELECT position FROM audit_entries ORDER BY position")
    return [int(row["position"]) for row in rows]


def dump(database: ReadDatabase) -> dict[str, Any]:
    """Every projection's rows (through its views, in a stable order) and its active
    generation's position and count of events applied."""
    dumped: dict[str, Any] = {}
    with database.reading() as sql:
        for projection_class in PROJECTIONS:
            [active] = [g for g in generations(sql, projection_class.name) if g.active]
            dumped[projection_class.name] = (active.position, active.events_applied)
            for table in projection_class.tables:
                rows = sql.fetchall(f"SELECT * FROM {projection_class.view(table)}")
                dumped[projection_class.view(table)] = sorted(
                    (tuple(sorted(row.items())) for row in rows), key=repr
                )
    return dumped


def build_from_scratch(market: Marketplace, scratch_url: str) -> dict[str, Any]:
    scratch = open_read_side(store_settings(scratch_url))
    try:
        for projection_class in PROJECTIONS:
            ensure_ready(scratch.write_database, projection_class)
            runner = ProjectionRunner(projection_class, market.runtime.app, scratch.write_database)
            runner.catch_up()
        return dump(scratch.write_database)
    finally:
        scratch.close()


def test_killed_again_and_again_every_event_is_applied_exactly_once(
    market: Marketplace,
    database_url: str,
    read_side: ReadSide,
    positions: ReadPositions,
    scratch_url: str,
    tmp_path: Path,
) -> None:
    writer = Writer(market)
    writer.write(80)
    journal = tmp_path / "journal"
    randomness = random.Random(20300107)
    killed_behind = 0
    for round_number in range(KILLS):
        label = f"p{round_number}"
        writer.write(12)
        process = start_projector(database_url, journal, label)
        wait_for_journal(journal, "ready", label)
        writer.write(4)  # new events arrive while it projects
        time.sleep(randomness.uniform(0.0, 0.1))  # the moment of the kill: at random
        kill(process)
        reached = min(positions.position(p.name) for p in PROJECTIONS)
        killed_behind += reached < writer.head

    process = start_projector(database_url, journal, "last", BATCH_SIZE)
    try:
        wait_for_journal(journal, "ready", "last")
        wait_until_caught_up(positions, writer.head)
    finally:
        process.terminate()
        process.join(timeout=30)
    assert process.exitcode == 0
    assert killed_behind > 0  # the kills did land while there was work in progress

    assert audit_positions(read_side.query_database) == notification_ids(market)
    assert dump(read_side.query_database) == build_from_scratch(market, scratch_url)


def test_one_process_runs_each_projection_and_a_standby_takes_over(
    market: Marketplace,
    database_url: str,
    read_side: ReadSide,
    positions: ReadPositions,
    tmp_path: Path,
) -> None:
    writer = Writer(market)
    writer.write(20)
    journal = tmp_path / "journal"
    names = sorted(p.name for p in PROJECTIONS)

    first = start_projector(database_url, journal, "A")
    wait_until_caught_up(positions, writer.head)
    second = start_projector(database_url, journal, "B")
    try:
        wait_for_journal(journal, "ready", "B")
        writer.write(20)
        wait_until_caught_up(positions, writer.head)
        held = sorted(line[2] for line in read_journal(str(journal)) if line[0] == "holds")
        assert held == names  # all by A: B stood by
        assert all(line[1] == "A" for line in read_journal(str(journal)) if line[0] == "holds")

        kill(first)
        started = time.monotonic()
        writer.write(20)
        wait_until_caught_up(positions, writer.head)
        assert time.monotonic() - started < 10
        taken = sorted(line[2] for line in read_journal(str(journal)) if line[:2] == ["holds", "B"])
        assert taken == names
    finally:
        if first.exitcode is None:
            first.kill()
        second.terminate()
        second.join(timeout=30)
    assert second.exitcode == 0
    wait_for_journal(journal, "stopped", "B")
    assert audit_positions(read_side.query_database) == notification_ids(market)


def test_commands_that_read_before_writing_succeed_while_projectors_commit(
    sqlite_url: str,
) -> None:
    """On SQLite the read models share the event store's file: an append that reads
    before it writes (a booking checks the kitchen's version) must wait for a
    projector's commit, not fail as "database is locked"."""
    clock = MutableClock()
    runtime = open_test_runtime(sqlite_url, clock)
    market = build_marketplace(runtime, clock, top_up_cents=100_000_000)
    settings = store_settings(sqlite_url)
    side = open_read_side(settings)
    supervisor, append_signal = start_projectors(settings, runtime.app, side)
    try:
        for i in range(60):
            market.request_booking(START_OF_TESTS + timedelta(days=1 + i // 4, hours=2 * (i % 4)))
    finally:
        supervisor.stop()
        append_signal.stop()
        side.close()
        runtime.close()
