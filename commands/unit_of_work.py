"""The aggregates one attempt of a command loaded or created, saved together.

Each attempt of a command (see ``commands.processor``) gets a fresh :class:`UnitOfWork`.
It loads aggregates from this process's known copies where the attempt may (the first,
optimistic one) or from the store, remembers the version each was read at, and saves
every change in one transaction on condition that nothing it only read has moved on.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import date
from typing import TypeVar
from uuid import UUID

from aggregates import SNAPSHOTTING_INTERVALS
from aggregates.account import Account, account_id_for
from aggregates.base import Aggregate
from aggregates.errors import NotFound
from aggregates.schedule import KitchenSchedule
from commands.store import CommandStore
from prep_es.store.known_copies import KnownAggregates, replay

TAggregate = TypeVar("TAggregate", bound=Aggregate)


class UnitOfWork:
    """The aggregates one attempt of a command loaded or created, and the versions
    its decision depended on."""

    def __init__(self, store: CommandStore, known: KnownAggregates, *, optimistic: bool) -> None:
        self._store = store
        self._known = known
        self._optimistic = optimistic
        self._aggregates: dict[UUID, Aggregate] = {}
        self._versions_read: dict[UUID, int] = {}
        self._read_ahead: dict[UUID, Aggregate | None] = {}
        self.started_from_known_copy = False

    def read_ahead(self, aggregate_ids: Iterable[UUID]) -> None:
        """Read the aggregates this attempt is about to ``find`` in one round trip (on
        PostgreSQL: one statement), instead of one each; those it has already, or may
        start from a known copy of, are left out."""
        wanted = [
            aggregate_id
            for aggregate_id in dict.fromkeys(aggregate_ids)
            if aggregate_id not in self._aggregates
            and aggregate_id not in self._read_ahead
            and not (self._optimistic and aggregate_id in self._known)
        ]
        if len(wanted) < 2:  # one is read as cheaply when it is found
            return
        with self._known.reading(wanted):
            for aggregate_id, events in self._store.latest_events_of(wanted).items():
                found = replay(None, events)
                assert found is None or isinstance(found, Aggregate), found
                if found is not None:
                    self._known.put(copy.deepcopy(found))
                self._read_ahead[aggregate_id] = found

    def find(self, aggregate_class: type[TAggregate], aggregate_id: UUID) -> TAggregate | None:
        found = self._aggregates.get(aggregate_id)
        if found is None:
            if self._optimistic:
                found = self._known.get(aggregate_id)
                self.started_from_known_copy |= found is not None
            if found is None:
                if aggregate_id in self._read_ahead:  # kept by ``read_ahead`` already
                    found = self._read_ahead.pop(aggregate_id)
                else:
                    with self._known.reading([aggregate_id]):
                        found = self._load(aggregate_class, aggregate_id)
                        if found is not None:
                            self._known.put(copy.deepcopy(found))
                if found is None:
                    return None
            self._aggregates[aggregate_id] = found
            self._versions_read[aggregate_id] = found.version
        if not isinstance(found, aggregate_class):
            return None
        return found

    def _load(self, aggregate_class: type[Aggregate], aggregate_id: UUID) -> Aggregate | None:
        """The aggregate as stored. One of a class that is never snapshotted is replayed
        from its events alone: asking for a snapshot first would cost a round trip."""
        if aggregate_class not in SNAPSHOTTING_INTERVALS:
            found = replay(None, self._store.events.get(aggregate_id))
        else:
            found = replay(None, self._store.latest_events_of([aggregate_id])[aggregate_id])
        assert found is None or isinstance(found, Aggregate), found
        return found

    def get(
        self, aggregate_class: type[TAggregate], aggregate_id: UUID, *, not_found_code: str
    ) -> TAggregate:
        found = self.find(aggregate_class, aggregate_id)
        if found is None:
            noun = not_found_code.removesuffix("_not_found")
            raise NotFound(f"{noun} {aggregate_id} not found", code=not_found_code)
        return found

    def schedule(self, kitchen_id: UUID, day: date) -> KitchenSchedule:
        """The kitchen's schedule for ``day``, opened if this is its first claim."""
        schedule_id = KitchenSchedule.create_id(kitchen_id=kitchen_id, day=day)
        schedule = self.find(KitchenSchedule, schedule_id)
        if schedule is None:
            schedule = KitchenSchedule(kitchen_id=kitchen_id, day=day)
            self.add(schedule)
        return schedule

    def account_of(self, user_id: UUID) -> Account:
        """The account of ``user_id`` (every user has one, opened at registration)."""
        return self.get(Account, account_id_for(user_id), not_found_code="account_not_found")

    def add(self, *aggregates: Aggregate) -> None:
        for aggregate in aggregates:
            self._aggregates[aggregate.id] = aggregate

    def commit(self) -> int | None:
        """Save every pending event in one transaction, on condition that every
        aggregate only read is still at the version read; the last position written,
        or ``None`` when nothing changed."""
        changed = [a for a in self._aggregates.values() if a.pending_events]
        if not changed:
            return None
        expected_versions = {
            aggregate_id: version
            for aggregate_id, version in self._versions_read.items()
            if not self._aggregates[aggregate_id].pending_events
        }
        with self._known.reading(aggregate.id for aggregate in changed):
            recordings = self._store.save(*changed, expected_versions=expected_versions)
            for aggregate in changed:
                self._known.put(aggregate)
        return max(recording.notification.id for recording in recordings)
