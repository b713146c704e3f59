"""Read-your-writes: how far each read model has got, and waiting until it gets further.

A command answers with the event store position its events reached; a query sent with
that position (``X-Prep-Min-Position``) waits here until the projections it reads have
applied it. A projection's position is its *active* generation's position in
``projection_state`` (the one its views serve), or a newer one announced by the runner
once its batch committed:

- in this process, the :class:`~projections.supervisor.Supervisor`'s ``on_position``
  callback (pass :meth:`ReadPositions.observe`);
- from any process on PostgreSQL, ``LISTEN`` on the channel the runner notifies in the
  batch's own transaction, so the announcement arrives only after the commit;
- on SQLite, whose runners may live in another process and cannot announce anything,
  waits re-read ``projection_state`` every ``poll_interval_s``.

Wake-ups are immediate (a condition variable), never polling with a growing pause.
Waits are bounded by ``wait_timeout_s_max`` and end at once when :meth:`close` is
called. Each holds a worker thread, so only positions the event store has reached are
waited for (a position beyond its head was never handed out: it is refused at once),
and at most ``waiters_max`` waits run at a time in one process.

A read replica lags its primary, and announcements come from the primary, so on a
replica (``replica=True``) announcements only wake waiters: every position is
confirmed by reading the replica's own ``projection_state``.

    ReadModelBehind        the read model did not reach the position in time, or the
                           service is shutting down (HTTP: 503 with Retry-After)
    PositionAheadOfStore   the position is beyond the event store's head: no write
                           ever answered it (HTTP: 422, at once)
    TooManyWaiters         ``waiters_max`` waits are already running (HTTP: 503 with
                           Retry-After, at once)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import psycopg

from projections.announcements import (
    CHANGES_CHANNEL,
    EVERYTHING_CHANGED,
    HINTS_SEPARATOR,
    POSITIONS_CHANNEL,
    ChangeListener,
)
from projections.database import PostgresReadDatabase, ReadDatabase, Sql
from projections.generations import STATE_TABLE
from projections.status import state_table_exists

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.02
"""How often a wait re-reads ``projection_state`` when no announcement can reach it."""
LISTENING_POLL_INTERVAL_S = 1.0
"""With announcements, a slow re-read only covers a listener that is reconnecting."""
WAIT_TIMEOUT_S_MAX = 30.0
RETRY_AFTER_S = 1
LISTEN_RECONNECT_S = 1.0
LISTEN_WAKE_S = 0.25
"""How often the listener looks up from LISTEN to see whether it should stop."""
LISTEN_READY_TIMEOUT_S = 5.0
WAITERS_MAX = 16
"""Waits at a time per process: each holds one of the threadpool's 40 threads."""


class ReadModelBehind(Exception):
    """Projection ``name`` has not reached ``required_position`` (it is at
    ``position``) within the time allowed, or the wait was cut short by shutdown.
    Ask again after ``retry_after_s`` seconds."""

    code: ClassVar[str] = "read_model_behind"

    def __init__(
        self, name: str, position: int, required_position: int, *, retry_after_s: int
    ) -> None:
        super().__init__(
            f"read model {name} is at position {position}, not yet at {required_position}"
        )
        self.name = name
        self.position = position
        self.required_position = required_position
        self.retry_after_s = retry_after_s


class PositionAheadOfStore(Exception):
    """``required_position`` is beyond the event store's ``head``: no command has
    answered it, so waiting for it would only hold a thread until the timeout."""

    code: ClassVar[str] = "min_position_ahead_of_store"

    def __init__(self, required_position: int, head: int) -> None:
        super().__init__(f"position {required_position} is beyond the event store's head {head}")
        self.required_position = required_position
        self.head = head


class TooManyWaiters(Exception):
    """As many waits as allowed are running in this process; ask again after
    ``retry_after_s`` seconds."""

    code: ClassVar[str] = "too_many_waiters"

    def __init__(self, waiters_max: int, *, retry_after_s: int) -> None:
        super().__init__(f"{waiters_max} read-your-writes waits are running already")
        self.waiters_max = waiters_max
        self.retry_after_s = retry_after_s


def read_position(sql: Sql, name: str) -> int:
    """Projection ``name``'s active position (0 before its first runner started)."""
    position = sql.scalar(
        f"SELECT position FROM {STATE_TABLE} WHERE name = %s AND active = %s", (name, True)
    )
    return 0 if position is None else int(position)


class ReadPositions:
    """Positions of the read models in ``database`` (where queries read), and waits for
    them. Thread-safe; one per process. Start with :meth:`start`, end with
    :meth:`close`."""

    def __init__(
        self,
        database: ReadDatabase,
        *,
        replica: bool = False,
        poll_interval_s: float = POLL_INTERVAL_S,
        wait_timeout_s_max: float = WAIT_TIMEOUT_S_MAX,
        event_store_head: Callable[[], int] | None = None,
        waiters_max: int = WAITERS_MAX,
    ) -> None:
        """``event_store_head`` reads the event store's latest position (one query);
        without it, positions are not checked against the head."""
        assert poll_interval_s > 0 and wait_timeout_s_max > 0 and waiters_max > 0
        self._database = database
        self._replica = replica
        self._change_listeners: list[tuple[ChangeListener, bool]] = []
        self._listen_conninfo = (
            database.conninfo
            if isinstance(database, PostgresReadDatabase) and not replica
            else None
        )
        self._poll_interval_s = (
            poll_interval_s if self._listen_conninfo is None else LISTENING_POLL_INTERVAL_S
        )
        self._wait_timeout_s_max = wait_timeout_s_max
        self._event_store_head = event_store_head
        self._head = 0
        """The event store's head as last read, or a read model position heard since
        (never more than the head)."""
        self._waiters_max = waiters_max
        self._waiters = threading.BoundedSemaphore(waiters_max)
        self._waiting = 0
        self._condition = threading.Condition()
        self._known: dict[str, int] = {}
        self._announcements = 0  # on a replica: wakes waiters to re-read the replica
        self._closing = threading.Event()
        self._listening = threading.Event()
        self._state_table_seen = False
        self._listener: threading.Thread | None = None

    @property
    def hears_changes(self) -> bool:
        """Whether announcements of changes reach this process (PostgreSQL, not a
        replica); elsewhere a per-process cache must not rely on ``on_changes``."""
        return self._listen_conninfo is not None

    def follow_changes(self, listener: ChangeListener, *, with_hints: bool = False) -> None:
        """Before :meth:`start`, where :attr:`hears_changes`: call ``listener`` (as every
        other one followed) with the cache dependencies that runners in any process
        announce as changed (``with_hints``: and the hints announced with them, see
        ``Projection.hints``), and with everything each time the listener (re)connects
        (it may have missed some)."""
        assert self.hears_changes and self._listener is None
        self._change_listeners.append((listener, with_hints))

    def start(self) -> None:
        """Begin listening for announcements (PostgreSQL, not a replica). Returns once
        ``LISTEN`` took effect, so no commit after this call goes unheard."""
        if self._listen_conninfo is None or self._listener is not None:
            return
        self._listener = threading.Thread(
            target=self._listen_forever, name="prep-es-read-positions", daemon=True
        )
        self._listener.start()
        if not self._listening.wait(LISTEN_READY_TIMEOUT_S):
            logger.warning("not listening for read model positions yet; polling meanwhile")

    def close(self) -> None:
        """End every wait now (they raise :class:`ReadModelBehind`) and stop listening."""
        self._closing.set()
        with self._condition:
            self._condition.notify_all()
        if self._listener is not None:
            self._listener.join(timeout=LISTEN_RECONNECT_S + LISTEN_WAKE_S + 1)
            self._listener = None

    def observe(self, name: str, position: int) -> None:
        """A runner committed ``name`` up to ``position`` (``on_position`` callback)."""
        with self._condition:
            self._head = max(self._head, position)
            if self._replica:
                self._announcements += 1  # not visible here yet: waiters re-read soon
            elif position > self._known.get(name, 0):
                self._known[name] = position
            else:
                return
            self._condition.notify_all()

    def position(self, name: str) -> int:
        """How far projection ``name`` has got: what its views show, or less. Without
        a round trip where :meth:`announced` knows it; else read from the database."""
        announced = self.announced(name)
        return self._refresh(name) if announced is None else announced

    def announced(self, name: str) -> int | None:
        """``name``'s position as announcements keep it in this process's memory, while
        they reach it (PostgreSQL, not a replica, listening now); ``None`` where the
        database must be asked (and for a name not heard of yet). Never blocks. Every
        announcement follows a commit of the active views, so this never overstates
        them; it lags them only by the announcement's way here."""
        if not self._listening.is_set():
            return None
        with self._condition:
            return self._known.get(name)

    @property
    def waiting(self) -> int:
        """How many waits are running now."""
        with self._condition:
            return self._waiting

    def wait_for(self, name: str, position: int, timeout_s: float) -> int:
        """Until projection ``name`` reaches ``position``; the position reached. Raises
        :class:`PositionAheadOfStore` at once for a position beyond the event store's
        head, :class:`TooManyWaiters` at once while ``waiters_max`` waits run, and
        :class:`ReadModelBehind` after ``timeout_s`` (at most ``wait_timeout_s_max``)
        or at :meth:`close`."""
        assert timeout_s >= 0
        current = self._known_position(name)
        if current >= position:
            return current
        self._check_within_head(position)
        if not self._waiters.acquire(blocking=False):
            raise TooManyWaiters(self._waiters_max, retry_after_s=RETRY_AFTER_S)
        try:
            with self._condition:
                self._waiting += 1
            return self._wait(name, position, timeout_s)
        finally:
            with self._condition:
                self._waiting -= 1
            self._waiters.release()

    def _check_within_head(self, position: int) -> None:
        """Raise :class:`PositionAheadOfStore` if ``position`` is beyond the event
        store's head: free while it is within the head last read (or a position heard
        since), else one read of the head."""
        if self._event_store_head is None:
            return
        with self._condition:
            if position <= self._head:
                return
        head = self._event_store_head()
        with self._condition:
            self._head = max(self._head, head)
            if position <= self._head:
                return
            head = self._head
        raise PositionAheadOfStore(position, head)

    def _wait(self, name: str, position: int, timeout_s: float) -> int:
        deadline = time.monotonic() + min(timeout_s, self._wait_timeout_s_max)
        current = self._known_position(name)
        while True:
            if self._closing.is_set():
                raise ReadModelBehind(name, current, position, retry_after_s=RETRY_AFTER_S)
            with self._condition:
                seen = self._announcements
            current = self._refresh(name)
            if current >= position:
                return current
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise ReadModelBehind(name, current, position, retry_after_s=RETRY_AFTER_S)
            self._await_news(name, position, seen, min(remaining_s, self._poll_interval_s))

    def _await_news(self, name: str, position: int, seen: int, timeout_s: float) -> None:
        """Until ``name`` is known at ``position``, any announcement after the
        ``seen``-th, :meth:`close`, or ``timeout_s``."""
        with self._condition:
            self._condition.wait_for(
                lambda: (
                    self._known.get(name, 0) >= position
                    or self._announcements != seen
                    or self._closing.is_set()
                ),
                timeout=timeout_s,
            )

    def _known_position(self, name: str) -> int:
        with self._condition:
            return self._known.get(name, 0)

    def _refresh(self, name: str) -> int:
        """Read ``name``'s position from the database; the newer of it and the known."""
        with self._database.reading() as sql:
            if not self._state_table_seen:
                self._state_table_seen = state_table_exists(sql)
            stored = read_position(sql, name) if self._state_table_seen else 0
        with self._condition:
            self._head = max(self._head, stored)
            if stored > self._known.get(name, 0):
                self._known[name] = stored
                self._condition.notify_all()
            return self._known.get(name, 0)

    def _refresh_known(self) -> None:
        """After (re)connecting: announcements may have been missed meanwhile."""
        with self._condition:
            names = list(self._known)
        for name in names:
            self._refresh(name)

    def _listen_forever(self) -> None:
        assert self._listen_conninfo is not None
        while not self._closing.is_set():
            try:
                self._listen(self._listen_conninfo)
            except psycopg.Error:
                logger.exception("listening for read model positions failed; reconnecting")
            self._listening.clear()
            self._closing.wait(LISTEN_RECONNECT_S)

    def _listen(self, conninfo: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'LISTEN "{POSITIONS_CHANNEL}"')
            if self._change_listeners:
                connection.execute(f'LISTEN "{CHANGES_CHANNEL}"')
                self._everything_changed()
            self._listening.set()
            self._refresh_known()
            while not self._closing.is_set():
                for notification in connection.notifies(timeout=LISTEN_WAKE_S):
                    if notification.channel == CHANGES_CHANNEL:
                        self._changes_announced(notification.payload)
                    else:
                        self._announced(notification.payload)
                    if self._closing.is_set():
                        break

    def _everything_changed(self) -> None:
        """Now listening, perhaps after missing announcements: every change committed
        so far is at or before the furthest read model position."""
        with self._database.reading() as sql:
            furthest = (
                sql.scalar(f"SELECT max(position) FROM {STATE_TABLE}")
                if state_table_exists(sql)
                else None
            )
        self._changed([EVERYTHING_CHANGED], int(furthest or 0))

    def _changes_announced(self, payload: str) -> None:
        position, *announced = payload.split(" ")
        try:
            changed_at = int(position)
        except ValueError:
            logger.warning("ignoring a malformed change announcement: %r", payload)
            return
        if HINTS_SEPARATOR in announced:
            at = announced.index(HINTS_SEPARATOR)
            self._changed(announced[:at], changed_at, announced[at + 1 :])
        else:
            self._changed(announced, changed_at)

    def _changed(self, dependencies: list[str], position: int, hints: Sequence[str] = ()) -> None:
        for listener, with_hints in self._change_listeners:
            listener([*dependencies, *hints] if with_hints else dependencies, position)

    def _announced(self, payload: str) -> None:
        name, _, position = payload.rpartition(":")
        try:
            self.observe(name, int(position))
        except ValueError:
            logger.warning("ignoring a malformed position announcement: %r", payload)
