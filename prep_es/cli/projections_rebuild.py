"""``prep-es projections rebuild``: new generations built from position 0, shared among
processes forked from this one, each process running one thread per projection."""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from prep_es.cli.projection_names import projection_names, projections_named
from prep_es.cli.rebuild_watch import RebuildStopped, RebuildWatch
from prep_es.cli.terminal import EXIT_FAILED, EXIT_OK, print_json
from prep_es.services.readside import lock_factory, open_read_side
from prep_es.services.runtime import tune_garbage_collection
from prep_es.store.eventstore import open_application
from prep_es.store.settings import Settings
from projections import Projection
from projections.decoding import EventDecoder
from projections.generations import request_rebuild
from projections.rebuilds import share_among_processes
from projections.runners import ProjectionRunner, applies_by_sql


@dataclass(frozen=True)
class RebuildSummary:
    """One projection rebuilt: the generation that switched in, where, and how fast."""

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


def run_projections_rebuild(arguments: argparse.Namespace, settings: Settings) -> int:
    projection_classes = projections_named(arguments.names)
    progress_output = sys.stderr if arguments.json else sys.stdout
    started = time.monotonic()
    shares = _rebuild_shares(projection_classes, settings, arguments.processes)
    if len(shares) > 1:
        summaries, failed = _rebuild_in_processes(shares, settings, progress_output)
    else:
        summaries, failed = _rebuild_here(projection_classes, settings, progress_output)
    if arguments.json:
        if len(projection_classes) == 1 and summaries:
            print_json(dataclasses.asdict(summaries[0]))
        else:
            print_json(
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
    order = {name: index for index, name in enumerate(projection_names())}
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
            watches.append(RebuildWatch(runner, lock, generation, stopping))
        tune_garbage_collection()

        def watch(rebuild: RebuildWatch) -> None:
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
