"""The SQLite side of the event store: eventsourcing's recorders made append-only, taking
the write lock at BEGIN and checking ``expected_versions`` at commit, as the PostgreSQL
recorders do (see :mod:`prep_es.store.eventstore`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Final

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteProcessRecorder,
    SQLiteTransaction,
)
from eventsourcing.utils import Environment

from prep_es.store.group_commit import ExpectedVersions
from prep_es.store.postgres_recorders import APPEND_ONLY_MESSAGE

SQLITE_LOCK_TIMEOUT_S: Final = 5


def sqlite_append_only_statements(table: str) -> list[str]:
    """DDL that makes ``table`` refuse UPDATE and DELETE (SQLite has no TRUNCATE: a
    ``DELETE`` without ``WHERE`` fires the delete trigger like any other)."""
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_{operation.lower()} "
        f"BEFORE {operation} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{operation} on {table} refused: "
        f"{APPEND_ONLY_MESSAGE}'); END"
        for operation in ("UPDATE", "DELETE")
    ]


class AppendOnlySQLiteAggregateRecorder(SQLiteAggregateRecorder):
    """Snapshots table: eventsourcing's recorder, plus append-only triggers."""

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        return [*statements, *sqlite_append_only_statements(self.events_table_name)]


class _ImmediateTransaction(SQLiteTransaction):
    """Takes SQLite's write lock at BEGIN. An append reads (its expected versions) before
    it writes; in a deferred transaction, a write committed by another connection in
    between (read models share the file) would refuse the upgrade at once as "database
    is locked" instead of waiting for the busy timeout."""

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        return cursor


class AppendOnlySQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """Events table: eventsourcing's recorder, plus append-only triggers and the
    ``expected_versions`` condition of the PostgreSQL recorder."""

    def __init__(
        self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name)
        # One writer at a time in this process: the condition is read in the same
        # transaction as the insert, and SQLite would otherwise refuse one of two
        # concurrent read-then-write transactions as busy rather than wait.
        self._append_lock = threading.Lock()
        self._select_newer_version = (
            f"SELECT 1 FROM {events_table_name} "
            "WHERE originator_id = ? AND originator_version > ? LIMIT 1"
        )

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        return [*statements, *sqlite_append_only_statements(self.events_table_name)]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with (
            self._append_lock,
            self.datastore.get_connection(commit=True) as connection,
            _ImmediateTransaction(connection, commit=True) as cursor,
        ):
            return self._insert_events(cursor, stored_events, **kwargs)

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        expected_versions: ExpectedVersions = kwargs.pop("expected_versions", None) or {}
        for aggregate_id, version in expected_versions.items():
            c.execute(self._select_newer_version, (aggregate_id.hex, version))
            if c.fetchone() is not None:
                msg = f"aggregate {aggregate_id} has changed since version {version}"
                raise IntegrityError(msg)
        notification_ids: Sequence[int] | None = super()._insert_events(c, stored_events, **kwargs)
        return notification_ids


class AppendOnlySQLiteProcessRecorder(SQLiteProcessRecorder):
    """Events (append-only) and tracking (updated in place) of a process application."""

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        return [*statements, *sqlite_append_only_statements(self.events_table_name)]


class SecureDeleteConnectionPool(SQLiteConnectionPool):
    """eventsourcing's pool, its connections deleting securely (``secure_delete``): what
    a row held before it was updated or deleted — a destroyed data key above all — is
    overwritten with zeros, not left in the file's free space for a copy of the file to
    hand over."""

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection.cursor().execute("PRAGMA secure_delete=ON")
        return connection


class PrepSQLiteFactory(SQLiteFactory):
    """eventsourcing's SQLite factory, building our append-only recorders over
    connections that delete securely."""

    aggregate_recorder_class = AppendOnlySQLiteAggregateRecorder
    application_recorder_class = AppendOnlySQLiteApplicationRecorder
    process_recorder_class = AppendOnlySQLiteProcessRecorder

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        plain = self.datastore.pool
        # The library's pool with its defaults (it opens connections on first use).
        self.datastore.pool = SecureDeleteConnectionPool(
            db_name=plain.db_name, lock_timeout=plain.lock_timeout
        )
        plain.close()
