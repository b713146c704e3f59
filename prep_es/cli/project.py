"""``prep-es project``: the projectors (and a sweeper process beside them) until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from prep_es.cli.long_running import STOP_CHECK_INTERVAL_S, log_to_stderr, stop_on_signals
from prep_es.cli.projection_names import projection_names
from prep_es.cli.terminal import EXIT_OK
from prep_es.services.container import SWEEPER_STOP_TIMEOUT_S, start_sandbox_deliveries
from prep_es.services.readside import open_read_side, start_projectors
from prep_es.services.redis_namespace import redis_namespace
from prep_es.services.runtime import open_runtime, tune_garbage_collection
from prep_es.store.settings import Settings
from queries.cache import RedisQueryCache
from queries.redis_circuit import RedisCircuit

logger = logging.getLogger("prep_es.cli")


def run_project(arguments: argparse.Namespace, settings: Settings) -> int:
    log_to_stderr()
    stopping = stop_on_signals()
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
        start_sandbox_deliveries(runtime)
        tune_garbage_collection()
        logger.info(
            "projecting %s (one process runs each projection; others stand by)",
            ", ".join(projection_names()),
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
