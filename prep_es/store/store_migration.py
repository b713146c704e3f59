"""The copy-transform of a store written by the release before encryption into a new
store of this release, and its verification, event by event.

An append-only store cannot be rewritten in place, so it is copied: every stored event
of the source, in notification order, transformed (see
``prep_es.store.pre_encryption.PreEncryptionTransform``) and appended to an empty target
through its mapper, which seals the personal fields with the target's data keys. One
event in is one event out, in the same order: the target's N-th event is the source's
N-th. That makes the copy resumable without any bookkeeping: a target holding N events
whose last is the source's N-th, transformed, is a copy stopped (or finished) after N
events, and the next run appends from the source's (N+1)-th. So the same command
copies a live store once, then again after its writers are stopped, copying only what
they wrote in between.

Snapshots are not copied: they are a cache of the events (the target takes its own as
aggregates are saved again), and they may hold personal attributes in plain text.

The source is opened read-only (no table, trigger or function created; no data key
table) and without a key ring: its personal fields are read as they were stored.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification, PersistenceError, StoredEvent
from psycopg.rows import tuple_row
from psycopg.sql import SQL
from pydantic import BaseModel

from aggregates.personal import personal_fields
from prep_es.store.eventstore import (
    APPLICATION_NAME,
    PrepApplication,
    application_env,
    open_application,
)
from prep_es.store.personal_cipher import is_envelope
from prep_es.store.postgres_recorders import (
    AppendOnlyPostgresApplicationRecorder,
    qualified_table,
)
from prep_es.store.pre_encryption import (
    CLAIM_TOPIC,
    IDEMPOTENCY_TOPIC,
    NotPreEncryptionStore,
    PreEncryptionTransform,
)
from prep_es.store.settings import PostgresLocation, Settings, SqliteLocation, parse_database_url
from prep_es.store.sqlite_recorders import AppendOnlySQLiteApplicationRecorder

BATCH_SIZE_DEFAULT: Final = 1000
BATCH_SIZE_MAX: Final = 10_000
MIGRATION_POOL_SIZE: Final = 2
"""Connections per store: the copy reads and writes one batch at a time."""
DIFFERENCES_LISTED_MAX: Final = 20
"""Differences described one by one; beyond, only counted."""
CHANGED_BY_TRANSFORM: Final[dict[str, frozenset[str]]] = {
    CLAIM_TOPIC: frozenset({"originator_id", "email_digest", "holder"}),
    IDEMPOTENCY_TOPIC: frozenset(
        {"originator_id", "scope", "key", "subject_id", "joint_subject_ids", "request_hash"}
    ),
}
"""What the transform may change in an event's decoded fields, by topic; nothing else."""


class MigrationRefused(Exception):
    """The copy cannot start or go on: the source or target is not what it must be (the
    message says why and what to do)."""


class SourceStore(PrepApplication):
    """The store being migrated, read-only, its head held where the copy stopped while
    the copy is verified (old writers may still append to it)."""

    name = APPLICATION_NAME  # the tables' prefix on PostgreSQL: the store's own
    head_position: int | None = None

    def position(self) -> int:
        position = super().position()
        return position if self.head_position is None else min(position, self.head_position)


def open_source_store(settings: Settings) -> SourceStore:
    """The store ``settings.database_url`` names, opened read-only without a key ring."""
    location = settings.database
    if isinstance(location, SqliteLocation):
        if location.is_memory:
            raise MigrationRefused("an in-memory database holds nothing to migrate")
        if not Path(location.path).is_file():
            raise MigrationRefused(f"there is no database file at {location.path}")
    small = settings.model_copy(update={"postgres_pool_size": MIGRATION_POOL_SIZE})
    env = application_env(small) | {"CREATE_TABLE": "n"}
    source = SourceStore(env=env)
    try:
        source.position()
    except PersistenceError as error:
        source.close()
        raise MigrationRefused(
            f"PREP_ES_DATABASE_URL names no event store to migrate ({error})"
        ) from None
    return source


def open_target_store(settings: Settings, url: str) -> PrepApplication:
    """The store at ``url``, opened (and created) as every process of this release opens
    one, with the master key of ``settings`` (``PREP_ES_MASTER_KEY``, or embedded a key
    file beside the database, made now if absent)."""
    try:
        parse_database_url(url)
    except ValueError as error:
        raise MigrationRefused(f"--to {error}") from None
    return open_application(
        settings.model_copy(update={"database_url": url, "postgres_pool_size": MIGRATION_POOL_SIZE})
    )


def same_database(source: Settings, target_url: str) -> bool:
    """Whether ``target_url`` names the source's own database (refused as a target)."""
    ours, theirs = source.database, parse_database_url(target_url)
    if isinstance(ours, SqliteLocation) and isinstance(theirs, SqliteLocation):
        return Path(ours.path).resolve() == Path(theirs.path).resolve()
    if isinstance(ours, PostgresLocation) and isinstance(theirs, PostgresLocation):
        return (ours.host, ours.port, ours.dbname) == (theirs.host, theirs.port, theirs.dbname)
    return False


class PositionMap:
    """Source position → target position of every event compared (both increase)."""

    def __init__(self) -> None:
        self._source = array("q")
        self._target = array("q")

    def add(self, source_position: int, target_position: int) -> None:
        self._source.append(source_position)
        self._target.append(target_position)

    def __len__(self) -> int:
        return len(self._source)

    def target_of(self, source_position: int) -> int | None:
        index = bisect.bisect_left(self._source, source_position)
        if index < len(self._source) and self._source[index] == source_position:
            return self._target[index]
        return None


@dataclass
class CopyReport:
    source_events: int
    """Events of the source copied in all, by this run and those before it."""
    resumed_after: int
    """Events an earlier run had copied already."""
    copied: int
    """Events copied by this run."""
    moved: int
    """Events of this run stored at a new aggregate id (claims, registrations' keys)."""
    source_position: int
    """The source position the copy ends at."""
    elapsed_s: float

    @property
    def events_per_s(self) -> float:
        return self.copied / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class EventCheck:
    """The target compared with the source, event by event."""

    compared: int = 0
    differences: list[str] = field(default_factory=list)
    differing: int = 0
    positions: PositionMap = field(default_factory=PositionMap)
    moved_ids: dict[UUID, UUID] = field(default_factory=dict)
    """Source aggregate id → target aggregate id, where they differ."""
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.differing == 0

    def differ(self, description: str) -> None:
        self.differing += 1
        if len(self.differences) < DIFFERENCES_LISTED_MAX:
            self.differences.append(description)


class StoreMigration:
    """Copies ``source`` (written before encryption) into ``target`` and compares them."""

    def __init__(
        self,
        source: SourceStore,
        target: PrepApplication,
        *,
        batch_size: int = BATCH_SIZE_DEFAULT,
    ) -> None:
        assert 1 <= batch_size <= BATCH_SIZE_MAX, batch_size
        self.source = source
        self.target = target
        self.batch_size = batch_size
        self.transform = PreEncryptionTransform(target.email_digest, target.keyed_digest)

    def resume_point(self) -> tuple[int, int]:
        """(events the target holds, the source position of the last of them): where the
        copy goes on. Raises :class:`MigrationRefused` unless the target is empty or
        holds the first events of the source, transformed, and nothing else."""
        copied = count_events(self.target)
        if copied == 0:
            return 0, 0
        source_event = nth_event(self.source, copied)
        target_event = last_event(self.target)
        refusal = (
            f"the target holds {copied} event(s) that are not a copy of this source's first "
            f"{copied}: migrate into an empty store (a new database, or a new file)"
        )
        if source_event is None or target_event is None:
            raise MigrationRefused(refusal)
        if self._difference(source_event, target_event) is not None:
            raise MigrationRefused(refusal)
        return copied, source_event.id

    def copy(self, on_progress: Callable[[int, float], None] | None = None) -> CopyReport:
        """Copy every source event the target does not hold yet, a batch per
        transaction, up to the source's head as it is now."""
        started = time.monotonic()
        resumed_after, position = self.resume_point()
        head = self.source.recorder.max_notification_id() or 0
        copied = moved = 0
        while position < head:
            batch = self.source.notifications(position, head, self.batch_size)
            if not batch:
                break
            stored: list[StoredEvent] = []
            for notification in batch:
                transformed = self.transform.transform(notification)
                moved += transformed.moved
                event = self._decode_source(transformed.stored, notification)
                stored.append(self.target.mapper.to_stored_event(event))
            self.target.recorder.insert_events(stored)
            copied += len(batch)
            position = batch[-1].id
            if on_progress is not None:
                on_progress(resumed_after + copied, time.monotonic() - started)
        return CopyReport(
            source_events=resumed_after + copied,
            resumed_after=resumed_after,
            copied=copied,
            moved=moved,
            source_position=position,
            elapsed_s=time.monotonic() - started,
        )

    def verify(self, *, after_events: int = 0, up_to_source_position: int) -> EventCheck:
        """Compare the target with the source event by event, from their
        (``after_events`` + 1)-th event to the source's ``up_to_source_position``: same
        aggregates (moved ones at the id the transform gives them), versions, topics and
        decoded payloads, each changed only where the transform changes it; and no
        personal field of the target stored in plain text. The target must hold nothing
        more."""
        started = time.monotonic()
        check = EventCheck()
        source_start = 0 if after_events == 0 else self._nth_position(self.source, after_events)
        target_start = 0 if after_events == 0 else self._nth_position(self.target, after_events)
        sources = _events(self.source, source_start, up_to_source_position, self.batch_size)
        targets = _events(self.target, target_start, None, self.batch_size)
        for source_event in sources:
            target_event = next(targets, None)
            if target_event is None:
                check.differ(f"source event {_name(source_event)} was not copied")
                continue
            check.compared += 1
            check.positions.add(source_event.id, target_event.id)
            if source_event.originator_id != target_event.originator_id:
                source_id, target_id = source_event.originator_id, target_event.originator_id
                assert isinstance(source_id, UUID) and isinstance(target_id, UUID)
                check.moved_ids[source_id] = target_id
            difference = self._difference(source_event, target_event)
            if difference is not None:
                check.differ(difference)
        for extra in targets:
            check.differ(f"the target holds {_name(extra)}, which the source does not")
        check.elapsed_s = time.monotonic() - started
        return check

    def _difference(self, source_event: Notification, target_event: Notification) -> str | None:
        """What differs between a source event and its copy, or None."""
        where = f"source {_name(source_event)} / target {_name(target_event)}"
        if (source_event.originator_version, source_event.topic) != (
            target_event.originator_version,
            target_event.topic,
        ):
            return f"{where}: not the same version and topic"
        try:
            transformed = self.transform.transform(source_event)
        except NotPreEncryptionStore as error:
            return f"{where}: {error}"
        if transformed.stored.originator_id != target_event.originator_id:
            return f"{where}: the copy is not at the aggregate id the transform gives it"
        original = _fields(self._decode_source(source_event, source_event))
        expected = _fields(self._decode_source(transformed.stored, source_event))
        changed = {
            name
            for name in original.keys() | expected.keys()
            if original.get(name) != expected.get(name)
        }
        allowed = CHANGED_BY_TRANSFORM.get(source_event.topic, frozenset())
        if not changed <= allowed:
            return f"{where}: the transform changed {sorted(changed - allowed)}"
        copied = self.target.mapper.to_domain_event(target_event)
        assert isinstance(copied, BaseModel), copied
        if _fields(copied) != expected:
            return f"{where}: the decoded payloads differ"
        plain = _plaintext_fields(type(copied), target_event.state)
        if plain:
            return f"{where}: personal field(s) {sorted(plain)} stored in plain text"
        return None

    def _decode_source(self, stored: StoredEvent, notification: Notification) -> Any:
        try:
            return self.source.mapper.to_domain_event(stored)
        except (PersistenceError, ValueError) as error:
            raise NotPreEncryptionStore(
                f"source event {_name(notification)} does not read as the release before "
                f"encryption wrote it: {error}"
            ) from None

    def _nth_position(self, app: PrepApplication, n: int) -> int:
        event = nth_event(app, n)
        assert event is not None, n
        return event.id


def _events(
    app: PrepApplication, after: int, up_to: int | None, batch_size: int
) -> Iterator[Notification]:
    position = after
    while True:
        batch = app.notifications(position, up_to, batch_size)
        if not batch:
            return
        yield from batch
        position = batch[-1].id


def _fields(event: DomainEventProtocol[UUID] | BaseModel) -> dict[str, Any]:
    assert isinstance(event, BaseModel), event
    fields: dict[str, Any] = event.model_dump(mode="json")
    fields["__class__"] = type(event).__qualname__
    return fields


def _plaintext_fields(event_class: type[BaseModel], state: bytes) -> set[str]:
    """The personal fields of a stored state held in plain text (neither sealed, nor
    absent, nor an empty text, which is left unsealed)."""
    names = personal_fields(event_class)
    if not names:
        return set()
    stored = orjson.loads(state)
    return {
        name
        for name in names
        if stored.get(name) not in (None, "") and not is_envelope(stored[name])
    }


def _name(event: StoredEvent) -> str:
    return f"{event.topic} {event.originator_id} v{event.originator_version}"


def count_events(app: PrepApplication) -> int:
    """How many events ``app``'s store holds (a scan of its primary key)."""
    return _count_rows(app, app.recorder)


def count_snapshots(app: PrepApplication) -> int:
    return 0 if app.snapshots is None else _count_rows(app, app.snapshots.recorder)


def _count_rows(app: PrepApplication, recorder: object) -> int:
    table: str = getattr(recorder, "events_table_name")  # noqa: B009
    if isinstance(app.recorder, AppendOnlyPostgresApplicationRecorder):
        datastore = app.recorder.datastore
        statement = SQL("SELECT count(*) FROM {table}").format(
            table=qualified_table(datastore, table)
        )
        with (
            datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(statement)
            row = cursor.fetchone()
    else:
        assert isinstance(app.recorder, AppendOnlySQLiteApplicationRecorder), app.recorder
        with app.recorder.datastore.transaction(commit=False) as sqlite_cursor:
            sqlite_cursor.execute(f"SELECT count(*) FROM {table}")
            row = sqlite_cursor.fetchone()
    assert row is not None
    return int(row[0])


def nth_event(app: PrepApplication, n: int) -> Notification | None:
    """The ``n``-th event (1-based) of ``app``'s store in notification order."""
    assert n >= 1, n
    recorder = app.recorder
    if isinstance(recorder, AppendOnlyPostgresApplicationRecorder):
        statement = SQL(
            "SELECT notification_id FROM {events} ORDER BY notification_id OFFSET %s LIMIT 1"
        ).format(events=qualified_table(recorder.datastore, recorder.events_table_name))
        with (
            recorder.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(statement, (n - 1,))
            row = cursor.fetchone()
    else:
        assert isinstance(recorder, AppendOnlySQLiteApplicationRecorder), recorder
        with recorder.datastore.transaction(commit=False) as sqlite_cursor:
            sqlite_cursor.execute(
                f"SELECT rowid FROM {recorder.events_table_name} ORDER BY rowid LIMIT 1 OFFSET ?",
                (n - 1,),
            )
            row = sqlite_cursor.fetchone()
    if row is None:
        return None
    position = int(row[0])
    found = app.notifications(position - 1, position, 1)
    return found[0] if found else None


def last_event(app: PrepApplication) -> Notification | None:
    head = app.recorder.max_notification_id() or 0
    if head == 0:
        return None
    found = app.notifications(head - 1, head, 1)
    return found[0] if found else None
