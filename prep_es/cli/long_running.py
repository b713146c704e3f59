"""What the commands that run until stopped (``project``, ``sweep --every``) share: logs on
standard error, and stopping on SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Final

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
STOP_CHECK_INTERVAL_S: Final = 0.5

logger = logging.getLogger("prep_es.cli")


def log_to_stderr() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (the process's handlers from now on)."""
    stopping = threading.Event()

    def stop(signal_number: int, _frame: object) -> None:
        logger.info("received %s: stopping", signal.Signals(signal_number).name)
        stopping.set()

    for number in STOP_SIGNALS:
        signal.signal(number, stop)
    return stopping
