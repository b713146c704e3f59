"""What the write side needs of the event store, as a type.

The store (``prep_es.store.eventstore.PrepApplication``, on PostgreSQL and SQLite
alike) provides it structurally; mypy checks that where the store is handed to the
commands. Besides the library's event store and mapper, it reads several aggregates
at once, finds where an event was stored, and reads notifications by topic, each the
fastest way its database allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import EventStore, Mapper, Notification, Recording

from aggregates.base import Aggregate


class CommandStore(Protocol):
    """The event store as commands, the sweeper's agenda and admission use it."""

    @property
    def events(self) -> EventStore[UUID]:
        """Every stored event of an aggregate, for one never snapshotted."""

    @property
    def mapper(self) -> Mapper[UUID]:
        """Turns a stored notification back into its domain event."""

    def save(
        self, *aggregates: Aggregate, expected_versions: Mapping[UUID, int]
    ) -> list[Recording[UUID]]:
        """Store every pending event of ``aggregates`` in one transaction, on condition
        that each aggregate in ``expected_versions`` is still at that version."""

    def email_digest(self, email: str) -> str:
        """The keyed hash (HMAC with the store's secret) of a normalized email: what an
        email's claim id is derived from."""

    def keyed_digest(self, data: bytes) -> str:
        """HMAC-SHA256 of ``data`` with the store's secret (hex)."""

    def destroy_personal_data(self, subject: UUID) -> None:
        """Destroy ``subject``'s data key: every personal field sealed with it reads as
        erased from now on, in every copy of every event and snapshot."""

    def personal_data_destroyed(self, subject: UUID) -> bool:
        """Whether ``subject``'s data key is gone (destroyed, or never made), as the
        key table has it now, whatever this process remembers of it."""

    def position(self) -> int:
        """The notification id of the latest stored event (0 when the store is empty)."""

    def latest_events_of(
        self, aggregate_ids: Sequence[UUID]
    ) -> dict[UUID, list[DomainEventProtocol[UUID]]]:
        """What each aggregate is rebuilt from: its latest snapshot, if any, then its
        events after it (empty if it does not exist)."""

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        """Where event ``version`` of ``aggregate_id`` was stored; ``None`` if nowhere."""

    def notifications(
        self, start: int, stop: int | None, limit: int, topics: Sequence[str] = ()
    ) -> Sequence[Notification]:
        """Up to ``limit`` stored events with ids in (``start``, ``stop``], of
        ``topics`` only if any are given."""
