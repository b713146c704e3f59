"""The copies of aggregates this process last loaded or committed, and the replay that
brings a copy up to date. Commands start from them (``commands.unit_of_work``); where
several processes write, ``prep_es.store.known_copies_follower`` keeps them current."""

from __future__ import annotations

import copy
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from aggregates.base import Aggregate

TLooked = TypeVar("TLooked")

KNOWN_AGGREGATES_MAX = 5_000
"""Copies a process keeps (see ``KnownAggregates``). Bounded by count, and copies are not
small (measured: an account with a hundred open holds ~15 KB, a kitchen ~5 KB, a day's
schedule ~1.3 KB), so this bounds memory too: under the HTTP benchmark's bookings, 10,000
would hold an estimated 40 MB per API worker, and pushed one past 200 MB."""

FORGOTTEN_WHILE_READ = sys.maxsize
"""Noted as the version passed over while an aggregate was being read: what was read
is not kept (see :meth:`KnownAggregates.forget_all`)."""


class KnownAggregates:
    """The latest state of aggregates this process loaded or committed.

    An optimistic attempt starts from these copies without asking the database for
    newer events. That is safe because every commit is validated: an aggregate the
    command changed must still be at the version it started from (the event store
    refuses a version twice), and one it only read must still be at the version read
    (``expected_versions``, checked under the append lock). Readers get deep copies
    (or :meth:`inspect` one under the lock); only :meth:`advance` changes a copy in
    here, under the lock.

    Authentication trusts the copies of users where a follower keeps them current
    (``prep_es.store.known_copies_follower``), so no copy may be kept that misses a version the
    follower has passed over: a read from the store (or a commit) whose result will be
    kept runs inside :meth:`reading`, which notes each version the follower passes
    meanwhile, and :meth:`put` refuses a copy older than one noted.
    """

    def __init__(self, size_max: int) -> None:
        self._size_max = size_max
        self._aggregates: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._reading: dict[UUID, list[int]] = {}
        """Aggregates being read from the store: [readers, the latest version the
        follower passed over meanwhile]."""
        self._lock = threading.Lock()

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        # Copied under the lock: ``advance`` changes copies in place.
        return self.inspect(aggregate_id, copy.deepcopy)

    def inspect(self, aggregate_id: UUID, look: Callable[[Aggregate], TLooked]) -> TLooked | None:
        """``look`` at the copy of ``aggregate_id`` under the lock, without copying it
        (``look`` must not change it); ``None`` if there is no copy."""
        with self._lock:
            aggregate = self._aggregates.get(aggregate_id)
            if aggregate is None:
                return None
            self._aggregates.move_to_end(aggregate_id)
            return look(aggregate)

    def __contains__(self, aggregate_id: object) -> bool:
        with self._lock:
            return aggregate_id in self._aggregates

    @contextmanager
    def reading(self, aggregate_ids: Iterable[UUID]) -> Iterator[None]:
        """Around a read of ``aggregate_ids`` from the store (or a commit of them) and
        the :meth:`put` of what was read: see the class's docstring."""
        wanted = list(aggregate_ids)
        with self._lock:
            for aggregate_id in wanted:
                self._reading.setdefault(aggregate_id, [0, 0])[0] += 1
        try:
            yield
        finally:
            with self._lock:
                for aggregate_id in wanted:
                    entry = self._reading[aggregate_id]
                    entry[0] -= 1
                    if entry[0] == 0:
                        del self._reading[aggregate_id]

    def forget_all(self) -> None:
        """Drop every copy, and keep none of those being read now: a person was erased,
        and copies may hold what they wrote (a booking's notes), which the store can no
        longer read. Erasures are rare; the next commands read what they need again."""
        with self._lock:
            self._aggregates.clear()
            for reading in self._reading.values():
                reading[1] = FORGOTTEN_WHILE_READ

    def put(self, aggregate: Aggregate) -> None:
        """Remember ``aggregate``, which the caller no longer mutates, unless a newer
        version was stored meanwhile and passed over (see :meth:`reading`)."""
        if self._size_max == 0:
            return
        with self._lock:
            reading = self._reading.get(aggregate.id)
            if reading is not None and reading[1] > aggregate.version:
                return
            known = self._aggregates.get(aggregate.id)
            if known is None or known.version < aggregate.version:
                self._aggregates[aggregate.id] = aggregate
                self._aggregates.move_to_end(aggregate.id)
            while len(self._aggregates) > self._size_max:
                self._aggregates.popitem(last=False)

    def advance(
        self,
        aggregate_id: UUID,
        first_version: int,
        last_version: int,
        events: Callable[[], Iterable[Any]],
    ) -> None:
        """Bring the copy of ``aggregate_id`` up to date with its versions
        ``first_version``..``last_version``, stored since by another process: those
        after the copy's version are applied in place where they follow on from it
        (only then is ``events`` called for them, in order), else — versions between
        the copy's and these were not seen — the copy is forgotten and the next command
        reads the aggregate from the store."""
        with self._lock:
            reading = self._reading.get(aggregate_id)
            if reading is not None:
                reading[1] = max(reading[1], last_version)
            known = self._aggregates.get(aggregate_id)
            if known is None or known.version >= last_version:
                return
            if known.version + 1 < first_version:
                del self._aggregates[aggregate_id]
                return
            known_version = known.version
        # Versions the copy has already (this process wrote them, or they came before
        # it was made) are passed over.
        decoded = [event for event in events() if event.originator_version > known_version]
        with self._lock:
            current = self._aggregates.get(aggregate_id)
            if current is None or current.version >= last_version:
                return
            # A newer copy may have been put meanwhile (this process read or committed
            # it): it takes what follows on from it.
            decoded = [event for event in decoded if event.originator_version > current.version]
            try:
                replay(current, decoded)
            finally:
                if current.version != last_version:  # failed half-way: not to be trusted
                    del self._aggregates[aggregate_id]


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """``aggregate`` (``None`` before the first event) with ``events`` applied in
    order: eventsourcing's ``project_aggregate`` without its check of each event
    against a runtime protocol, which cost more than the rest of a replay."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate
