"""Group commit: concurrent appends share one transaction.

Every append to the PostgreSQL event store takes the events table's exclusive lock
(commit order must equal notification-id order), so appends from concurrent commands
queue behind each other, each paying for its own lock, round trips and commit. Group
commit lets whichever append finds no commit in progress become the *leader*: it takes
every append queued so far and writes them in one transaction — one lock, one INSERT,
one commit — then hands leadership to the next waiting append, if any. No append waits
on a timer: a lone append commits at once; batches form only while a commit is in
flight.

Each command stays atomic and isolated: its events are all in the batch or none are.
When the batch insert fails on a uniqueness violation (some command lost a write race
against a committed transaction or against another command of the same batch), the
batch is retried one append per transaction, so only the losing appends see
``IntegrityError`` and retry on fresh state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

ExpectedVersions = Mapping[UUID, int]
"""Aggregates an append's decision read without changing them, and the versions read:
the append must fail (as a write conflict) if any of them has moved on since."""

InsertEvents = Callable[[Sequence[StoredEvent], ExpectedVersions], Sequence[int] | None]

GROUP_SIZE_MAX = 64
"""Appends per transaction at most: a limit on how long one commit holds the lock."""


@dataclass
class _Append:
    stored_events: Sequence[StoredEvent]
    expected_versions: ExpectedVersions
    wake: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    finished: bool = False
    notification_ids: Sequence[int] | None = None
    error: BaseException | None = None

    def finish(
        self, notification_ids: Sequence[int] | None, error: BaseException | None = None
    ) -> None:
        self.notification_ids = notification_ids
        self.error = error
        self.finished = True
        self.wake.set()

    def outcome(self) -> Sequence[int] | None:
        assert self.finished
        if self.error is not None:
            raise self.error
        return self.notification_ids


class GroupCommit:
    """Funnels concurrent calls of ``insert`` (one transaction each) into shared
    transactions. ``insert`` must append all given events atomically and return their
    notification ids in order."""

    def __init__(self, insert: InsertEvents, *, group_size_max: int = GROUP_SIZE_MAX) -> None:
        assert group_size_max >= 1
        self._insert = insert
        self._group_size_max = group_size_max
        self._lock = threading.Lock()
        self._queue: list[_Append] = []
        self._leader_active = False
        self.transactions_total = 0
        self.appends_total = 0

    def insert_events(
        self, stored_events: Sequence[StoredEvent], expected_versions: ExpectedVersions
    ) -> Sequence[int] | None:
        append = _Append(stored_events, expected_versions)
        with self._lock:
            self._queue.append(append)
            if not self._leader_active:
                self._leader_active = True
                append.leads = True
        while not append.leads:
            append.wake.wait()
            append.wake.clear()
            if append.finished:
                return append.outcome()
        self._lead()
        return append.outcome()

    def _lead(self) -> None:
        with self._lock:
            group = self._queue[: self._group_size_max]
            del self._queue[: self._group_size_max]
        try:
            self._commit(group)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.wake.set()
                else:
                    self._leader_active = False

    def _commit(self, group: list[_Append]) -> None:
        self.transactions_total += 1
        self.appends_total += len(group)
        if len(group) == 1:
            self._commit_alone(group[0])
            return
        if _depends_on_another(group):
            for append in group:
                self._commit_alone(append)
            return
        combined = [event for append in group for event in append.stored_events]
        expected: dict[UUID, int] = {}
        for append in group:
            for aggregate_id, version in append.expected_versions.items():
                expected[aggregate_id] = min(version, expected.get(aggregate_id, version))
        try:
            notification_ids = self._insert(combined, expected)
        except IntegrityError:
            for append in group:
                self._commit_alone(append)
            return
        except BaseException as error:
            for append in group:
                append.finish(None, error)
            raise
        offset = 0
        for append in group:
            count = len(append.stored_events)
            ids = None if notification_ids is None else notification_ids[offset : offset + count]
            offset += count
            append.finish(ids)

    def _commit_alone(self, append: _Append) -> None:
        try:
            append.finish(self._insert(append.stored_events, append.expected_versions))
        except Exception as error:
            append.finish(None, error)


def _depends_on_another(group: list[_Append]) -> bool:
    """Whether an append read an aggregate another append of the group writes: their
    order matters, and one shared transaction would hide the conflict."""
    writers: dict[UUID, int] = {}
    for index, append in enumerate(group):
        for event in append.stored_events:
            writers[event.originator_id] = index  # type: ignore[index]
    return any(
        writers.get(aggregate_id, index) != index
        for index, append in enumerate(group)
        for aggregate_id in append.expected_versions
    )
