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
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

import orjson
from eventsourcing.persistence import PersistenceError
from pydantic import BaseModel

from aggregates.errors import DomainError, InvalidRequest
from aggregates.user import ROLES
from commands.handling import CommandContext
from commands.users import CreateUser
from prep_es.demo import describe_report, load_demo
from prep_es.replay import (
    AggregateReplay,
    format_timestamp,
    parse_point_in_time,
    replay_aggregate,
)
from prep_es.runtime import open_runtime
from prep_es.settings import Settings, SettingsError, SqliteLocation, load_settings

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
PASSWORD_FROM_STDIN: Final = "-"

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
        "--version", type=_positive_int, metavar="N", help="rebuild the state at version N"
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
    return parser


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def _aggregate_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a version is a whole number from 1: {text!r}")
    return value


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
    runtime = open_runtime(settings)
    try:
        report = runtime.commands.sweeper.sweep()
    finally:
        runtime.close()
    if arguments.json:
        _print_json(report)
        return EXIT_OK
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
    return EXIT_OK


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


if __name__ == "__main__":
    sys.exit(main())
