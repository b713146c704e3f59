"""The ``prep-es`` command line.

Configuration comes only from ``PREP_ES_*`` environment variables (:func:`load_settings`).
Output is for people by default; ``--json`` prints one JSON document for machines.

Exit status:

- 0  done (also: ``demo`` when the demo data is already loaded)
- 1  refused or failed: a domain error (``error: <code>: <detail>``) or the database
     could not be reached
- 2  bad usage or bad configuration (the message says which variable or argument)

Here: :func:`main` and its dispatch. ``parser`` names the commands and their arguments;
each command runs in a module of its own (``users_create``, ``replay``, ``sweep``,
``demo``, ``projections_status``, ``projections_rebuild`` with ``rebuild_watch``,
``project``, ``serve``, ``keys``, ``store_migrate``); ``terminal`` holds what they share
at the terminal, ``long_running`` what the commands that run until stopped share, and
``projection_names`` the projections a command may name.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from eventsourcing.persistence import PersistenceError

from aggregates.errors import DomainError
from prep_es.cli.parser import build_parser
from prep_es.cli.terminal import EXIT_FAILED, EXIT_USAGE, UsageError
from prep_es.store.key_rotation import RotationRefused
from prep_es.store.personal_keys import MasterKeyError
from prep_es.store.pre_encryption import NotPreEncryptionStore, UnmigratedStore
from prep_es.store.settings import Settings, SettingsError, load_settings
from prep_es.store.store_migration import MigrationRefused

REFUSALS: dict[type[Exception], tuple[str, int]] = {
    MasterKeyError: ("master_key", EXIT_USAGE),
    UnmigratedStore: ("store_not_migrated", EXIT_FAILED),
    MigrationRefused: ("migration_refused", EXIT_FAILED),
    NotPreEncryptionStore: ("not_a_store_written_before_encryption", EXIT_FAILED),
    RotationRefused: ("rotation_refused", EXIT_FAILED),
}
"""What the store refuses to do, by exception: the code printed and the exit status."""

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``prep-es`` with ``argv`` (default: the process arguments); the exit status."""
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    handler: Handler = arguments.handler
    try:
        settings = load_settings(require_master_key=not getattr(arguments, "opens_no_store", False))
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
    except tuple(REFUSALS) as error:
        code, status = REFUSALS[type(error)]
        print(f"error: {code}: {error}", file=sys.stderr)
        return status
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
