"""``prep-es demo``: load the demo data (after deleting an embedded database on --reset)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prep_es.cli.terminal import EXIT_OK, UsageError, print_json
from prep_es.demo import describe_report, load_demo
from prep_es.store.settings import Settings, SqliteLocation


def run_demo(arguments: argparse.Namespace, settings: Settings) -> int:
    if arguments.reset:
        _delete_sqlite_database(settings)
    report = load_demo(settings)
    if report is None:
        if arguments.json:
            print_json({"already_loaded": True})
        else:
            print("demo data already loaded (use --reset on an embedded database to reload)")
        return EXIT_OK
    if arguments.json:
        print_json({"already_loaded": False, **report.model_dump(mode="json")})
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
