"""One generation being rebuilt, driven while this process holds its projection's lock
and followed while another does, with the progress it reports."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from projections.failures import ProjectionFailed
from projections.generations import GenerationState, generations
from projections.locks import RunnerLock
from projections.runners import ProjectionRunner

REBUILD_PROGRESS_INTERVAL_S: Final = 1.0
REBUILD_FOLLOW_INTERVAL_S: Final = 0.25


@dataclass(frozen=True)
class RebuildProgress:
    """How a rebuild goes: positions passed since it was watched, and the rate."""

    position: int
    head: int
    events_applied: int
    elapsed_s: float
    rate_per_s: float

    def describe(self, name: str, generation: int) -> str:
        left = max(0, self.head - self.position)
        if left == 0:
            remaining = "switching"
        elif self.rate_per_s > 0:
            remaining = f"about {left / self.rate_per_s:.0f} s left"
        else:
            remaining = "time left unknown"
        return (
            f"{name}: generation {generation}: position {self.position} of {self.head}, "
            f"{self.events_applied} event(s) applied, {self.rate_per_s:.0f} events/s, "
            f"{remaining}"
        )


class RebuildStopped(Exception):
    """The generation being rebuilt failed on an event or was replaced (exit 1)."""


class RebuildWatch:
    """Drives (while this process holds the projection's lock) or follows (while another
    does) one generation until it is active, failed, or gone."""

    def __init__(
        self,
        runner: ProjectionRunner,
        lock: RunnerLock,
        generation: int,
        stopping: threading.Event,
    ) -> None:
        self.runner = runner
        self.lock = lock
        self.generation = generation
        self.stopping = stopping
        self.started = time.monotonic()

    def run(
        self, report: Callable[[RebuildProgress], None]
    ) -> tuple[GenerationState, RebuildProgress]:
        """Until the generation switched in: its state then, and the last progress.
        Raises :class:`RebuildStopped` if it failed or was replaced."""
        state = self._state()
        start_position = 0 if state is None else state.position
        last_report = self.started
        progress = self._progress(state, start_position)
        while True:
            if self.stopping.is_set():
                raise RebuildStopped(f"generation {self.generation}: interrupted")
            if state is None:
                msg = f"generation {self.generation} was replaced before it switched in"
                raise RebuildStopped(msg)
            if state.active:
                return state, progress
            if self.lock.try_acquire():
                try:
                    self.runner.step()
                except ProjectionFailed as failure:
                    msg = (
                        f"projection {failure.name} stopped at position {failure.position} "
                        f"({failure.topic}): {failure.error}"
                    )
                    raise RebuildStopped(msg) from failure
            elif state.state == "failed":
                msg = (
                    f"generation {self.generation} stopped at position "
                    f"{state.failed_position} ({state.failed_topic}): {state.failed_error}; "
                    "the process running the projection retries it"
                )
                raise RebuildStopped(msg)
            else:
                time.sleep(REBUILD_FOLLOW_INTERVAL_S)
            state = self._state()
            progress = self._progress(state, start_position)
            if time.monotonic() - last_report >= REBUILD_PROGRESS_INTERVAL_S:
                last_report = time.monotonic()
                report(progress)

    def _state(self) -> GenerationState | None:
        with self.runner.database.reading() as sql:
            known = generations(sql, self.runner.name)
        state = next((s for s in known if s.generation == self.generation), None)
        return None if state is None or state.state == "retired" else state

    def _progress(self, state: GenerationState | None, start_position: int) -> RebuildProgress:
        elapsed_s = time.monotonic() - self.started
        position = 0 if state is None else state.position
        return RebuildProgress(
            position=position,
            head=max(position, self.runner.app.position()),
            events_applied=0 if state is None else state.events_applied,
            elapsed_s=elapsed_s,
            rate_per_s=(position - start_position) / elapsed_s if elapsed_s > 0 else 0.0,
        )
