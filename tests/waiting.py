"""Waiting in tests for something to happen: on a condition, never for a fixed time.

A fixed wait is a guess at how long something takes; on a loaded machine the guess is
too short and the test fails for nothing. So a test waits for a sign that the thing has
happened — a position reached, a file or a line of output written, a port answering, a
signal handler in place — with a generous limit, and fails saying what did not happen.

``wait_until`` is the one place where a test pauses between checks of a condition;
``ProcessOutput`` lets a test wait for a line a child process writes, and
``handles_signal`` tells whether a process is ready for a signal yet."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal, TypeVar

import pytest

Outcome = TypeVar("Outcome")

CHECK_INTERVAL_S_FIRST = 0.001
CHECK_INTERVAL_S_MAX = 0.05
"""Checks come quickly at first (most conditions hold soon), then every 50 ms."""


def wait_until(
    condition: Callable[[], Outcome],
    timeout_s: float,
    what: str | Callable[[], str],
    *,
    check_interval_s_max: float = CHECK_INTERVAL_S_MAX,
) -> Outcome:
    """Check ``condition`` until it returns a true value, and return that value. After
    ``timeout_s`` the test fails, saying ``what`` was awaited (a callable is asked only
    then: it can describe the state at that moment, a log say). A condition that
    drives what it checks (each check a request, say) may need a steadier pace:
    ``check_interval_s_max``."""
    deadline = time.monotonic() + timeout_s
    interval_s = min(CHECK_INTERVAL_S_FIRST, check_interval_s_max)
    while not (outcome := condition()):
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout_s} s for: {what() if callable(what) else what}")
        time.sleep(interval_s)
        interval_s = min(2 * interval_s, check_interval_s_max)
    return outcome


class _Lines:
    """The lines written to one pipe, read by a thread as they come (closed at its end)."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self.ended = False
        self.changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._reader.start()

    def _read(self, pipe: IO[str]) -> None:
        with pipe:
            for line in pipe:
                with self.changed:
                    self.lines.append(line)
                    self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def text(self) -> str:
        with self.changed:
            return "".join(self.lines)

    def join(self, timeout_s: float) -> str:
        self._reader.join(timeout_s)
        assert not self._reader.is_alive(), "the pipe stayed open"
        return self.text()


class ProcessOutput:
    """What a child process writes to its standard output and error (both pipes), read
    as it comes: a test waits for a line with :meth:`wait_for_line`, then takes all of
    it with :meth:`communicate` (in place of ``Popen.communicate``, which would read the
    same pipes)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None and process.stderr is not None
        self._process = process
        self._streams = {"out": _Lines(process.stdout), "err": _Lines(process.stderr)}

    def wait_for_line(
        self, text: str, timeout_s: float, *, stream: Literal["out", "err"] = "out"
    ) -> str:
        """The first line of ``stream`` holding ``text``, once written. The test fails
        after ``timeout_s``, or if the stream ends first, showing what was written."""
        lines = self._streams[stream]

        def found() -> str | None:
            return next((line for line in lines.lines if text in line), None)

        with lines.changed:
            lines.changed.wait_for(lambda: found() is not None or lines.ended, timeout_s)
            line = found()
        if line is None:
            pytest.fail(
                f"no line with {text!r} in the standard {stream}put "
                f"({'ended' if lines.ended else f'after {timeout_s} s'}):\n"
                f"{self._streams['out'].text()}{self._streams['err'].text()}"
            )
        return line

    def communicate(self, timeout_s: float) -> tuple[str, str]:
        """Standard output and error, once the process has exited (``TimeoutExpired``
        after ``timeout_s``, as from ``Popen.communicate``)."""
        self._process.wait(timeout_s)
        return self._streams["out"].join(timeout_s), self._streams["err"].join(timeout_s)


def handles_signal(pid: int, signal_number: signal.Signals) -> bool:
    """Whether process ``pid`` has installed a handler for ``signal_number`` (Linux's
    /proc): until it has, the signal does what it does by default (SIGTERM ends it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            caught = int(line.partition(":")[2], 16)
            return bool(caught >> (signal_number - 1) & 1)
    raise AssertionError(f"no SigCgt in /proc/{pid}/status")
