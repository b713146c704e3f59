"""The supervisor: runs every projection of a process, each while it holds its lock."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from prep_es.store.eventstore import PrepApplication
from projections.announcements import ChangeListener, PositionListener
from projections.append_signals import IDLE_WAIT_S, AppendSignal
from projections.base import Projection
from projections.database import ReadDatabase
from projections.decoding import EventDecoder
from projections.failures import ProjectionFailed
from projections.generations import ensure_ready
from projections.locks import RunnerLock
from projections.runners import BATCH_SIZE, ProjectionRunner
from projections.shared_commits import SharedCommits

logger = logging.getLogger(__name__)

STANDBY_POLL_S = 1.0
FAILURE_BACKOFF_S_MIN = 1.0
FAILURE_BACKOFF_S_MAX = 60.0


class Supervisor:
    """Runs every projection in threads: one runner per projection, active only while
    this process holds that projection's lock."""

    def __init__(
        self,
        app: PrepApplication,
        database: ReadDatabase,
        projection_classes: Sequence[type[Projection]],
        *,
        lock_factory: Callable[[str], RunnerLock],
        signal: AppendSignal,
        on_position: PositionListener | None = None,
        on_changes: ChangeListener | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.app = app
        self.database = database
        self.projection_classes = list(projection_classes)
        self._lock_factory = lock_factory
        self._signal = signal
        self._on_position = on_position
        self._on_changes = on_changes
        self._batch_size = batch_size
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._decoder = EventDecoder(app)
        self._shared_commits = SharedCommits(database)

    def start(self) -> None:
        for projection_class in self.projection_classes:
            ensure_ready(self.database, projection_class)
        for projection_class in self.projection_classes:
            thread = threading.Thread(
                target=self._run,
                args=(projection_class,),
                name=f"prep-es-projection-{projection_class.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Runners finish their current batch and stop; the signal goes with them."""
        self._stopping.set()
        self._signal.stop()  # wakes runners waiting for new events
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def _run(self, projection_class: type[Projection]) -> None:
        lock = self._lock_factory(projection_class.name)
        runner = ProjectionRunner(
            projection_class,
            self.app,
            self.database,
            batch_size=self._batch_size,
            on_position=self._on_position,
            on_changes=self._on_changes,
            decoder=self._decoder,
            defer_idle_positions=True,
            shared_commits=self._shared_commits,
        )
        backoff_s = FAILURE_BACKOFF_S_MIN
        head: int | None = None
        try:
            while not self._stopping.is_set():
                # Everything that can fail is inside: a database that cannot be reached
                # (to ask for the lock, say) is retried, never the end of the thread —
                # that would stall the projection silently.
                try:
                    if not lock.try_acquire():
                        self._stopping.wait(STANDBY_POLL_S)
                        continue
                    if head is None:
                        head = self.app.position()
                    if not runner.step(head):
                        head = self._signal.wait(after=head, timeout_s=IDLE_WAIT_S)
                    backoff_s = FAILURE_BACKOFF_S_MIN
                except ProjectionFailed:
                    self._stopping.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, FAILURE_BACKOFF_S_MAX)
                except Exception:
                    logger.exception("projection %s: runner error; retrying", runner.name)
                    lock.release()
                    self._stopping.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, FAILURE_BACKOFF_S_MAX)
        finally:
            try:
                if lock.try_acquire():
                    runner.store_idle_position()
            except Exception:
                logger.exception("projection %s: storing its position failed", runner.name)
            lock.release()
