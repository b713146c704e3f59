"""The event store: eventsourcing's application and recorders, configured from Settings.

Four guarantees, and where each comes from:

**Append-only.** The tables that hold events and snapshots refuse ``UPDATE``, ``DELETE``
and (PostgreSQL) ``TRUNCATE`` with database triggers, created by the same code that
creates the tables (the recorder subclasses below), idempotently at every start. History
is corrected by new events, never by editing old ones. The triggers guard against
mistakes and application bugs, not against a database owner: a superuser can still
disable triggers or drop tables, so production runs the app as a role that does not own
the schema.

**Commit order is notification order.** On PostgreSQL every append calls one
PL/pgSQL function (``prep_es_append_<table>``) as a single statement in its own
transaction; the function takes ``LOCK TABLE ... IN EXCLUSIVE MODE`` before drawing
notification ids from the sequence, as eventsourcing's default insert path does, and
the lock is held until the commit. Appends therefore commit in id order, and a reader
that has seen id N will never later see a smaller id commit: a projector may follow the
log by position without skipping events. (eventsourcing's own insert function,
``POSTGRES_ENABLE_DB_FUNCTIONS``, takes no table lock and stays off.) SQLite serialises
writers and uses the rowid as notification id; with deletes refused, a rowid is never
reused.

**Decisions are validated at commit.** An append carries ``expected_versions``: the
aggregates its command read without changing, at the versions read. Under the same
lock, the append fails as a write conflict if any of them has moved on, exactly as it
fails when an aggregate it writes has. A command can therefore decide on cached state
and still never commit a decision made on stale state.

**Explicit topics.** Events are stored under their class's ``TOPIC`` (see
``prep_es.store.serialization``), and :class:`PrepApplication` imports every module of the
``aggregates`` package before it reads, so every stored topic resolves.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import select
import threading
import time
import weakref
from collections.abc import Sequence
from itertools import accumulate
from threading import Event
from typing import Any, Final
from uuid import UUID

import psycopg
import psycopg_pool
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    InternalError,
    Notification,
    OperationalError,
    Recording,
    StoredEvent,
    Subscription,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresProcessRecorder,
    PostgresSubscription,
)
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
    SQLiteProcessRecorder,
    SQLiteTransaction,
)
from eventsourcing.utils import Environment, EnvType, get_topic
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

import aggregates
from aggregates.base import Aggregate as DomainAggregate
from prep_es.store.group_commit import Append, AppendOutcome, ExpectedVersions, GroupCommit
from prep_es.store.serialization import OrjsonTranscoder, PydanticMapper
from prep_es.store.settings import PostgresLocation, Settings, SqliteLocation

logger = logging.getLogger(__name__)

APPLICATION_NAME: Final = "prep_es"

POSTGRES_LOCK_TIMEOUT_S: Final = 5
"""How long an append waits for the table lock before failing (and being retried)."""
POSTGRES_CONNECT_TIMEOUT_S: Final = 5
POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_S: Final = 5
SQLITE_LOCK_TIMEOUT_S: Final = 5

APPEND_ONLY_FUNCTION: Final = "prep_es_refuse_change"
APPEND_ONLY_ROWS_TRIGGER: Final = "prep_es_append_only_rows"
APPEND_ONLY_TRUNCATE_TRIGGER: Final = "prep_es_append_only_truncate"
APPEND_ONLY_MESSAGE: Final = "the event store is append-only"
APPEND_FUNCTION_PREFIX: Final = "prep_es_append_"
NOTIFICATION_ID_MAX: Final = 2**63 - 1
"""The largest notification id PostgreSQL can hold (``bigint``)."""
APPEND_ATTEMPTS_MAX: Final = 10
"""Times a group is sent while its connection fails (the database restarting, say)."""
APPEND_RETRY_WAIT_S: Final = 0.2

DATABASE_FILE_MODE: Final = 0o600
"""An embedded database holds password hashes and personal data: its owner's alone.
SQLite gives its ``-wal`` and ``-shm`` files the database file's mode."""

# Serialises schema creation across processes starting at once: concurrent
# CREATE OR REPLACE of one function or trigger fails with "tuple concurrently updated".
_SCHEMA_CHANGE_LOCK_KEY: Final = 0x707265705F6573  # "prep_es"


def postgres_append_only_statements(schema: str, table: str) -> list[Composed]:
    """DDL that makes ``schema.table`` refuse UPDATE, DELETE and TRUNCATE (PostgreSQL 14+).

    Idempotent: ``CREATE OR REPLACE`` for the shared function and both triggers.
    """
    function = SQL("{schema}.{function}").format(
        schema=Identifier(schema), function=Identifier(APPEND_ONLY_FUNCTION)
    )
    create_function = SQL(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$ "
        "BEGIN "
        "RAISE EXCEPTION '% on %.% refused: " + APPEND_ONLY_MESSAGE + "', "
        "TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME; "
        "END; "
        "$body$"
    ).format(function=function)
    rows_trigger = SQL(
        "CREATE OR REPLACE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {schema}.{table} "
        "FOR EACH ROW EXECUTE FUNCTION {function}()"
    ).format(
        trigger=Identifier(APPEND_ONLY_ROWS_TRIGGER),
        schema=Identifier(schema),
        table=Identifier(table),
        function=function,
    )
    truncate_trigger = SQL(
        "CREATE OR REPLACE TRIGGER {trigger} BEFORE TRUNCATE ON {schema}.{table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    ).format(
        trigger=Identifier(APPEND_ONLY_TRUNCATE_TRIGGER),
        schema=Identifier(schema),
        table=Identifier(table),
        function=function,
    )
    return [create_function, rows_trigger, truncate_trigger]


def postgres_append_function_statement(
    function: Composed, *, table: Composed, channel: Identifier, lock_timeout_s: int
) -> Composed:
    """DDL of the function every group of appends calls (see ``prep_es.store.group_commit``).

    It takes the events table's EXCLUSIVE lock (so commit order is notification-id
    order), then judges the appends in order: one is refused if an event of it takes a
    version already stored, or if an aggregate its decision read (``expected_*``) has
    moved on since the version read; otherwise its events are inserted, so a later
    append of the group sees them. ``resent``: the group is sent again because the
    connection failed, maybe after it committed; then an append whose first event is
    stored byte for byte was stored by that earlier call (events carry their own
    timestamp and request, so no other append writes the same bytes), and is answered
    with the ids it was stored at rather than refused. It returns ``(append_index,
    notification_id)`` for every event stored, in order (an append without rows was
    refused), and notifies listeners if anything was inserted. Appends are delimited by
    ``event_ends`` and ``expected_ends``: the last index (1-based) of each one's events
    and expected versions. Called as a single statement on an autocommit connection, a
    group is one round trip and one transaction, and the lock is held until it commits.
    Every check is a primary-key probe; with the lock held, nothing else can insert
    between a check and its insert."""
    return SQL(
        "CREATE OR REPLACE FUNCTION {function}("
        "originator_ids uuid[], originator_versions bigint[], topics text[], states bytea[], "
        "event_ends int[], expected_ids uuid[], expected_versions bigint[], "
        "expected_ends int[], resent boolean) "
        "RETURNS TABLE (append_index int, notification_id bigint) "
        "LANGUAGE plpgsql AS $body$ "
        "DECLARE "
        "first_event int := 1; first_expected int := 1; refused boolean; "
        "stored_alike boolean; inserted boolean := false; "
        "BEGIN "
        "SET LOCAL lock_timeout = '{lock_timeout}s'; "
        "LOCK TABLE {table} IN EXCLUSIVE MODE; "
        "FOR a IN 1 .. coalesce(array_length(event_ends, 1), 0) LOOP "
        # NULL: the first event's version is free; false: another event took it.
        "stored_alike := NULL; "
        "SELECT t.topic = topics[first_event] AND t.state = states[first_event] "
        "INTO stored_alike FROM {table} t WHERE t.originator_id = originator_ids[first_event] "
        "AND t.originator_version = originator_versions[first_event]; "
        "IF resent AND stored_alike THEN "
        "RETURN QUERY SELECT a, t.notification_id FROM unnest("
        "originator_ids[first_event:event_ends[a]], "
        "originator_versions[first_event:event_ends[a]]) WITH ORDINALITY AS e(id, version, n) "
        "JOIN {table} t ON t.originator_id = e.id AND t.originator_version = e.version "
        "ORDER BY e.n; "
        "ELSE "
        "refused := stored_alike IS NOT NULL; "
        "FOR i IN first_expected .. expected_ends[a] LOOP "
        "EXIT WHEN refused; "
        "refused := EXISTS (SELECT FROM {table} t WHERE t.originator_id = expected_ids[i] "
        "AND t.originator_version > expected_versions[i]); "
        "END LOOP; "
        "FOR i IN first_event + 1 .. event_ends[a] LOOP "
        "EXIT WHEN refused; "
        "refused := EXISTS (SELECT FROM {table} t WHERE t.originator_id = originator_ids[i] "
        "AND t.originator_version = originator_versions[i]); "
        "END LOOP; "
        "IF NOT refused THEN "
        "inserted := true; "
        "RETURN QUERY INSERT INTO {table} (originator_id, originator_version, topic, state) "
        "SELECT * FROM unnest(originator_ids[first_event:event_ends[a]], "
        "originator_versions[first_event:event_ends[a]], topics[first_event:event_ends[a]], "
        "states[first_event:event_ends[a]]) "
        "RETURNING a, {table}.notification_id; "
        "END IF; "
        "END IF; "
        "first_event := event_ends[a] + 1; first_expected := expected_ends[a] + 1; "
        "END LOOP; "
        "IF inserted THEN NOTIFY {channel}; END IF; "
        "END; "
        "$body$"
    ).format(
        function=function,
        table=table,
        channel=channel,
        lock_timeout=SQL(str(int(lock_timeout_s))),
    )


FORMER_APPEND_FUNCTION_PARAMETERS: Final = (
    "uuid[], bigint[], text[], bytea[], uuid[], bigint[]",  # one append at a time
)
"""Signatures of the append function before the previous version's, dropped at start."""


def postgres_drop_former_append_function_statements(function: Composed) -> list[Composed]:
    """The append functions of versions before the previous one, whose signatures differ."""
    return [
        SQL("DROP FUNCTION IF EXISTS {function}({parameters})").format(
            function=function, parameters=SQL(parameters)
        )
        for parameters in FORMER_APPEND_FUNCTION_PARAMETERS
    ]


def postgres_previous_append_function_statement(function: Composed) -> Composed:
    """The previous version's append function (without ``resent``), kept as a call of
    the current one: during a rolling upgrade, processes of that version go on appending
    after a process of this one has started. It calls the current one with ``resent``
    false, which is what that version's function did."""
    return SQL(
        "CREATE OR REPLACE FUNCTION {function}("
        "originator_ids uuid[], originator_versions bigint[], topics text[], states bytea[], "
        "event_ends int[], expected_ids uuid[], expected_versions bigint[], "
        "expected_ends int[]) "
        "RETURNS TABLE (append_index int, notification_id bigint) "
        "LANGUAGE sql AS $body$ "
        "SELECT * FROM {function}(originator_ids, originator_versions, topics, states, "
        "event_ends, expected_ids, expected_versions, expected_ends, false) "
        "$body$"
    ).format(function=function)


class DatabaseRefusesWrites(OperationalError):
    """An append was refused with ``read_only_sql_transaction`` (SQLSTATE 25006) and a
    new session refuses writes too: the database was made read-only
    (``default_transaction_read_only``) or is a standby. Nothing was stored."""


def session_refuses_writes(connection: psycopg.Connection[Any]) -> bool:
    """Whether a transaction this session begins without saying otherwise is read-only
    (the database's or the role's ``default_transaction_read_only``, or a standby)."""
    row = connection.execute("SHOW transaction_read_only").fetchone()
    assert row is not None
    value = row["transaction_read_only"] if isinstance(row, dict) else row[0]
    return bool(value == "on")


def qualified_table(datastore: PostgresDatastore, table: str) -> Composed:
    """``schema.table``, each part quoted, for composing statements."""
    return SQL("{schema}.{table}").format(
        schema=Identifier(datastore.schema), table=Identifier(table)
    )


def _lock_schema_changes(curs: Cursor[DictRow]) -> None:
    curs.execute(SQL("SELECT pg_advisory_xact_lock(%s)"), (_SCHEMA_CHANGE_LOCK_KEY,))


SUBSCRIPTION_LISTEN_WAIT_S: Final = 10


class ListeningPostgresSubscription(PostgresSubscription):
    """eventsourcing's LISTEN/NOTIFY subscription, made safe against a lost wake-up.

    The library starts LISTEN on a background thread and returns at once; an event
    committed before LISTEN took effect (after the first catch-up read) sends a NOTIFY
    nobody hears, and the subscriber waits until some later append. Here the
    constructor waits until LISTEN is in place and then forces one more read.
    """

    def __init__(
        self,
        recorder: PostgresApplicationRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        self._listening = Event()
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        if not self._listening.wait(timeout=SUBSCRIPTION_LISTEN_WAIT_S):
            self.stop()
            msg = f"subscription did not start listening within {SUBSCRIPTION_LISTEN_WAIT_S}s"
            raise TimeoutError(msg)
        self._has_been_notified.set()

    def _listen(self) -> None:
        try:
            with self._recorder.datastore.get_connection() as conn:
                conn.execute(SQL("LISTEN {0}").format(Identifier(self._recorder.channel_name)))
                self._listening.set()
                while not self._has_been_stopped and not self._thread_error:
                    # Wake at least every 0.1 s to notice stop(); one NOTIFY is enough.
                    for _ in conn.notifies(timeout=0.1, stop_after=1):
                        self._has_been_notified.set()
        except BaseException as error:  # handed to the subscriber by __next__
            if self._thread_error is None:
                self._thread_error = error
            self.stop()
        finally:
            self._listening.set()


class AppendOnlyPostgresAggregateRecorder(PostgresAggregateRecorder):
    """Snapshots table: eventsourcing's recorder, plus append-only triggers."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements.extend(
            postgres_append_only_statements(datastore.schema, events_table_name)
        )

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        _lock_schema_changes(curs)
        super()._create_table(curs)


class AppendOnlyPostgresApplicationRecorder(PostgresApplicationRecorder):
    """Events table: eventsourcing's recorder, plus append-only triggers."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements.extend(
            postgres_append_only_statements(datastore.schema, events_table_name)
        )
        self.group_commit = GroupCommit(self._insert_appends)
        self._append_function = SQL("{schema}.{function}").format(
            schema=Identifier(datastore.schema),
            function=Identifier(f"{APPEND_FUNCTION_PREFIX}{events_table_name}"),
        )
        self.sql_create_statements.extend(
            postgres_drop_former_append_function_statements(self._append_function)
        )
        self.sql_create_statements.append(
            postgres_append_function_statement(
                self._append_function,
                table=qualified_table(datastore, events_table_name),
                channel=Identifier(self.channel_name),
                lock_timeout_s=datastore.lock_timeout,
            )
        )
        self.sql_create_statements.append(
            postgres_previous_append_function_statement(self._append_function)
        )
        self._call_append_function = SQL(
            "SELECT append_index, notification_id "
            "FROM {function}(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(function=self._append_function)

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        _lock_schema_changes(curs)
        super()._create_table(curs)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Appends from concurrent threads share transactions (see ``group_commit``).
        ``expected_versions``: aggregates read but not changed, which must not have
        moved on (see ``commands.unit_of_work.UnitOfWork``)."""
        expected_versions: ExpectedVersions = kwargs.pop("expected_versions", None) or {}
        assert kwargs.get("tracking") is None, "tracking goes through the process recorder"
        if not stored_events:
            return []
        return self.group_commit.insert_events(stored_events, expected_versions)

    def _insert_appends(self, appends: Sequence[Append]) -> list[AppendOutcome]:
        """The group sent, and sent again while the connection fails (the database
        restarting, say). A failure may come after the commit, with the answer lost:
        sent again, an append already stored is answered as stored, not refused as a
        conflict with itself — its command succeeded."""
        sessions_renewed = False
        for attempt in range(1, APPEND_ATTEMPTS_MAX):
            try:
                return self._send_appends(appends, resent=attempt > 1)
            except (InterfaceError, OperationalError):
                time.sleep(APPEND_RETRY_WAIT_S)
            except InternalError as error:
                if not isinstance(error.__cause__, psycopg.errors.ReadOnlySqlTransaction):
                    raise
                if sessions_renewed or self._new_session_refuses_writes():
                    raise DatabaseRefusesWrites(str(error)) from error
                self._renew_sessions()
                sessions_renewed = True
        return self._send_appends(appends, resent=True)  # the last try: its failure is raised

    def _new_session_refuses_writes(self) -> bool:
        """Whether the database refuses writes now, asked in a session of its own: a
        pooled session keeps the ``default_transaction_read_only`` it began with."""
        pool_kwargs = self.datastore.pool.kwargs
        assert isinstance(pool_kwargs, dict)
        kwargs = {key: value for key, value in pool_kwargs.items() if key != "row_factory"}
        with psycopg.connect(
            **kwargs, autocommit=True, connect_timeout=POSTGRES_CONNECT_TIMEOUT_S
        ) as connection:
            return session_refuses_writes(connection)

    def _renew_sessions(self) -> None:
        """The database takes writes again, but every pooled session that began while
        it did not still refuses them (its default was fixed when it began): replace
        them all, those in use as they come back."""
        logger.warning("the database takes writes again: renewing the pooled sessions")
        self.datastore.pool.drain()

    def _send_appends(self, appends: Sequence[Append], *, resent: bool) -> list[AppendOutcome]:
        """One statement, one round trip, one transaction (the connection is in
        autocommit mode): the append function takes the table lock, judges each
        append, inserts those it accepts and notifies."""
        events = [event for append in appends for event in append.stored_events]
        event_ends = list(accumulate(len(append.stored_events) for append in appends))
        expected_ends = list(accumulate(len(append.expected_versions) for append in appends))
        expected = [item for append in appends for item in append.expected_versions.items()]
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(
                self._call_append_function,
                (
                    [event.originator_id for event in events],
                    [event.originator_version for event in events],
                    [event.topic for event in events],
                    [event.state for event in events],
                    event_ends,
                    [aggregate_id for aggregate_id, _ in expected],
                    [version for _, version in expected],
                    expected_ends,
                    resent,
                ),
                prepare=True,
            )
            rows = curs.fetchall()
        notification_ids: list[list[int]] = [[] for _ in appends]
        for append_index, notification_id in rows:
            notification_ids[append_index - 1].append(notification_id)
        return [
            ids
            if ids
            else IntegrityError(
                "a version this append takes is already stored, or an aggregate its "
                "decision read has changed"
            )
            for ids in notification_ids
        ]

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return ListeningPostgresSubscription(recorder=self, gt=gt, topics=topics)


class AppendOnlyPostgresProcessRecorder(PostgresProcessRecorder):
    """Events (append-only) and tracking (updated in place) of a process application."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        self.sql_create_statements.extend(
            postgres_append_only_statements(datastore.schema, events_table_name)
        )

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        _lock_schema_changes(curs)
        super()._create_table(curs)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return ListeningPostgresSubscription(recorder=self, gt=gt, topics=topics)


def closed_by_server(connection: psycopg.Connection[Any]) -> bool:
    """Whether an idle ``connection``'s session is over: closed, or its socket readable.

    When PostgreSQL restarts, each session is sent a last message (``AdminShutdown``,
    or an immediate shutdown's) and closed. An idle connection has nothing to read, so
    a readable socket means the session is over (or said something out of turn, and
    replacing it costs a reconnect). A ``poll`` of the socket finds that without a
    round trip, where the library's pre-ping (``SELECT`` nothing) adds one to every
    use. A connection that died without a word (a lost network) is found in use; the
    caller's retry then gets another."""
    if connection.closed or connection.broken:
        return True
    readable = select.poll()
    readable.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(readable.poll(0))


class DropClosedConnections:
    """The pool's check of each connection before it lends it: one the server closed
    is closed here and refused, and then so is every other such one idle in the pool
    (``pool.check()``), all at once: the pool waits a second after each refusal, and
    after a restart every idle connection is dead (ten failures in a row for a pool of
    ten, where each would otherwise fail once in use)."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        self._pool = weakref.ref(pool)  # the pool holds this check

    def __call__(self, connection: psycopg.Connection[Any]) -> None:
        if not closed_by_server(connection):
            return
        connection.close()
        pool = self._pool()
        if pool is not None:
            pool.check()
        raise psycopg.OperationalError("the server closed the connection while it was idle")


class PrepPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, building our append-only recorders, with a
    pool that checks each connection before lending it (see
    :class:`DropClosedConnections`)."""

    aggregate_recorder_class = AppendOnlyPostgresAggregateRecorder
    application_recorder_class = AppendOnlyPostgresApplicationRecorder
    process_recorder_class = AppendOnlyPostgresProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        # The library's datastore takes only its own round-trip check (``pre_ping``),
        # and the pool reads this attribute at each lend (psycopg_pool 3.2 and 3.3).
        self.datastore.pool._check = DropClosedConnections(self.datastore.pool)


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


class PrepSQLiteFactory(SQLiteFactory):
    """eventsourcing's SQLite factory, building our append-only recorders."""

    aggregate_recorder_class = AppendOnlySQLiteAggregateRecorder
    application_recorder_class = AppendOnlySQLiteApplicationRecorder
    process_recorder_class = AppendOnlySQLiteProcessRecorder


def import_domain_modules() -> None:
    """Import every module of the ``aggregates`` package: registers every event topic
    and fills ``aggregates.SNAPSHOTTING_INTERVALS``."""
    for module in pkgutil.walk_packages(aggregates.__path__, prefix="aggregates."):
        importlib.import_module(module.name)


DATABASE_IDENTITY_QUERY: Final = (
    "SELECT current_database() AS database, inet_server_port() AS port, "
    "pg_postmaster_start_time() AS started"
)
"""Two sessions answering alike are on the same database of the same server instance."""


class PrepApplication(Application[UUID]):
    """The Prep ES event store: repository, snapshots and notification log.

    Configured only by the ``env`` it is given (see :func:`open_application`): unlike
    eventsourcing's default, the process environment is not consulted.
    """

    name = APPLICATION_NAME
    # The very dict the aggregate modules fill in, so intervals registered after this
    # module was imported still count.
    snapshotting_intervals = aggregates.SNAPSHOTTING_INTERVALS

    def __init__(self, env: EnvType | None = None) -> None:
        import_domain_modules()
        super().__init__(env)
        self._latest_events_statement: Composed | None = None
        self._notifications_statements: tuple[Composed, Composed] | None = None

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        """As the library's ``save``, without checking each object against runtime
        protocols when all are our aggregates: those checks cost more than the rest."""
        if not all(isinstance(obj, DomainAggregate) for obj in objs):
            return super().save(*objs, **kwargs)
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in objs:
            assert isinstance(aggregate, DomainAggregate)
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def position(self) -> int:
        """The notification id of the latest stored event (0 when the store is empty)."""
        return self.recorder.max_notification_id() or 0

    def postgres_events_table(self) -> str | None:
        """The events table, qualified and quoted for SQL in another session on the same
        PostgreSQL database (``None`` on SQLite)."""
        recorder = self.recorder
        if not isinstance(recorder, AppendOnlyPostgresApplicationRecorder):
            return None
        schema = recorder.datastore.schema.replace('"', '""')
        table = recorder.events_table_name.replace('"', '""')
        return f'"{schema}"."{table}"'

    def postgres_database_identity(self) -> tuple[object, ...] | None:
        """What tells this store's PostgreSQL database from any other (see
        :data:`DATABASE_IDENTITY_QUERY`); ``None`` on SQLite."""
        recorder = self.recorder
        if not isinstance(recorder, AppendOnlyPostgresApplicationRecorder):
            return None
        with recorder.datastore.cursor() as cursor:
            cursor.execute(DATABASE_IDENTITY_QUERY)
            row = cursor.fetchone()
        assert row is not None
        return tuple(row.values())

    def latest_events_of(
        self, aggregate_ids: Sequence[UUID]
    ) -> dict[UUID, list[DomainEventProtocol[UUID]]]:
        """What each of ``aggregate_ids`` is rebuilt from: its latest snapshot, if any,
        then its events after it (empty if it does not exist). On PostgreSQL in one
        statement for all of them, where the repository asks for each one's snapshot and
        events in two round trips."""
        recorder = self.recorder
        snapshots = self.snapshots
        if not isinstance(recorder, AppendOnlyPostgresApplicationRecorder) or snapshots is None:
            return {
                aggregate_id: self._latest_events_apart(aggregate_id)
                for aggregate_id in aggregate_ids
            }
        snapshot_recorder = snapshots.recorder
        assert isinstance(snapshot_recorder, PostgresAggregateRecorder)
        if self._latest_events_statement is None:
            # Every probe is by primary key: the latest snapshot, then the events after it.
            self._latest_events_statement = SQL(
                "SELECT s.*, true AS is_snapshot FROM unnest(%(ids)s::uuid[]) AS wanted(id) "
                "CROSS JOIN LATERAL (SELECT originator_id, originator_version, topic, state "
                "FROM {snapshots} WHERE originator_id = wanted.id "
                "ORDER BY originator_version DESC LIMIT 1) AS s "
                "UNION ALL "
                "SELECT e.originator_id, e.originator_version, e.topic, e.state, false "
                "FROM unnest(%(ids)s::uuid[]) AS wanted(id) "
                "JOIN {events} AS e ON e.originator_id = wanted.id "
                "WHERE e.originator_version > COALESCE((SELECT max(originator_version) "
                "FROM {snapshots} WHERE originator_id = wanted.id), 0) "
                "ORDER BY 1, 5 DESC, 2"
            ).format(
                snapshots=qualified_table(recorder.datastore, snapshot_recorder.events_table_name),
                events=qualified_table(recorder.datastore, recorder.events_table_name),
            )
        with recorder.datastore.get_connection() as connection, connection.cursor() as cursor:
            cursor.execute(
                self._latest_events_statement, {"ids": list(aggregate_ids)}, prepare=True
            )
            rows = cursor.fetchall()
        found: dict[UUID, list[DomainEventProtocol[UUID]]] = {
            aggregate_id: [] for aggregate_id in aggregate_ids
        }
        for row in rows:
            found[row["originator_id"]].append(
                self.mapper.to_domain_event(
                    StoredEvent(
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=bytes(row["state"]),
                    )
                )
            )
        return found

    def events_by_topic(self) -> dict[str, int]:
        """How many stored events each topic has (a scan of the whole store: for
        planning work over all of it, such as a rebuild)."""
        recorder = self.recorder
        if isinstance(recorder, AppendOnlyPostgresApplicationRecorder):
            statement = SQL("SELECT topic, count(*) FROM {events} GROUP BY topic").format(
                events=qualified_table(recorder.datastore, recorder.events_table_name)
            )
            with (
                recorder.datastore.get_connection() as connection,
                connection.cursor(row_factory=tuple_row) as cursor,
            ):
                cursor.execute(statement)
                return {str(topic): int(count) for topic, count in cursor.fetchall()}
        assert isinstance(recorder, AppendOnlySQLiteApplicationRecorder)
        with recorder.datastore.transaction(commit=False) as sqlite_cursor:
            sqlite_cursor.execute(
                f"SELECT topic, count(*) FROM {recorder.events_table_name} GROUP BY topic"
            )
            return {str(topic): int(count) for topic, count in sqlite_cursor.fetchall()}

    def position_of(self, aggregate_id: UUID, version: int) -> int | None:
        """The notification id (position) event ``version`` of ``aggregate_id`` was
        stored at; ``None`` if there is no such event."""
        recorder = self.recorder
        if isinstance(recorder, AppendOnlyPostgresApplicationRecorder):
            statement = SQL(
                "SELECT notification_id FROM {events} "
                "WHERE originator_id = %s AND originator_version = %s"
            ).format(events=qualified_table(recorder.datastore, recorder.events_table_name))
            with (
                recorder.datastore.get_connection() as connection,
                connection.cursor(row_factory=tuple_row) as cursor,
            ):
                cursor.execute(statement, (aggregate_id, version))
                row = cursor.fetchone()
        else:
            assert isinstance(recorder, AppendOnlySQLiteApplicationRecorder)
            with recorder.datastore.transaction(commit=False) as sqlite_cursor:
                sqlite_cursor.execute(
                    f"SELECT rowid FROM {recorder.events_table_name} "
                    "WHERE originator_id = ? AND originator_version = ?",
                    (aggregate_id.hex, version),
                )
                row = sqlite_cursor.fetchone()
        return None if row is None else int(row[0])

    def notifications(
        self, start: int, stop: int | None, limit: int, topics: Sequence[str] = ()
    ) -> Sequence[Notification]:
        """Up to ``limit`` stored events with ids in (``start``, ``stop``] (``None``: no
        upper bound), in id order, of ``topics`` only if any are given: the recorder's
        ``select_notifications``, on PostgreSQL with a statement made once and rows read
        as tuples (the recorder composes its statement and builds a dict per row on every
        call: a third more CPU over the reads of a rebuild)."""
        recorder = self.recorder
        if not isinstance(recorder, AppendOnlyPostgresApplicationRecorder):
            return recorder.select_notifications(
                start, limit, stop, topics=list(topics), inclusive_of_start=False
            )
        if self._notifications_statements is None:
            columns = SQL(
                "SELECT originator_id, originator_version, topic, state, notification_id "
                "FROM {events} WHERE notification_id > %s AND notification_id <= %s"
            ).format(events=qualified_table(recorder.datastore, recorder.events_table_name))
            order = SQL(" ORDER BY notification_id LIMIT %s")
            self._notifications_statements = (
                columns + order,
                columns + SQL(" AND topic = ANY(%s)") + order,
            )
        every_topic, some_topics = self._notifications_statements
        if stop is None:
            stop = NOTIFICATION_ID_MAX
        with (
            recorder.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            if topics:
                cursor.execute(some_topics, (start, stop, list(topics), limit), prepare=True)
            else:
                cursor.execute(every_topic, (start, stop, limit), prepare=True)
            return [Notification(*row) for row in cursor.fetchall()]

    def _latest_events_apart(self, aggregate_id: UUID) -> list[DomainEventProtocol[UUID]]:
        snapshot = (
            []
            if self.snapshots is None
            else list(self.snapshots.get(aggregate_id, desc=True, limit=1))
        )
        after = snapshot[0].originator_version if snapshot else None
        return [*snapshot, *self.events.get(aggregate_id, gt=after)]


def application_env(settings: Settings) -> dict[str, str]:
    """The eventsourcing environment that configures :class:`PrepApplication`."""
    env: dict[str, str] = {
        "MAPPER_TOPIC": get_topic(PydanticMapper),
        "TRANSCODER_TOPIC": get_topic(OrjsonTranscoder),
        "IS_SNAPSHOTTING_ENABLED": "y",
        "CREATE_TABLE": "y",
        "ORIGINATOR_ID_TYPE": "uuid",
    }
    if settings.aggregate_cache_size > 0:
        env["AGGREGATE_CACHE_MAXSIZE"] = str(settings.aggregate_cache_size)
    location = settings.database
    if isinstance(location, SqliteLocation):
        env |= {
            "PERSISTENCE_MODULE": get_topic(PrepSQLiteFactory),
            "SQLITE_DBNAME": location.path,
            "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_S),
        }
    else:
        assert isinstance(location, PostgresLocation), location
        env |= {
            "PERSISTENCE_MODULE": get_topic(PrepPostgresFactory),
            "POSTGRES_DBNAME": location.dbname,
            "POSTGRES_HOST": location.host,
            "POSTGRES_PORT": str(location.port),
            "POSTGRES_USER": location.user,
            "POSTGRES_PASSWORD": location.password,
            "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
            "POSTGRES_MAX_OVERFLOW": "0",
            "POSTGRES_LOCK_TIMEOUT": str(POSTGRES_LOCK_TIMEOUT_S),
            "POSTGRES_CONNECT_TIMEOUT": str(POSTGRES_CONNECT_TIMEOUT_S),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(
                POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_S
            ),
        }
    return env


def create_database_file(location: SqliteLocation) -> None:
    """Create the embedded database's file, empty and readable by its owner alone,
    before SQLite opens it (SQLite would create it with the process's umask, usually
    world-readable; its ``-wal`` and ``-shm`` files then take this file's mode). An
    existing file is left as it is; an in-memory database has no file."""
    if location.is_memory:
        return
    try:
        descriptor = os.open(
            location.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATABASE_FILE_MODE
        )
    except (FileExistsError, FileNotFoundError):  # SQLite reports a missing directory
        return
    os.close(descriptor)


def open_application(settings: Settings) -> PrepApplication:
    """Open the event store named by ``settings.database_url``, creating its file
    (embedded: see :func:`create_database_file`), tables and append-only triggers if
    needed. Close it with ``app.close()``."""
    location = settings.database
    if isinstance(location, SqliteLocation):
        create_database_file(location)
    return PrepApplication(env=application_env(settings))


def datastore_of(application: PrepApplication) -> PostgresDatastore | SQLiteDatastore:
    """The connection pool behind ``application`` (for raw SQL in tests and tools)."""
    datastore: Any = getattr(application.factory, "datastore", None)
    assert isinstance(datastore, PostgresDatastore | SQLiteDatastore), datastore
    return datastore
