"""Group commit: concurrent appends share one transaction.

Every append to the PostgreSQL event store takes the events table's exclusive lock
(commit order must equal notification-id order), so appends from concurrent commands
queue behind each other, each paying for its own lock, round trips and commit. Group
commit (a :class:`~prep_es.store.funnel.Funnel`) writes the appends queued while a commit is in
flight in one transaction — one lock, one round trip, one commit. No append waits on a
timer: a lone append commits at once.

Each command stays atomic and isolated: its events are all stored or none are. The
transaction judges each append in queue order, under the lock: an append whose events
take a version already stored, or whose decision read an aggregate that has moved on
since (``expected_versions``) — stored before, or written by an earlier append of the
same group — is refused alone, and only its caller sees ``IntegrityError`` (and decides
again on fresh state). The others commit.

A group is sent again when its connection fails, and the failure may have come after
the commit, with the answer lost. An append stored by that first call is then answered
with the ids it was stored at, not refused: its command succeeded, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

from prep_es.store.funnel import Funnel

ExpectedVersions = Mapping[UUID, int]
"""Aggregates an append's decision read without changing them, and the versions read:
the append must fail (as a write conflict) if any of them has moved on since."""


@dataclass(frozen=True)
class Append:
    """One command's events, and the versions its decision read."""

    stored_events: Sequence[StoredEvent]
    expected_versions: ExpectedVersions


AppendOutcome = Sequence[int] | IntegrityError
"""The notification ids of an append's events, in order, or why it was refused."""

InsertAppends = Callable[[Sequence[Append]], Sequence[AppendOutcome]]
"""Stores ``appends`` in one transaction, judging each in order: one outcome per append."""

GROUP_SIZE_MAX = 64
"""Appends per transaction at most: a limit on how long one commit holds the lock."""


class GroupCommit:
    """Funnels concurrent appends into shared transactions of ``insert``."""

    def __init__(self, insert: InsertAppends, *, group_size_max: int = GROUP_SIZE_MAX) -> None:
        self._insert = insert
        self._funnel: Funnel[Append, Sequence[int]] = Funnel(
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
    ) -> Sequence[int]:
        """The notification ids of ``stored_events``; ``IntegrityError`` if refused."""
        return self._funnel.submit(Append(stored_events, expected_versions))

    def _commit(self, group: Sequence[Append]) -> Sequence[AppendOutcome]:
        return self._insert(group)
