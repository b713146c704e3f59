"""``prep-es projections status``, ``projections rebuild NAME`` and ``project``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from prep_es.cli.projections_status import describe_statuses
from prep_es.services.container import SWEEPER_LOCK_NAME
from prep_es.services.readside import ReadSide, lock_factory
from prep_es.services.runtime import Runtime
from prep_es.store.settings import Settings
from projections import PROJECTIONS
from projections.audit import AuditProjection
from projections.base import Projection, fold
from projections.database import Sql
from projections.failures import ProjectionFailed
from projections.generations import ensure_ready, generations
from projections.locks import RunnerLock
from projections.rebuilds import share_among_processes
from projections.runners import ProjectionRunner
from projections.status import projection_statuses
from queries.consistency import ReadPositions
from tests.cli.running import RunCli, cli_runner
from tests.support import (
    MutableClock,
    create_user,
    master_key_environment,
    open_test_runtime,
    top_up,
)
from tests.waiting import ProcessOutput, handles_signal, wait_until

REPOSITORY = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT_S = 30


@pytest.fixture
def runtime(database_url: str) -> Iterator[Runtime]:
    """A store with a few events: a customer and their top-ups."""
    runtime = open_test_runtime(database_url, MutableClock())
    customer = create_user(runtime, "customer", "customer@example.com")
    for amount_cents in (1000, 2000, 3000):
        top_up(runtime, customer, amount_cents)
    yield runtime
    runtime.close()


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> RunCli:
    return cli_runner(monkeypatch, capsys, database_url)


def catch_up_all(runtime: Runtime, read_side: ReadSide) -> None:
    for projection_class in PROJECTIONS:
        ensure_ready(read_side.write_database, projection_class)
        ProjectionRunner(projection_class, runtime.app, read_side.write_database).catch_up()


def status_json(cli: RunCli) -> dict[str, Any]:
    ran = cli("projections", "status", "--json")
    assert ran.code == 0, ran.err
    statuses = orjson.loads(ran.out)["projections"]
    return {status["name"]: status for status in statuses}


def environment(database_url: str) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if not k.upper().startswith("PREP_ES_")}
    return {
        **variables,
        "PREP_ES_DATABASE_URL": database_url,
        **master_key_environment(database_url),
    }


def start_cli(database_url: str, *arguments: str) -> subprocess.Popen[str]:
    """``prep-es ARGUMENTS`` in its own process, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "prep_es.cli", *arguments],
        cwd=REPOSITORY,
        env=environment(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_status_shows_the_lag_before_catching_up_and_none_after(
    cli: RunCli, runtime: Runtime, read_side: ReadSide
) -> None:
    head = runtime.app.position()
    before = status_json(cli)
    assert list(before) == [p.name for p in PROJECTIONS]
    audit = before["audit"]
    assert (audit["state"], audit["generation"], audit["position"]) == ("not_started", None, 0)
    assert (audit["head"], audit["lag_events"]) == (head, head)
    assert 0 < audit["lag_s"] < 60  # since the first event was recorded, moments ago

    catch_up_all(runtime, read_side)
    after = status_json(cli)
    for status in after.values():
        assert (status["state"], status["generation"]) == ("running", 1)
        assert (status["position"], status["head"]) == (head, head)
        assert (status["lag_events"], status["lag_s"]) == (0, 0.0)
        assert status["failure"] is None and status["building"] == []
    assert after["audit"]["events_applied"] == head

    ran = cli("projections", "status")
    assert ran.code == 0
    assert f"audit: running, generation 1 (version {AuditProjection.version})" in ran.out
    assert f"position {head} of {head}, lag 0 event(s), 0.0 s" in ran.out


def test_rebuild_switches_to_a_new_generation_with_the_same_rows(
    cli: RunCli, runtime: Runtime, read_side: ReadSide
) -> None:
    catch_up_all(runtime, read_side)
    with read_side.query_database.reading() as sql:
        before = sql.fetchall("SELECT * FROM audit_entries ORDER BY position")

    ran = cli("projections", "rebuild", "audit", "--json")
    assert ran.code == 0, ran.err
    summary = orjson.loads(ran.out)
    assert summary["generation"] == 2
    assert summary["position"] == runtime.app.position()
    assert "building generation 2 from position 0" in ran.err
    audit = status_json(cli)["audit"]
    assert (audit["generation"], audit["lag_events"], audit["building"]) == (2, 0, [])
    with read_side.query_database.reading() as sql:
        assert sql.fetchall("SELECT * FROM audit_entries ORDER BY position") == before
        states = {g.generation: g.state for g in generations(sql, "audit")}
    assert states == {1: "retired", 2: "running"}

    ran = cli("projections", "rebuild", "audit")
    assert ran.code == 0
    assert "generation 3 switched in" in ran.out


def test_rebuild_all_switches_every_projection_with_the_same_rows(
    cli: RunCli, runtime: Runtime, read_side: ReadSide
) -> None:
    catch_up_all(runtime, read_side)
    views = [
        projection_class.view(table)
        for projection_class in PROJECTIONS
        for table in projection_class.tables
    ]

    def read_models() -> dict[str, list[dict[str, Any]]]:
        with read_side.query_database.reading() as sql:
            return {view: sorted(sql.fetchall(f"SELECT * FROM {view}"), key=repr) for view in views}

    before = read_models()

    ran = cli("projections", "rebuild", "all", "--processes", "1", "--json")
    assert ran.code == 0, ran.err
    summary = orjson.loads(ran.out)
    assert [item["name"] for item in summary["projections"]] == [p.name for p in PROJECTIONS]
    for item in summary["projections"]:
        assert (item["generation"], item["position"]) == (2, runtime.app.position())
        assert f"{item['name']}: building generation 2 from position 0" in ran.err
    assert read_models() == before
    for status in status_json(cli).values():
        assert (status["generation"], status["lag_events"], status["building"]) == (2, 0, [])

    ran = cli("projections", "rebuild", "users", "audit", "users")
    assert ran.code == 0, ran.err
    switched = [line.partition(" at ")[0] for line in ran.out.splitlines() if "switched" in line]
    assert switched == ["audit: generation 3 switched in", "users: generation 3 switched in"]
    assert read_models() == before


def test_rebuild_all_in_several_processes_switches_every_projection(
    runtime: Runtime, read_side: ReadSide, database_url: str
) -> None:
    catch_up_all(runtime, read_side)
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "prep_es.cli",
            "projections",
            "rebuild",
            "all",
            "--processes",
            "3",
            "--json",
        ],
        cwd=REPOSITORY,
        env=environment(database_url),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    summary = orjson.loads(ran.stdout)
    assert [item["name"] for item in summary["projections"]] == [p.name for p in PROJECTIONS]
    head = runtime.app.position()
    assert {(item["generation"], item["position"]) for item in summary["projections"]} == {
        (2, head)
    }
    with read_side.write_database.reading() as sql:
        for projection_class in PROJECTIONS:
            states = {g.generation: g.state for g in generations(sql, projection_class.name)}
            assert states == {1: "retired", 2: "running"}


def test_rebuilds_are_shared_by_the_events_their_projections_decode() -> None:
    by_name = {projection_class.name: projection_class for projection_class in PROJECTIONS}
    # As in a marketplace: bookings outnumber everything, then money movements.
    per_aggregate = {"Booking": 10_000, "Account": 5_000}
    events_by_topic = {
        topic: per_aggregate.get(topic.partition(".")[0], 100)
        for projection_class in PROJECTIONS
        for topic in projection_class.topics()
    }
    shares = share_among_processes(PROJECTIONS, events_by_topic, 2, sql_applied=True)
    names = [{projection_class.name for projection_class in share} for share in shares]
    assert len(names) == 2 and set().union(*names) == set(by_name)
    # Projections that decode mostly booking events go together.
    assert any({"bookings", "analytics", "kitchens"} <= share for share in names)
    for share in shares:
        assert share == [p for p in PROJECTIONS if p in share]  # in PROJECTIONS order
    assert share_among_processes(PROJECTIONS, events_by_topic, 1, sql_applied=True) == [
        list(PROJECTIONS)
    ]
    # An empty store: nothing to share.
    assert share_among_processes(PROJECTIONS, {}, 4, sql_applied=True) == [list(PROJECTIONS)]


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue  # gone meanwhile
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def test_terminating_a_rebuild_in_several_processes_ends_them_all(
    runtime: Runtime, read_side: ReadSide, database_url: str
) -> None:
    catch_up_all(runtime, read_side)
    locks = [
        lock_factory(Settings(database_url=database_url).database)(projection_class.name)
        for projection_class in PROJECTIONS
    ]
    for lock in locks:
        assert lock.try_acquire()  # this test process is "the server": the rebuild follows
    try:
        rebuild = start_cli(database_url, "projections", "rebuild", "all", "--processes", "2")

        def rebuilding_in_children() -> list[int]:
            """Its children, once every projection's rebuild was asked for by them and
            the command handles SIGTERM (it does once they are started)."""
            assert rebuild.poll() is None
            with read_side.write_database.reading() as sql:
                asked = all(len(generations(sql, p.name)) == 2 for p in PROJECTIONS)
            children = children_of(rebuild.pid)
            ready = asked and len(children) == 2 and handles_signal(rebuild.pid, signal.SIGTERM)
            return children if ready else []

        children = wait_until(
            rebuilding_in_children, PROCESS_TIMEOUT_S, "the rebuild to run in two children"
        )

        rebuild.send_signal(signal.SIGTERM)
        rebuild.communicate(timeout=PROCESS_TIMEOUT_S)
        assert rebuild.returncode == 1
        for child in children:
            assert not Path(f"/proc/{child}").exists()
        # The generations are left building, for the projections' runners to finish.
        with read_side.write_database.reading() as sql:
            for projection_class in PROJECTIONS:
                states = [g.state for g in generations(sql, projection_class.name)]
                assert states == ["running", "building"]
    finally:
        for lock in locks:
            lock.release()


@pytest.mark.parametrize("processes", ["0", "-1", "two", ""])
def test_rebuild_refuses_a_number_of_processes_below_one(cli: RunCli, processes: str) -> None:
    ran = cli("projections", "rebuild", "all", "--processes", processes)
    assert ran.code == 2
    assert f"a number of processes is a whole number from 1: {processes!r}" in ran.err


def test_rebuild_of_an_unknown_projection_lists_the_names(cli: RunCli) -> None:
    ran = cli("projections", "rebuild", "audit", "nonsense")
    assert ran.code == 2
    assert "no projection 'nonsense'" in ran.err
    for projection_class in PROJECTIONS:
        assert projection_class.name in ran.err


def test_rebuild_follows_the_process_that_runs_the_projection(
    runtime: Runtime, read_side: ReadSide, database_url: str
) -> None:
    catch_up_all(runtime, read_side)
    lock = lock_factory(Settings(database_url=database_url).database)("audit")
    assert lock.try_acquire()  # this test process is "the server"
    try:
        rebuild = subprocess.Popen(
            [sys.executable, "-m", "prep_es.cli", "projections", "rebuild", "audit"],
            cwd=REPOSITORY,
            env=environment(database_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        output = ProcessOutput(rebuild)
        # It asks for the rebuild, then follows and reports, without touching the
        # generation.
        output.wait_for_line("audit: generation 2: position 0 of", PROCESS_TIMEOUT_S)
        with read_side.write_database.reading() as sql:
            assert [g.position for g in generations(sql, "audit")] == [runtime.app.position(), 0]
        ProjectionRunner(AuditProjection, runtime.app, read_side.write_database).catch_up()
        out, err = output.communicate(PROCESS_TIMEOUT_S)
    finally:
        lock.release()
    assert rebuild.returncode == 0, err
    assert "audit: generation 2: position 0 of" in out
    assert "generation 2 switched in" in out


class Poisoned(Projection):
    name: ClassVar[str] = "poisoned"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("seen",)

    def create_tables(self, sql: Sql) -> None:
        sql.execute(f"CREATE TABLE {self.table('seen')} (position bigint PRIMARY KEY)")

    @fold(*AuditProjection.event_types)
    def _seen(self, event: Any, position: int, sql: Sql) -> None:
        if type(event).__name__ == "TopUpCredited":
            raise ValueError("cannot read this credit")
        sql.execute(f"INSERT INTO {self.table('seen')} (position) VALUES (%s)", (position,))


def test_status_reports_where_and_why_a_projection_failed(
    runtime: Runtime, read_side: ReadSide
) -> None:
    ensure_ready(read_side.write_database, Poisoned)
    with pytest.raises(ProjectionFailed) as failed:
        ProjectionRunner(Poisoned, runtime.app, read_side.write_database).catch_up()

    [status] = projection_statuses(runtime.app, read_side.write_database, [Poisoned])
    assert status.state == "failed"
    assert status.failure is not None
    assert status.failure.position == failed.value.position
    assert status.failure.topic == "Account.TopUpCredited"
    assert "ValueError: cannot read this credit" in status.failure.error
    assert status.position < status.failure.position
    assert status.lag_events == runtime.app.position() - status.position > 0
    described = "\n".join(describe_statuses([status]))
    assert f"stopped at position {failed.value.position} (Account.TopUpCredited)" in described


def test_project_runs_every_projection_until_sigterm(
    runtime: Runtime, read_side: ReadSide, database_url: str
) -> None:
    positions = ReadPositions(read_side.query_database)
    positions.start()
    project = start_cli(database_url, "project")
    try:
        for projection_class in PROJECTIONS:
            positions.wait_for(projection_class.name, runtime.app.position(), PROCESS_TIMEOUT_S)
    finally:
        positions.close()
        project.send_signal(signal.SIGTERM)
        out, err = project.communicate(timeout=PROCESS_TIMEOUT_S)
    assert project.returncode == 0, err
    assert out == ""
    assert "projecting audit" in err
    assert "received SIGTERM: stopping" in err
    assert err.rstrip().endswith("stopped")


def child_commands(pid: int) -> list[str]:
    """The command lines of ``pid``'s child processes (Linux)."""
    commands = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            commands.append(command)
    return commands


def held_elsewhere(lock: RunnerLock) -> bool:
    """Whether another process holds ``lock`` (it is not taken here)."""
    if not lock.try_acquire():
        return True
    lock.release()
    return False


def test_project_sweeps_in_a_child_process_that_ends_with_it(
    runtime: Runtime, database_url: str
) -> None:
    project = start_cli(database_url, "project")
    sweeper_lock = lock_factory(Settings(database_url=database_url).database)(SWEEPER_LOCK_NAME)
    try:
        sweepers = wait_until(
            lambda: [c for c in child_commands(project.pid) if "sweep --every" in c],
            PROCESS_TIMEOUT_S,
            "a sweeper process",
        )
        wait_until(lambda: held_elsewhere(sweeper_lock), PROCESS_TIMEOUT_S, "the sweeper to sweep")
    finally:
        sweeper_lock.release()
        project.send_signal(signal.SIGTERM)
        _, err = project.communicate(timeout=PROCESS_TIMEOUT_S)
    assert project.returncode == 0, err
    assert len(sweepers) == 1, err
    assert f"--parent {project.pid}" in sweepers[0]
    assert "sweeping every 30 s" in err
    assert err.rstrip().endswith("stopped")
    assert not child_commands(project.pid)


def test_sweep_every_runs_until_sigterm_or_until_its_parent_is_gone(database_url: str) -> None:
    sweeper = start_cli(database_url, "sweep", "--every", "0.2")
    output = ProcessOutput(sweeper)
    # Said once its SIGTERM handler is in place: a SIGTERM before would end it at once.
    output.wait_for_line("sweeping every 0.2 s", PROCESS_TIMEOUT_S, stream="err")
    sweeper_lock = lock_factory(Settings(database_url=database_url).database)(SWEEPER_LOCK_NAME)
    wait_until(lambda: held_elsewhere(sweeper_lock), PROCESS_TIMEOUT_S, "the sweeper to sweep")
    assert sweeper.poll() is None  # still sweeping
    sweeper.send_signal(signal.SIGTERM)
    _, err = output.communicate(PROCESS_TIMEOUT_S)
    assert sweeper.returncode == 0, err
    assert "sweeping every 0.2 s" in err and "received SIGTERM: stopping" in err

    # Told a parent it does not have: as if the process that started it had died.
    orphan = start_cli(database_url, "sweep", "--every", "0.2", "--parent", "1")
    _, err = orphan.communicate(timeout=PROCESS_TIMEOUT_S)
    assert orphan.returncode == 0, err
    assert "the process that started this sweeper is gone: stopping" in err


def test_sweep_every_refuses_an_interval_that_is_not_a_positive_number(cli: RunCli) -> None:
    for text in ("0", "-1", "soon", "nan"):
        ran = cli("sweep", "--every", text)
        assert ran.code == 2, text
        assert "expected seconds between 0 and 86400" in ran.err
