"""Group commit: concurrent appends share one transaction.

Every append to the PostgreSQL event store takes the events table's exclusive lock
(commit order must equal notification-id order), so appends from concurrent commands
queue behind each other, each paying for its own lock, round trips and commit. Group
commit (a :class:`~prep_es.funnel.Funnel`) writes the appends queued while a commit is in
flight in one transaction — one lock, one INSERT, one commit. No append waits on a
timer: a lone append commits at once.

Each command stays atomic and isolated: its events are all in the batch or none are.
When the batch insert fails on a uniqueness violation (some command lost a write race
against a committed transaction or against another command of the same batch), the
batch is retried one append per transaction, so only the losing appends see
``IntegrityError`` and retry on fresh state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

from prep_es.funnel import Funnel

ExpectedVersions = Mapping[UUID, int]
"""Aggregates an append's decision read without changing them, and the versions read:
the append must fail (as a write conflict) if any of them has moved on since."""

InsertEvents = Callable[[Sequence[StoredEvent], ExpectedVersions], Sequence[int] | None]

GROUP_SIZE_MAX = 64
"""Appends per transaction at most: a limit on how long one commit holds the lock."""


@dataclass(frozen=True)
class _Append:
    stored_events: Sequence[StoredEvent]
    expected_versions: ExpectedVersions


AppendOutcome = Sequence[int] | None


class GroupCommit:
    """Funnels concurrent calls of ``insert`` (one transaction each) into shared
    transactions. ``insert`` must append all given events atomically and return their
    notification ids in order."""

    def __init__(self, insert: InsertEvents, *, group_size_max: int = GROUP_SIZE_MAX) -> None:
        self._insert = insert
        self._funnel: Funnel[_Append, AppendOutcome] = Funnel(
            self._commit, group_size_max=group_size_max
        )

    @property
    def transactions_total(self) -> int:
        return self._funnel.groups_total

    @property
    def appends_total(self) -> int:
        return self._funnel.items_total

    @property
    def queued(self) -> int:
        return self._funnel.queued

    def insert_events(
        self, stored_events: Sequence[StoredEvent], expected_versions: ExpectedVersions
    ) -> AppendOutcome:
        return self._funnel.submit(_Append(stored_events, expected_versions))

    def _commit(self, group: Sequence[_Append]) -> list[AppendOutcome | BaseException]:
        if len(group) == 1 or _depends_on_another(group):
            return [self._commit_alone(append) for append in group]
        combined = [event for append in group for event in append.stored_events]
        expected: dict[UUID, int] = {}
        for append in group:
            for aggregate_id, version in append.expected_versions.items():
                expected[aggregate_id] = min(version, expected.get(aggregate_id, version))
        try:
            notification_ids = self._insert(combined, expected)
        except IntegrityError:
            return [self._commit_alone(append) for append in group]
        outcomes: list[AppendOutcome | BaseException] = []
        offset = 0
        for append in group:
            count = len(append.stored_events)
            ids = None if notification_ids is None else notification_ids[offset : offset + count]
            offset += count
            outcomes.append(ids)
        return outcomes

    def _commit_alone(self, append: _Append) -> AppendOutcome | BaseException:
        try:
            return self._insert(append.stored_events, append.expected_versions)
        except Exception as error:
            return error


def _depends_on_another(group: Sequence[_Append]) -> bool:
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
