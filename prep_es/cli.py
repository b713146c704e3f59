"""The ``prep-es`` command line.

Configuration comes only from ``PREP_ES_*`` environment variables (:func:`load_settings`).
Output is for people by default; ``--json`` prints one JSON document for machines.

Exit status:

- 0  done (also: ``demo`` when the demo data is already loaded)
- 1  refused or failed: a domain error (``error: <code>: <detail>``) or the database
     could not be reached
- 2  bad usage or bad configuration (the message says which variable or argument)
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO
from uuid import UUID, uuid4

import orjson
from eventsourcing.persistence import PersistenceError
from pydantic import BaseModel

from aggregates.errors import DomainError, InvalidRequest
from aggregates.user import ROLES
from commands.context import CommandContext
from commands.users import CreateUser
from prep_es.demo import describe_report, load_demo
from prep_es.server import (
    GRACEFUL_TIMEOUT_S_DEFAULT,
    HOST_DEFAULT,
    PORT_DEFAULT,
    WORKERS_MAX,
    ServeOptions,
    ServeRefused,
    serve,
)
from prep_es.services.container import SWEEPER_STOP_TIMEOUT_S, locked_sweeper
from prep_es.services.logs import configure_logging
from prep_es.services.readside import lock_factory, open_read_side, start_projectors
from prep_es.services.redis_namespace import redis_namespace
from prep_es.services.runtime import open_runtime, tune_garbage_collection
from prep_es.store.eventstore import open_application
from prep_es.store.replay import (
    AggregateReplay,
    format_timestamp,
    parse_point_in_time,
    replay_aggregate,
)
from prep_es.store.settings import Settings, SettingsError, SqliteLocation, load_settings
from projections import PROJECTIONS, Projection
from projections.failures import ProjectionFailed
from projections.locks import RunnerLock
from projections.rebuilds import share_among_processes
from projections.runners import (
    EventDecoder,
    GenerationState,
    ProjectionRunner,
    applies_by_sql,
    generations,
    request_rebuild,
)
from projections.status import ProjectionFailure, ProjectionStatus, projection_statuses
from queries.cache import RedisQueryCache
from queries.redis_circuit import RedisCircuit

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
PASSWORD_FROM_STDIN: Final = "-"
REBUILD_PROGRESS_INTERVAL_S: Final = 1.0
REBUILD_FOLLOW_INTERVAL_S: Final = 0.25
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
STOP_CHECK_INTERVAL_S: Final = 0.5

logger = logging.getLogger("prep_es.cli")

Handler = Callable[[argparse.Namespace, Settings], int]


class UsageError(Exception):
    """The arguments cannot work with this configuration (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``prep-es`` with ``argv`` (default: the process arguments); the exit status."""
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    handler: Handler = arguments.handler
    try:
        settings = load_settings()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    try:
        return handler(arguments, settings)
    except DomainError as error:
        print(f"error: {error.code}: {error.detail}", file=sys.stderr)
        return EXIT_FAILED
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except PersistenceError as error:
        print(f"error: database_error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (`prep-es replay ... | head`): nothing left to say.
        _silence_stdout()
        return EXIT_FAILED


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prep-es",
        description="Prep ES, the event-sourced booking ledger of Prep. Configured by "
        "PREP_ES_* environment variables (PREP_ES_DATABASE_URL, ...).",
        epilog="Exit status: 0 done, 1 refused or failed, 2 bad usage or configuration.",
    )
    subcommands = parser.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", required=True
    )

    users = subcommands.add_parser("users", help="manage users")
    user_commands = users.add_subparsers(
        title="users commands", metavar="COMMAND", dest="users_command", required=True
    )
    create = user_commands.add_parser(
        "create",
        help="create a user of any role",
        description="Create a user of any role (customer, host, admin, analyst), with "
        "their account.",
    )
    create.add_argument("--email", required=True, help="unique, compared case-insensitively")
    create.add_argument(
        "--password",
        required=True,
        help="at least 12 characters. Pass '-' to read it from standard input (the first "
        "line; prompted without echo on a terminal), which keeps it out of the shell "
        "history and the process list.",
    )
    create.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    create.add_argument(
        "--full-name", help="the user's name (default: the part of the email before @)"
    )
    _add_json_flag(create)
    create.set_defaults(handler=_users_create)

    replay = subcommands.add_parser(
        "replay",
        help="print an aggregate's history and reconstructed state",
        description="Print an aggregate's events (version, type, time, actor, request, "
        "correlation, payload) and its state rebuilt from them: at its latest version, at "
        "--version N, or as of --as-of TIMESTAMP (the state after every event recorded "
        "then or before). Password hashes are printed as ***.",
    )
    replay.add_argument(
        "aggregate_id",
        metavar="AGGREGATE_ID",
        type=_aggregate_id,
        help="the id of a user, kitchen, booking, account, ... (a UUID)",
    )
    point = replay.add_mutually_exclusive_group()
    point.add_argument(
        "--version",
        type=_whole_number_from_1("a version"),
        metavar="N",
        help="rebuild the state at version N",
    )
    point.add_argument(
        "--as-of",
        type=_point_in_time,
        metavar="TIMESTAMP",
        help="RFC 3339 with an offset (2030-01-07T17:00:00Z, 2030-01-07T09:00:00-08:00) or "
        "a date YYYY-MM-DD (00:00 UTC that day); times without an offset are refused",
    )
    _add_json_flag(replay)
    replay.set_defaults(handler=_replay)

    sweep = subcommands.add_parser(
        "sweep",
        help="run the time-driven transitions once",
        description="Expire pending bookings that reached their start, complete confirmed "
        "bookings 24 h after their end, record certificate lapses. Safe to run at any "
        "time and in several processes: each transition happens once.",
    )
    _add_json_flag(sweep)
    sweep.add_argument(
        "--every",
        type=_interval,
        metavar="SECONDS",
        help="sweep at once and then every SECONDS until SIGINT or SIGTERM; one process "
        "sweeps at a time, others stand by (logs to standard error)",
    )
    sweep.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    sweep.set_defaults(handler=_sweep)

    demo = subcommands.add_parser(
        "demo",
        help="load realistic demo data",
        description="Load demo data through the command handlers: users of every role, "
        "funded accounts, kitchens in Los Angeles and San Francisco in every moderation "
        "state, certificates, bookings in every status and a payout. Does nothing if the "
        "demo is already loaded.",
    )
    demo.add_argument(
        "--reset",
        action="store_true",
        help="first delete the embedded SQLite database file (all its events and read "
        "models). Refused for PostgreSQL: its event store is append-only; drop and "
        "recreate the database instead.",
    )
    _add_json_flag(demo)
    demo.set_defaults(handler=_demo)

    projections = subcommands.add_parser("projections", help="inspect and rebuild read models")
    projection_commands = projections.add_subparsers(
        title="projections commands",
        metavar="COMMAND",
        dest="projections_command",
        required=True,
    )
    status = projection_commands.add_parser(
        "status",
        help="where each read model is and how far behind",
        description="Per projection: the active generation and its code version, state "
        "(running, failed, not_started), position, the event store head, lag in events and "
        "in seconds (since the first unapplied event was recorded), events applied; for a "
        "failed one the position, topic and error it stopped at; generations being rebuilt "
        "with their progress.",
    )
    _add_json_flag(status)
    status.set_defaults(handler=_projections_status)
    rebuild = projection_commands.add_parser(
        "rebuild",
        help="rebuild read models from position 0 without downtime",
        description="Start a new generation of each projection NAME (or of every "
        "projection: all) from position 0; queries keep reading the current one until the "
        "new one has caught up and switches in. If no other process runs a projection, "
        "this command builds it; otherwise it follows the running server's progress. "
        "Prints progress until every switch.",
    )
    rebuild.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help=f"one or more of {', '.join(_projection_names())}, or all",
    )
    rebuild.add_argument(
        "--processes",
        type=_whole_number_from_1("a number of processes"),
        default=os.cpu_count() or 1,
        metavar="N",
        help="share the projections among up to N processes (default: the number of "
        "CPUs); projections that decode the same events stay together",
    )
    _add_json_flag(rebuild)
    rebuild.set_defaults(handler=_projections_rebuild)

    project = subcommands.add_parser(
        "project",
        help="run the projectors (and the sweeper) until stopped",
        description="Keep every read model current until SIGINT or SIGTERM, then stop "
        "after the batches in progress. Safe to run in several processes: one runs each "
        "projection, the others stand by and take over when it goes away. Also runs the "
        "sweeper every PREP_ES_SWEEP_INTERVAL_S (the time-driven transitions; idempotent, "
        "safe in several processes), which API servers started with --no-projector leave "
        "to this worker. Logs to standard error.",
    )
    project.add_argument(
        "--no-sweeper",
        action="store_true",
        help="do not run the sweeper here (another process runs it)",
    )
    project.set_defaults(handler=_project)

    serve = subcommands.add_parser(
        "serve",
        help="run the HTTP API",
        description="Serve the HTTP API with uvicorn until SIGINT or SIGTERM, then let "
        "in-flight requests finish and stop the projectors cleanly. Unless --no-projector, "
        "each worker also runs the projectors and the sweeper; one runner per projection "
        "is active across all workers and processes. PostgreSQL mode refuses to start "
        "without PREP_ES_JWT_SECRET of at least 32 bytes.",
    )
    serve.add_argument(
        "--host", default=HOST_DEFAULT, help=f"interface to listen on (default {HOST_DEFAULT})"
    )
    serve.add_argument(
        "--port", type=_port, default=PORT_DEFAULT, help=f"TCP port (default {PORT_DEFAULT})"
    )
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help=f"worker processes, 1 to {WORKERS_MAX} (default 1); metrics are summed over them",
    )
    serve.add_argument(
        "--role",
        choices=("write", "read", "all"),
        help="serve command routes (write), query routes (read) or both (all; default: "
        "PREP_ES_API_ROLE, else all)",
    )
    serve.add_argument(
        "--no-projector",
        action="store_true",
        help="do not run projectors or the sweeper here (run `prep-es project` elsewhere)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=GRACEFUL_TIMEOUT_S_DEFAULT,
        metavar="SECONDS",
        help="on shutdown, how long in-flight requests may take to finish (default "
        f"{GRACEFUL_TIMEOUT_S_DEFAULT})",
    )
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )
    serve.set_defaults(handler=_serve)
    return parser


def _bounded_int(text: str, low: int, high: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{what} is a whole number from {low} to {high}: {text!r}")
    return value


def _port(text: str) -> int:
    return _bounded_int(text, 1, 65535, "a port")


def _worker_count(text: str) -> int:
    return _bounded_int(text, 1, WORKERS_MAX, "a worker count")


def _seconds(text: str) -> int:
    return _bounded_int(text, 1, 3600, "a timeout in seconds")


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 86400, got {text!r}")
    return value


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def _aggregate_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _whole_number_from_1(what: str) -> Callable[[str], int]:
    """An argument type: a whole number of 1 or more, named ``what`` when refused."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} is a whole number from 1: {text!r}")
        return value

    return parse


def _point_in_time(text: str) -> datetime:
    try:
        return parse_point_in_time(text)
    except InvalidRequest as error:
        raise argparse.ArgumentTypeError(error.detail) from None


def _cli_context() -> CommandContext:
    """Operators at a terminal are no user: no actor, a request id that says "cli"."""
    return CommandContext(actor=None, request_id=f"cli-{uuid4().hex}")


def _print_json(value: BaseModel | dict[str, Any]) -> None:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


# --- users create ----------------------------------------------------------------------


def _read_password(argument: str) -> str:
    if argument != PASSWORD_FROM_STDIN:
        return argument
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


def _users_create(arguments: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(arguments.password)
    email: str = arguments.email
    full_name: str = arguments.full_name or email.partition("@")[0]
    runtime = open_runtime(settings)
    try:
        executed = runtime.commands.users.create_user(
            CreateUser(email=email, password=password, full_name=full_name, role=arguments.role),
            _cli_context(),
        )
    finally:
        runtime.close()
    user = executed.result
    if arguments.json:
        _print_json({**user.model_dump(mode="json"), "position": executed.position})
    else:
        print(f"created user {user.id}")
        print(f"  email:     {user.email}")
        print(f"  role:      {user.role}")
        print(f"  full name: {user.full_name}")
        print(f"  account:   {user.account_id}")
    return EXIT_OK


# --- replay ----------------------------------------------------------------------------


def _replay(arguments: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings)
    try:
        replayed = replay_aggregate(
            runtime.app, arguments.aggregate_id, version=arguments.version, as_of=arguments.as_of
        )
    finally:
        runtime.close()
    if arguments.json:
        _print_json(replayed)
    else:
        print("\n".join(describe_replay(replayed)))
    return EXIT_OK


def describe_replay(replayed: AggregateReplay) -> list[str]:
    """A replay as lines of text: a heading, one block per event, then the state."""
    point = f"version {replayed.version} of {replayed.latest_version}"
    if replayed.as_of is not None:
        point += f", as of {format_timestamp(replayed.as_of)}"
    lines = [f"{replayed.aggregate_type} {replayed.aggregate_id} ({point})", "", "History:"]
    for event in replayed.events:
        actor = "no actor" if event.actor_id is None else f"{event.actor_id} ({event.actor_role})"
        lines.append(f"  v{event.version}  {format_timestamp(event.timestamp)}  {event.topic}")
        lines.append(f"      actor: {actor}")
        lines.append(f"      request: {event.request_id}  correlation: {event.correlation_id}")
        for name, value in event.payload.items():
            lines.append(f"      {name}: {_inline(value)}")
    lines += ["", f"State at version {replayed.version}:"]
    state = orjson.dumps(replayed.state, option=orjson.OPT_INDENT_2).decode()
    lines.extend(f"  {line}" for line in state.splitlines())
    return lines


def _inline(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# --- sweep -----------------------------------------------------------------------------


def _sweep(arguments: argparse.Namespace, settings: Settings) -> int:
    if arguments.every is not None:
        return _sweep_repeatedly(arguments.every, settings, parent=arguments.parent)
    runtime = open_runtime(settings)
    try:
        report = runtime.commands.sweeper.sweep()
    finally:
        runtime.close()
    # Transitions another process made meanwhile are not failures: only those that
    # failed (each is said on standard error) make the exit status 1.
    for failure in report.failed:
        print(
            f"error: {failure.transition} {failure.aggregate_id} failed: {failure.error}",
            file=sys.stderr,
        )
    status = EXIT_FAILED if report.failed else EXIT_OK
    if arguments.json:
        _print_json(report)
        return status
    print(
        f"sweep: expired {len(report.expired_booking_ids)} booking(s), "
        f"completed {len(report.completed_booking_ids)} booking(s), "
        f"lapsed {len(report.lapsed_certificate_ids)} certificate(s)"
    )
    for booking_id in report.expired_booking_ids:
        print(f"  expired booking       {booking_id}")
    for booking_id in report.completed_booking_ids:
        print(f"  completed booking     {booking_id}")
    for certificate_id in report.lapsed_certificate_ids:
        print(f"  lapsed certificate    {certificate_id}")
    return status


def _sweep_repeatedly(interval_s: float, settings: Settings, *, parent: int | None) -> int:
    """``sweep --every``: until stopped (or, started by ``project``, until that process
    is gone)."""
    _log_to_stderr()
    stopping = _stop_on_signals()
    runtime = open_runtime(settings)
    sweeper = locked_sweeper(runtime, interval_s)
    tune_garbage_collection()
    try:
        sweeper.start()
        logger.info("sweeping every %g s", interval_s)
        while not stopping.wait(STOP_CHECK_INTERVAL_S):
            if parent is not None and os.getppid() != parent:
                logger.info("the process that started this sweeper is gone: stopping")
                break
        sweeper.stop()
    finally:
        runtime.close()
    return EXIT_OK


def _log_to_stderr() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (the process's handlers from now on)."""
    stopping = threading.Event()

    def stop(signal_number: int, _frame: object) -> None:
        logger.info("received %s: stopping", signal.Signals(signal_number).name)
        stopping.set()

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    return stopping


# --- demo ------------------------------------------------------------------------------


def _demo(arguments: argparse.Namespace, settings: Settings) -> int:
    if arguments.reset:
        _delete_sqlite_database(settings)
    report = load_demo(settings)
    if report is None:
        if arguments.json:
            _print_json({"already_loaded": True})
        else:
            print("demo data already loaded (use --reset on an embedded database to reload)")
        return EXIT_OK
    if arguments.json:
        _print_json({"already_loaded": False, **report.model_dump(mode="json")})
    else:
        print("\n".join(describe_report(report)))
    return EXIT_OK


def _delete_sqlite_database(settings: Settings) -> None:
    location = settings.database
    if not isinstance(location, SqliteLocation):
        msg = (
            "--reset only deletes an embedded SQLite database; the PostgreSQL event store is "
            "append-only: drop and recreate the database instead"
        )
        raise UsageError(msg)
    if location.is_memory:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(location.path + suffix).unlink(missing_ok=True)


# --- projections -----------------------------------------------------------------------


def _projection_names() -> list[str]:
    return [projection_class.name for projection_class in PROJECTIONS]


def _projection_named(name: str) -> type[Projection]:
    for projection_class in PROJECTIONS:
        if projection_class.name == name:
            return projection_class
    msg = f"no projection {name!r}; projections: {', '.join(_projection_names())}"
    raise UsageError(msg)


def _projections_status(arguments: argparse.Namespace, settings: Settings) -> int:
    app = open_application(settings)
    read_side = open_read_side(settings)
    try:
        statuses = projection_statuses(app, read_side.write_database)
    finally:
        read_side.close()
        app.close()
    if arguments.json:
        _print_json({"projections": [status.model_dump(mode="json") for status in statuses]})
    else:
        print("\n".join(describe_statuses(statuses)))
    return EXIT_OK


def describe_statuses(statuses: Sequence[ProjectionStatus]) -> list[str]:
    """Projection statuses as lines of text: one block per projection."""
    lines = []
    for status in statuses:
        generation = (
            "no generation yet"
            if status.generation is None
            else f"generation {status.generation} (version {status.version})"
        )
        lines.append(f"{status.name}: {status.state}, {generation}")
        lines.append(
            f"  position {status.position} of {status.head}, lag {status.lag_events} "
            f"event(s), {status.lag_s:.1f} s; {status.events_applied} event(s) applied"
        )
        if status.failure is not None:
            lines.append(_describe_failure(status.failure))
        for building in status.building:
            lines.append(
                f"  {building.state} generation {building.generation} (version "
                f"{building.version}): position {building.position} of {status.head} "
                f"({building.progress:.0%}), {building.events_applied} event(s) applied"
            )
            if building.failure is not None:
                lines.append("  " + _describe_failure(building.failure))
    return lines


def _describe_failure(failure: ProjectionFailure) -> str:
    return f"  stopped at position {failure.position} ({failure.topic}): {failure.error}"


@dataclass(frozen=True)
class RebuildProgress:
    """How a rebuild goes: positions passed since it was watched, and the rate."""

    position: int
    head: int
    events_applied: int
    elapsed_s: float
    rate_per_s: float

    def describe(self, name: str, generation: int) -> str:
        left = max(0, self.head - self.position)
        if left == 0:
            remaining = "switching"
        elif self.rate_per_s > 0:
            remaining = f"about {left / self.rate_per_s:.0f} s left"
        else:
            remaining = "time left unknown"
        return (
            f"{name}: generation {generation}: position {self.position} of {self.head}, "
            f"{self.events_applied} event(s) applied, {self.rate_per_s:.0f} events/s, "
            f"{remaining}"
        )


REBUILD_ALL: Final = "all"


def _projections_named(names: Sequence[str]) -> list[type[Projection]]:
    """The projections ``names`` asks for (``all``: every one), in ``PROJECTIONS`` order."""
    wanted = set(_projection_names()) if REBUILD_ALL in names else set(names)
    for name in sorted(wanted):
        _projection_named(name)
    return [projection_class for projection_class in PROJECTIONS if projection_class.name in wanted]


@dataclass(frozen=True)
class RebuildSummary:
    name: str
    generation: int
    position: int
    events_applied: int
    elapsed_s: float

    def describe(self) -> str:
        return (
            f"{self.name}: generation {self.generation} switched in at position "
            f"{self.position} ({self.events_applied} event(s) applied, {self.elapsed_s:.1f} s)"
        )


def _projections_rebuild(arguments: argparse.Namespace, settings: Settings) -> int:
    projection_classes = _projections_named(arguments.names)
    progress_output = sys.stderr if arguments.json else sys.stdout
    started = time.monotonic()
    shares = _rebuild_shares(projection_classes, settings, arguments.processes)
    if len(shares) > 1:
        summaries, failed = _rebuild_in_processes(shares, settings, progress_output)
    else:
        summaries, failed = _rebuild_here(projection_classes, settings, progress_output)
    if arguments.json:
        if len(projection_classes) == 1 and summaries:
            _print_json(dataclasses.asdict(summaries[0]))
        else:
            _print_json(
                {
                    "projections": [dataclasses.asdict(summary) for summary in summaries],
                    "elapsed_s": round(time.monotonic() - started, 3),
                }
            )
    else:
        for summary in summaries:
            print(summary.describe())
    return EXIT_FAILED if failed else EXIT_OK


def _rebuild_shares(
    projection_classes: Sequence[type[Projection]], settings: Settings, processes: int
) -> list[list[type[Projection]]]:
    """The projections each process rebuilds (see ``projections.rebuilds``): all in this
    one when one process is asked for, or where processes cannot be forked."""
    if (
        processes == 1
        or len(projection_classes) == 1
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return [list(projection_classes)]
    app = open_application(settings)
    read_side = open_read_side(settings)
    try:
        return share_among_processes(
            projection_classes,
            app.events_by_topic(),
            processes,
            sql_applied=applies_by_sql(app, read_side.write_database),
        )
    finally:
        read_side.close()
        app.close()


def _rebuild_in_processes(
    shares: Sequence[Sequence[type[Projection]]], settings: Settings, progress_output: TextIO
) -> tuple[list[RebuildSummary], bool]:
    """Each share rebuilt by a process forked from this one (nothing to import or
    configure again), which reports its summaries back; whether any failed."""
    context = multiprocessing.get_context("fork")
    results: multiprocessing.SimpleQueue[tuple[list[RebuildSummary], bool]] = context.SimpleQueue()
    sys.stdout.flush()
    sys.stderr.flush()
    children = [
        context.Process(
            target=_rebuild_share,
            args=(share, settings, progress_output, results),
            name=f"rebuild-{'-'.join(p.name for p in share)}",
        )
        for share in shares
    ]
    for child in children:
        child.start()

    def stop_children(signum: int, frame: object) -> None:
        # Terminated, a rebuild stops where it is, in one process or in several: its
        # generations go on building in whichever process runs their projections next.
        for child in children:
            child.terminate()

    # After the forks: the children keep the default, which ends them.
    previous = signal.signal(signal.SIGTERM, stop_children)
    try:
        for child in children:
            while True:
                try:
                    child.join()
                    break
                except KeyboardInterrupt:
                    continue  # the children had the interrupt too: let them stop
    finally:
        signal.signal(signal.SIGTERM, previous)
    summaries: list[RebuildSummary] = []
    failed = any(child.exitcode != 0 for child in children)
    while not results.empty():
        share_summaries, share_failed = results.get()
        summaries += share_summaries
        failed |= share_failed
    order = {name: index for index, name in enumerate(_projection_names())}
    summaries.sort(key=lambda summary: order[summary.name])
    return summaries, failed


def _rebuild_share(
    share: Sequence[type[Projection]],
    settings: Settings,
    progress_output: TextIO,
    results: multiprocessing.SimpleQueue[tuple[list[RebuildSummary], bool]],
) -> None:
    results.put(_rebuild_here(share, settings, progress_output))


def _rebuild_here(
    projection_classes: Sequence[type[Projection]], settings: Settings, progress_output: TextIO
) -> tuple[list[RebuildSummary], bool]:
    """Rebuild ``projection_classes`` in this process, one thread each sharing one event
    decoder (as ``prep-es project`` runs them); whether any failed or was interrupted."""
    app = open_application(settings)
    read_side = open_read_side(settings)
    locks = [lock_factory(settings.database)(p.name) for p in projection_classes]
    stopping = threading.Event()
    summaries: dict[str, RebuildSummary] = {}
    failures: list[str] = []
    try:
        decoder = EventDecoder(app)
        watches = []
        for projection_class, lock in zip(projection_classes, locks, strict=True):
            generation = request_rebuild(read_side.write_database, projection_class)
            print(
                f"{projection_class.name}: building generation {generation} from position "
                "0; queries read the current generation until it switches in",
                file=progress_output,
                flush=True,
            )
            runner = ProjectionRunner(
                projection_class, app, read_side.write_database, decoder=decoder
            )
            watches.append(_RebuildWatch(runner, lock, generation, stopping))
        tune_garbage_collection()

        def watch(rebuild: _RebuildWatch) -> None:
            name, generation = rebuild.runner.name, rebuild.generation
            try:
                state, progress = rebuild.run(
                    lambda progress: print(
                        progress.describe(name, generation), file=progress_output, flush=True
                    )
                )
            except RebuildStopped as stopped:
                failures.append(name)
                if not stopping.is_set():
                    print(f"error: rebuild_failed: {stopped}", file=sys.stderr, flush=True)
                return
            summaries[name] = RebuildSummary(
                name,
                generation,
                state.position,
                state.events_applied,
                round(progress.elapsed_s, 3),
            )

        threads = [
            threading.Thread(target=watch, args=(rebuild,), name=f"rebuild-{rebuild.runner.name}")
            for rebuild in watches
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:
            stopping.set()
            for thread in threads:
                thread.join()
            print(
                "interrupted: the generations not yet switched in go on building in "
                "whichever process runs their projections next",
                file=sys.stderr,
            )
            failures.append("interrupted")
    finally:
        for lock in locks:
            lock.release()
        read_side.close()
        app.close()
    ordered = [summaries[p.name] for p in projection_classes if p.name in summaries]
    return ordered, bool(failures)


class RebuildStopped(Exception):
    """The generation being rebuilt failed on an event or was replaced (exit 1)."""


class _RebuildWatch:
    """Drives (while this process holds the projection's lock) or follows (while another
    does) one generation until it is active, failed, or gone."""

    def __init__(
        self,
        runner: ProjectionRunner,
        lock: RunnerLock,
        generation: int,
        stopping: threading.Event,
    ) -> None:
        self.runner = runner
        self.lock = lock
        self.generation = generation
        self.stopping = stopping
        self.started = time.monotonic()

    def run(
        self, report: Callable[[RebuildProgress], None]
    ) -> tuple[GenerationState, RebuildProgress]:
        """Until the generation switched in: its state then, and the last progress.
        Raises :class:`RebuildStopped` if it failed or was replaced."""
        state = self._state()
        start_position = 0 if state is None else state.position
        last_report = self.started
        progress = self._progress(state, start_position)
        while True:
            if self.stopping.is_set():
                raise RebuildStopped(f"generation {self.generation}: interrupted")
            if state is None:
                msg = f"generation {self.generation} was replaced before it switched in"
                raise RebuildStopped(msg)
            if state.active:
                return state, progress
            if self.lock.try_acquire():
                try:
                    self.runner.step()
                except ProjectionFailed as failure:
                    msg = (
                        f"projection {failure.name} stopped at position {failure.position} "
                        f"({failure.topic}): {failure.error}"
                    )
                    raise RebuildStopped(msg) from failure
            elif state.state == "failed":
                msg = (
                    f"generation {self.generation} stopped at position "
                    f"{state.failed_position} ({state.failed_topic}): {state.failed_error}; "
                    "the process running the projection retries it"
                )
                raise RebuildStopped(msg)
            else:
                time.sleep(REBUILD_FOLLOW_INTERVAL_S)
            state = self._state()
            progress = self._progress(state, start_position)
            if time.monotonic() - last_report >= REBUILD_PROGRESS_INTERVAL_S:
                last_report = time.monotonic()
                report(progress)

    def _state(self) -> GenerationState | None:
        with self.runner.database.reading() as sql:
            known = generations(sql, self.runner.name)
        state = next((s for s in known if s.generation == self.generation), None)
        return None if state is None or state.state == "retired" else state

    def _progress(self, state: GenerationState | None, start_position: int) -> RebuildProgress:
        elapsed_s = time.monotonic() - self.started
        position = 0 if state is None else state.position
        return RebuildProgress(
            position=position,
            head=max(position, self.runner.app.position()),
            events_applied=0 if state is None else state.events_applied,
            elapsed_s=elapsed_s,
            rate_per_s=(position - start_position) / elapsed_s if elapsed_s > 0 else 0.0,
        )


# --- project ---------------------------------------------------------------------------


def _project(arguments: argparse.Namespace, settings: Settings) -> int:
    _log_to_stderr()
    stopping = _stop_on_signals()
    runtime = open_runtime(settings)
    read_side = open_read_side(settings)
    # API processes that do not run projectors learn of read-model changes through the
    # shared query cache: mark them there, as their own projectors would.
    on_changes = (
        None
        if settings.redis_url is None
        else RedisQueryCache(
            settings.redis_url,
            namespace=redis_namespace(settings),
            circuit=RedisCircuit(settings.redis_cool_down_s),
        ).mark_changed
    )
    try:
        supervisor, append_signal = start_projectors(
            settings, runtime.app, read_side, on_changes=on_changes
        )
        tune_garbage_collection()
        logger.info(
            "projecting %s (one process runs each projection; others stand by)",
            ", ".join(_projection_names()),
        )
        # The sweeper reads every booking and certificate event into its agenda: in its
        # own process, that work never holds the runners' interpreter (it tripled the
        # projectors' p99 lag while it caught up).
        sweeper = None if arguments.no_sweeper else _start_sweeper_process(settings)
        while not stopping.wait(STOP_CHECK_INTERVAL_S):
            if sweeper is not None and sweeper.poll() is not None:
                logger.error("the sweeper exited (%s); starting another", sweeper.returncode)
                sweeper = _start_sweeper_process(settings)
        if sweeper is not None:
            sweeper.terminate()
            sweeper.wait(SWEEPER_STOP_TIMEOUT_S)
        supervisor.stop()
        append_signal.stop()
        logger.info("stopped")
    finally:
        read_side.close()
        runtime.close()
    return EXIT_OK


def _start_sweeper_process(settings: Settings) -> subprocess.Popen[bytes]:
    """``prep-es sweep --every`` beside this process, with its environment (so its
    settings), ending when this process does."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prep_es.cli",
            "sweep",
            "--every",
            str(settings.sweep_interval_s),
            "--parent",
            str(os.getpid()),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


# --- serve -----------------------------------------------------------------------------


def _serve(arguments: argparse.Namespace, settings: Settings) -> int:
    configure_logging()
    options = ServeOptions(
        host=arguments.host,
        port=arguments.port,
        workers=arguments.workers,
        role=arguments.role,
        run_projectors=False if arguments.no_projector else None,
        graceful_timeout_s=arguments.graceful_timeout,
        access_log=not arguments.no_access_log,
    )
    try:
        serve(settings, options)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except ServeRefused as error:
        raise UsageError(str(error)) from None
    except SystemExit as stopped:  # uvicorn: the server could not start
        print(f"error: server_failed: the server did not start ({stopped.code})", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
