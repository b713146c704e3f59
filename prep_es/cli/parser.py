"""The ``prep-es`` commands, their arguments, and the handler each one runs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from aggregates.errors import InvalidRequest
from aggregates.user import ROLES
from prep_es.cli.demo import run_demo
from prep_es.cli.keys import (
    run_keys_generate,
    run_keys_reapply_erasures,
    run_keys_rotate,
    run_keys_status,
)
from prep_es.cli.payments_reconcile import run_payments_reconcile
from prep_es.cli.project import run_project
from prep_es.cli.projection_names import projection_names
from prep_es.cli.projections_rebuild import run_projections_rebuild
from prep_es.cli.projections_status import run_projections_status
from prep_es.cli.replay import run_replay
from prep_es.cli.serve import run_serve
from prep_es.cli.store_migrate import run_store_migrate
from prep_es.cli.sweep import run_sweep
from prep_es.cli.users_create import run_users_create
from prep_es.server import GRACEFUL_TIMEOUT_S_DEFAULT, HOST_DEFAULT, PORT_DEFAULT, WORKERS_MAX
from prep_es.store.replay import parse_point_in_time
from prep_es.store.store_migration import BATCH_SIZE_DEFAULT, BATCH_SIZE_MAX


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
    create.set_defaults(handler=run_users_create)

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
    replay.set_defaults(handler=run_replay)

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
    sweep.set_defaults(handler=run_sweep)

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
    demo.set_defaults(handler=run_demo)

    _add_operator_commands(subcommands)

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
    status.set_defaults(handler=run_projections_status)
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
        help=f"one or more of {', '.join(projection_names())}, or all",
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
    rebuild.set_defaults(handler=run_projections_rebuild)

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
    project.set_defaults(handler=run_project)

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
    serve.set_defaults(handler=run_serve)
    return parser


def _add_operator_commands(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """What operators run against the money, the keys and the store."""
    _add_payments_commands(subcommands)
    _add_keys_commands(subcommands)
    _add_store_commands(subcommands)


def _add_payments_commands(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    payments = subcommands.add_parser("payments", help="check money against the provider")
    payment_commands = payments.add_subparsers(
        dest="payments_command", metavar="COMMAND", required=True
    )
    reconcile = payment_commands.add_parser(
        "reconcile",
        help="compare the payment provider's records with the ledger",
        description="Compare the payment provider's payments and transfers (the sandbox's "
        "tables, or Stripe's API) with the ledger's top-ups, payouts and refunds in the "
        "event store, and print every difference: a confirmed payment never credited, a "
        "credit with no confirmed payment, amounts that differ, a transfer paid but not "
        "posted and the reverse. Exit status 1 when there is any.",
    )
    reconcile.add_argument(
        "--since",
        type=_point_in_time,
        metavar="TIME",
        help="only what was made since TIME (RFC 3339 with an offset, or YYYY-MM-DD)",
    )
    _add_json_flag(reconcile)
    reconcile.set_defaults(handler=run_payments_reconcile)


def _add_keys_commands(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    keys = subcommands.add_parser("keys", help="the master key and the data keys of personal data")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    generate = key_commands.add_parser(
        "generate",
        help="print a new master key",
        description="Print a new random master key (32 bytes, base64url), for "
        "PREP_ES_MASTER_KEY. Nothing is stored.",
    )
    # It opens no store: it is what an operator runs to get the key the store needs.
    generate.set_defaults(handler=run_keys_generate, opens_no_store=True)
    rotate = key_commands.add_parser(
        "rotate",
        help="rewrap every data key with the current master key",
        description="Rewrap every person's data key with the current master key, in one "
        "transaction, without touching an event. With the master key in the environment "
        "(PostgreSQL): run with PREP_ES_MASTER_KEY=new and PREP_ES_PREVIOUS_MASTER_KEY=old, "
        "as every process runs meanwhile; then restart them without the previous key. "
        "Embedded, with the key in <db>.master-key: with every process of the database "
        "stopped, makes a new key, rewraps, puts the new key in place and leaves the old "
        "one in <db>.master-key.previous for the backups taken before. Run again after an "
        "interruption, it finishes the same rotation.",
    )
    _add_json_flag(rotate)
    rotate.set_defaults(handler=run_keys_rotate)
    status = key_commands.add_parser(
        "status",
        help="count the data keys by master key, and the erased ones",
        description="How many data keys each master key wraps (current, previous or "
        "unknown), how many were destroyed, how many users were erased, and which of them "
        "hold a data key again (an old backup of the key table restored). Exit status 1 "
        "when a data key is wrapped by an unknown master key or an erased user holds one.",
    )
    _add_json_flag(status)
    status.set_defaults(handler=run_keys_status)
    reapply = key_commands.add_parser(
        "reapply-erasures",
        help="destroy again the data keys of erased users",
        description="Destroy the data key of every user whose erasure is recorded but who "
        "holds a key: what an old backup of the key table brings back. Run after "
        "restoring one.",
    )
    _add_json_flag(reapply)
    reapply.set_defaults(handler=run_keys_reapply_erasures)


def _add_store_commands(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    store = subcommands.add_parser("store", help="the event store itself")
    store_commands = store.add_subparsers(dest="store_command", metavar="COMMAND", required=True)
    migrate = store_commands.add_parser(
        "migrate",
        help="copy a store written before encryption into a new store",
        description="Copy every event of the store PREP_ES_DATABASE_URL names, written by "
        "the release that kept personal data in plain text, into the new empty store --to "
        "names, in order, sealing personal fields with the new store's data keys "
        "(PREP_ES_MASTER_KEY, or embedded a key file made beside the new database) and "
        "moving email claims to their keyed ids. Snapshots are left behind. Then verify "
        "it event by event, and compare every read model rebuilt from either store. Run "
        "again, it copies only what the source gained since (the target must hold nothing "
        "else). Prints the cut-over steps. Exit status 1 when anything differs.",
    )
    migrate.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="the new store: sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DBNAME",
    )
    migrate.add_argument(
        "--batch-size",
        type=_bounded(1, BATCH_SIZE_MAX, "a batch size"),
        default=BATCH_SIZE_DEFAULT,
        metavar="N",
        help=f"events per transaction (default {BATCH_SIZE_DEFAULT})",
    )
    migrate.add_argument(
        "--quick",
        action="store_true",
        help="verify only the events this run copies, and leave the read models out (for "
        "the last run of a cut-over, after a full run)",
    )
    _add_json_flag(migrate)
    migrate.set_defaults(handler=run_store_migrate)


def _bounded(low: int, high: int, what: str) -> Callable[[str], int]:
    return lambda text: _bounded_int(text, low, high, what)


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
