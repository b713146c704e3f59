"""``prep-es sweep``: the time-driven transitions, once or every few seconds."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from prep_es.cli.long_running import STOP_CHECK_INTERVAL_S, log_to_stderr, stop_on_signals
from prep_es.cli.terminal import EXIT_FAILED, EXIT_OK, print_json
from prep_es.services.container import locked_sweeper
from prep_es.services.runtime import open_runtime, tune_garbage_collection
from prep_es.store.settings import Settings

logger = logging.getLogger("prep_es.cli")


def run_sweep(arguments: argparse.Namespace, settings: Settings) -> int:
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
        print_json(report)
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
    for booking_id in report.cancelled_booking_ids:
        print(f"  cancelled booking     {booking_id} (its host was erased)")
    for certificate_id in report.lapsed_certificate_ids:
        print(f"  lapsed certificate    {certificate_id}")
    for user_id in report.erased_user_ids:
        print(f"  erased user's key destroyed {user_id}")
    return status


def _sweep_repeatedly(interval_s: float, settings: Settings, *, parent: int | None) -> int:
    """``sweep --every``: until stopped (or, started by ``project``, until that process
    is gone)."""
    log_to_stderr()
    stopping = stop_on_signals()
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
