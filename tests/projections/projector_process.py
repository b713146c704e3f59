"""A projector process for tests: every projection in ``PROJECTIONS`` under a
:class:`Supervisor`, as ``prep-es project`` runs them, with small batches (many commits,
so a kill lands between or inside them) and a journal of what it did.

The journal is a file that several processes append lines to, each line one
``write`` to a file opened with ``O_APPEND`` (whole, even if the writer is killed):

    ready <label>            the supervisor has started
    holds <label> <name>     this process took projection <name>'s runner lock
    stopped <label>          SIGTERM: the runners finished their batches and stopped

A test starts it with the ``spawn`` context and ends it with SIGKILL or SIGTERM."""

from __future__ import annotations

import os
import signal
import threading

from prep_es.services.readside import lock_factory, open_read_side
from prep_es.store.eventstore import open_application
from prep_es.store.settings import PostgresLocation
from projections import PROJECTIONS
from projections.append_signals import AppendSignal
from projections.locks import RunnerLock
from projections.supervisor import Supervisor
from tests.support import store_settings

RUN_TIME_S_MAX = 120.0


class Journal:
    def __init__(self, path: str, label: str) -> None:
        self.path = path
        self.label = label

    def write(self, *words: str) -> None:
        line = " ".join([words[0], self.label, *words[1:]]) + "\n"
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)


def read_journal(path: str) -> list[list[str]]:
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [line.split() for line in file if line.endswith("\n")]


class JournaledLock(RunnerLock):
    """A runner lock that writes ``holds`` to the journal each time it is taken."""

    def __init__(self, lock: RunnerLock, name: str, journal: Journal) -> None:
        self._lock = lock
        self._name = name
        self._journal = journal
        self._held = False

    def try_acquire(self) -> bool:
        acquired = self._lock.try_acquire()
        if acquired and not self._held:
            self._journal.write("holds", self._name)
        self._held = acquired
        return acquired

    def is_held(self) -> bool:
        return self._lock.is_held()

    def release(self) -> None:
        self._held = False
        self._lock.release()


def run_projectors(database_url: str, journal_path: str, label: str, batch_size: int) -> None:
    """Project until SIGTERM (a clean stop) or SIGKILL, at most ``RUN_TIME_S_MAX``."""
    journal = Journal(journal_path, label)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    settings = store_settings(database_url)
    app = open_application(settings)
    read_side = open_read_side(settings)
    location = settings.database
    locks = lock_factory(location)
    append_signal = AppendSignal(
        app,
        conninfo=location.conninfo() if isinstance(location, PostgresLocation) else None,
        channel=getattr(app.recorder, "channel_name", "prep_es_events"),
    )
    supervisor = Supervisor(
        app,
        read_side.write_database,
        PROJECTIONS,
        lock_factory=lambda name: JournaledLock(locks(name), name, journal),
        signal=append_signal,
        batch_size=batch_size,
    )
    supervisor.start()
    journal.write("ready")
    stopping.wait(RUN_TIME_S_MAX)
    supervisor.stop()
    append_signal.stop()
    read_side.close()
    app.close()
    journal.write("stopped")
