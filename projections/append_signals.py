"""Append signals: wake the runners when the event store has something new."""

from __future__ import annotations

import logging
import threading

import psycopg

from prep_es.store.eventstore import PrepApplication

logger = logging.getLogger(__name__)

IDLE_WAIT_S = 1.0
"""How long a wait for new events lasts at most before looking again."""


class AppendSignal:
    """Wakes runners when the event store has something new: PostgreSQL LISTEN on the
    events channel, else a short poll of the head position."""

    def __init__(
        self, app: PrepApplication, *, conninfo: str | None, channel: str, poll_s: float = 0.02
    ) -> None:
        self._app = app
        self._conninfo = conninfo
        self._channel = channel
        self._poll_s = poll_s
        self._condition = threading.Condition()
        self._head = app.position()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="prep-es-append-signal", daemon=True
        )
        self._thread.start()

    def wait(self, after: int, timeout_s: float) -> int:
        """Until the head passes ``after`` or ``timeout_s``; the head seen."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._head > after or self._stopping.is_set(), timeout=timeout_s
            )
            return self._head

    def _advance(self) -> None:
        head = self._app.position()
        with self._condition:
            if head > self._head:
                self._head = head
                self._condition.notify_all()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._conninfo is None:
                    self._advance()
                    self._stopping.wait(self._poll_s)
                else:
                    self._listen(self._conninfo)
            except Exception:
                logger.exception("watching the event store for new events failed; retrying")
                self._stopping.wait(1.0)

    def _listen(self, conninfo: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'LISTEN "{self._channel}"')
            self._advance()  # anything committed before LISTEN took effect
            while not self._stopping.is_set():
                for _ in connection.notifies(timeout=IDLE_WAIT_S, stop_after=1):
                    break
                # The appends announced meanwhile are all below the head read next:
                # one read for them all.
                for _ in connection.notifies(timeout=0):
                    pass
                self._advance()

    def stop(self) -> None:
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout=5)
