"""``prep-es store migrate --to URL``: a store written by the release before encryption
copied into a new store, verified, and the cut-over steps printed (see
``prep_es.store.store_migration``)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

from prep_es.cli.terminal import EXIT_FAILED, EXIT_OK, UsageError, print_json
from prep_es.services.read_model_comparison import (
    TableComparison,
    Translation,
    compare_read_models,
)
from prep_es.services.readside import configured_projections
from prep_es.store.eventstore import PrepApplication, master_key_path
from prep_es.store.settings import (
    PostgresLocation,
    Settings,
    SqliteLocation,
    parse_database_url,
)
from prep_es.store.store_migration import (
    CopyReport,
    EventCheck,
    SourceStore,
    StoreMigration,
    count_snapshots,
    open_source_store,
    open_target_store,
    same_database,
)

PROGRESS_INTERVAL_S: Final = 5.0


@dataclass
class MigrationOutcome:
    source: str
    target: str
    master_key: str
    copy: CopyReport
    events: EventCheck
    snapshots_left_behind: int
    read_models: list[TableComparison] = field(default_factory=list)
    read_models_compared: bool = False

    @property
    def ok(self) -> bool:
        return self.events.ok and all(table.ok for table in self.read_models)


def run_store_migrate(arguments: argparse.Namespace, settings: Settings) -> int:
    target_url: str = arguments.to
    try:
        parse_database_url(target_url)
    except ValueError as error:
        raise UsageError(f"--to {error}") from None
    if same_database(settings, target_url):
        raise UsageError(
            "--to names the store PREP_ES_DATABASE_URL names: migrate into a new database"
        )
    source = open_source_store(settings)
    try:
        target = open_target_store(settings, target_url)
        try:
            outcome = _migrate(arguments, settings, source, target, target_url)
        finally:
            target.close()
    finally:
        source.close()
    if arguments.json:
        print_json(_as_json(outcome))
    else:
        print("\n".join(describe_outcome(outcome)))
        if outcome.ok:
            print()
            print("\n".join(cut_over_steps(settings, target_url)))
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _migrate(
    arguments: argparse.Namespace,
    settings: Settings,
    source: SourceStore,
    target: PrepApplication,
    target_url: str,
) -> MigrationOutcome:
    migration = StoreMigration(source, target, batch_size=arguments.batch_size)
    progress = _Progress()
    copy = migration.copy(progress.copied)
    source.head_position = copy.source_position
    events = migration.verify(
        after_events=copy.resumed_after if arguments.quick else 0,
        up_to_source_position=copy.source_position,
    )
    outcome = MigrationOutcome(
        source=_shown(settings.database_url),
        target=_shown(target_url),
        master_key=_master_key_source(settings, target_url, target),
        copy=copy,
        events=events,
        snapshots_left_behind=count_snapshots(source),
    )
    if not arguments.quick and events.ok:
        outcome.read_models = compare_read_models(
            source,
            target,
            configured_projections(settings),
            Translation(events.positions, events.moved_ids),
        )
        outcome.read_models_compared = True
    return outcome


class _Progress:
    """A line on standard error every few seconds while a long copy runs."""

    def __init__(self) -> None:
        self._shown_at = time.monotonic()

    def copied(self, events: int, elapsed_s: float) -> None:
        if time.monotonic() - self._shown_at < PROGRESS_INTERVAL_S:
            return
        self._shown_at = time.monotonic()
        print(f"copied {events} event(s) ({elapsed_s:.0f} s)", file=sys.stderr, flush=True)


def describe_outcome(outcome: MigrationOutcome) -> list[str]:
    copy, events = outcome.copy, outcome.events
    lines = [f"from {outcome.source}", f"into {outcome.target} ({outcome.master_key})"]
    if copy.resumed_after:
        lines.append(
            f"the target held the first {copy.resumed_after} event(s) already (an earlier "
            "run): copying from there"
        )
    lines.append(
        f"copied {copy.copied} event(s) in {copy.elapsed_s:.2f} s "
        f"({copy.events_per_s:.0f} events/s), {copy.moved} of them to a new aggregate id "
        f"(email claims and their keys); {copy.source_events} in the target now"
    )
    lines.append(
        f"snapshots left behind: {outcome.snapshots_left_behind} (a cache: the target takes "
        "its own as aggregates are saved)"
    )
    if events.ok:
        lines.append(
            f"verified {events.compared} event(s) in {events.elapsed_s:.2f} s: same "
            "aggregates, versions, topics and decoded payloads (claims keyed), every "
            "personal field sealed"
        )
    else:
        lines.append(f"{events.differing} event(s) differ:")
        lines += [f"  {difference}" for difference in events.differences]
    if outcome.read_models_compared:
        differing = [table for table in outcome.read_models if not table.ok]
        rows = sum(table.target_rows for table in outcome.read_models)
        if not differing:
            lines.append(
                f"verified the read models: {len(outcome.read_models)} table(s), {rows} "
                "row(s), the same rebuilt from either store"
            )
        for table in differing:
            lines.append(
                f"read model {table.projection}.{table.table} differs in "
                f"{table.differing_rows} row(s):"
            )
            lines += [f"  only from the source: {row}" for row in table.only_in_source]
            lines += [f"  only from the target: {row}" for row in table.only_in_target]
    return lines


def cut_over_steps(settings: Settings, target_url: str) -> list[str]:
    target = parse_database_url(target_url)
    key = (
        "keep PREP_ES_MASTER_KEY as it was for this run"
        if settings.master_key is not None
        else f"the master key is {master_key_path(target)}, beside it"
        if isinstance(target, SqliteLocation)
        else "set PREP_ES_MASTER_KEY"
    )
    return [
        "Cut-over:",
        "  1. Stop every process that writes to the old store (prep-es serve, project, "
        "sweep, users create).",
        "  2. Run this command again: it copies only what was written since (events "
        "already copied are skipped) and verifies; --quick verifies only those, and leaves "
        "the read models out.",
        f"  3. Point PREP_ES_DATABASE_URL at {_shown(target_url)} on every process; {key}. "
        "Back the master key up apart from the database's backups.",
        "  4. Start the processes: they build every read model from position 0 (`prep-es "
        "projections status` shows the lag); send traffic once they have caught up. "
        "With Redis, delete the old deployment's keys (prep_es:<its namespace>:*): they "
        "cache its read models.",
        "  5. Keep the old store offline (no process points at it) until you are "
        "satisfied, then destroy it and every backup of it: it holds everyone's personal "
        "data in plain text, which no erasure can reach.",
    ]


def _master_key_source(settings: Settings, target_url: str, target: PrepApplication) -> str:
    key_id = target.data_keys.key_ring.current.key_id
    location = parse_database_url(target_url)
    if settings.master_key is None and isinstance(location, SqliteLocation):
        return f"master key {key_id} in {master_key_path(location)}"
    return f"master key {key_id} from PREP_ES_MASTER_KEY"


def _shown(url: str) -> str:
    """``url`` without its password."""
    location = parse_database_url(url)
    if isinstance(location, PostgresLocation):
        return f"postgresql://{location.user}@{location.host}:{location.port}/{location.dbname}"
    return url


def _as_json(outcome: MigrationOutcome) -> dict[str, Any]:
    copy, events = outcome.copy, outcome.events
    return {
        "ok": outcome.ok,
        "source": outcome.source,
        "target": outcome.target,
        "master_key": outcome.master_key,
        "copy": {
            "copied": copy.copied,
            "resumed_after": copy.resumed_after,
            "events_in_target": copy.source_events,
            "moved": copy.moved,
            "elapsed_s": round(copy.elapsed_s, 3),
            "events_per_s": round(copy.events_per_s),
        },
        "snapshots_left_behind": outcome.snapshots_left_behind,
        "events": {
            "compared": events.compared,
            "differing": events.differing,
            "differences": events.differences,
            "elapsed_s": round(events.elapsed_s, 3),
        },
        "read_models": None
        if not outcome.read_models_compared
        else [
            {
                "projection": table.projection,
                "table": table.table,
                "source_rows": table.source_rows,
                "target_rows": table.target_rows,
                "differing_rows": table.differing_rows,
            }
            for table in outcome.read_models
        ],
    }
