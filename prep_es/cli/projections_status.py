"""``prep-es projections status``: where each read model is and how far behind."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from prep_es.cli.terminal import EXIT_OK, print_json
from prep_es.services.readside import open_read_side
from prep_es.store.eventstore import open_application
from prep_es.store.settings import Settings
from projections.status import ProjectionFailure, ProjectionStatus, projection_statuses


def run_projections_status(arguments: argparse.Namespace, settings: Settings) -> int:
    app = open_application(settings)
    read_side = open_read_side(settings)
    try:
        statuses = projection_statuses(app, read_side.write_database)
    finally:
        read_side.close()
        app.close()
    if arguments.json:
        print_json({"projections": [status.model_dump(mode="json") for status in statuses]})
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
