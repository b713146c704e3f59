"""Ending a child process when the process that started it dies.

A parent killed by SIGKILL cannot tell its children, which would otherwise live on:
``serve --workers N`` workers keep listening and answering on the port with no master
to restart or stop them. :func:`end_with_parent` makes the child send itself SIGTERM
(its graceful stop) when its parent is gone: on Linux the kernel does it
(``PR_SET_PDEATHSIG``); elsewhere a thread watches the parent process id, which changes
when the child is handed to another parent."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from typing import Final

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG: Final = 1
PARENT_CHECK_INTERVAL_S: Final = 0.5


def end_with_parent(parent_pid: int) -> None:
    """SIGTERM to this process when ``parent_pid``, its parent, dies; at once if it has
    died already (before this was asked)."""
    if not _ask_kernel_for_sigterm():
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="prep-es-parent-watch", daemon=True
        ).start()
    # The parent may have died before the kernel was asked: nothing will be sent then.
    if os.getppid() != parent_pid:
        _end(parent_pid)


def _ask_kernel_for_sigterm() -> bool:
    """Linux's ``prctl(PR_SET_PDEATHSIG, SIGTERM)``; whether it is in place."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_INTERVAL_S)
        if os.getppid() != parent_pid:
            _end(parent_pid)
            return


def _end(parent_pid: int) -> None:
    logger.warning("the parent process %d is gone: stopping", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
