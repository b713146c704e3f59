"""The PostgreSQL side of the event store: eventsourcing's recorders made append-only,
appending through one locking function so that commit order is notification order,
checking ``expected_versions`` at commit, listening without losing a wake-up, and a pool
that drops connections the server closed. :mod:`prep_es.store.eventstore` says why.
"""

from __future__ import annotations

import logging
import select
import time
import weakref
from collections.abc import Sequence
from itertools import accumulate
from threading import Event
from typing import Any, Final

import psycopg
import psycopg_pool
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
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
from eventsourcing.utils import Environment, EnvType
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from prep_es.store.group_commit import Append, AppendOutcome, ExpectedVersions, GroupCommit

# The name it logged under when the event store was one module: alerts may match it.
logger = logging.getLogger("prep_es.store.eventstore")

POSTGRES_LOCK_TIMEOUT_S: Final = 5
"""How long an append waits for the table lock before failing (and being retried)."""
POSTGRES_CONNECT_TIMEOUT_S: Final = 5
POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_S: Final = 5

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

# Serialises schema creation across processes starting at once: concurrent
# CREATE OR REPLACE of one function or trigger fails with "tuple concurrently updated".
SCHEMA_CHANGE_LOCK_KEY: Final = 0x707265705F6573  # "prep_es"


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


def new_session_refuses_writes(datastore: PostgresDatastore) -> bool:
    """Whether the database refuses writes now, asked in a session of its own: a
    pooled session keeps the ``default_transaction_read_only`` it began with."""
    pool_kwargs = datastore.pool.kwargs
    assert isinstance(pool_kwargs, dict)
    kwargs = {key: value for key, value in pool_kwargs.items() if key != "row_factory"}
    with psycopg.connect(
        **kwargs, autocommit=True, connect_timeout=POSTGRES_CONNECT_TIMEOUT_S
    ) as connection:
        return session_refuses_writes(connection)


def renew_sessions(datastore: PostgresDatastore) -> None:
    """The database takes writes again, but every pooled session that began while it
    did not still refuses them (its default was fixed when it began): replace them all,
    those in use as they come back."""
    logger.warning("the database takes writes again: renewing the pooled sessions")
    datastore.pool.drain()


def qualified_table(datastore: PostgresDatastore, table: str) -> Composed:
    """``schema.table``, each part quoted, for composing statements."""
    return SQL("{schema}.{table}").format(
        schema=Identifier(datastore.schema), table=Identifier(table)
    )


def _lock_schema_changes(curs: Cursor[DictRow]) -> None:
    curs.execute(SQL("SELECT pg_advisory_xact_lock(%s)"), (SCHEMA_CHANGE_LOCK_KEY,))


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
                if sessions_renewed or new_session_refuses_writes(self.datastore):
                    raise DatabaseRefusesWrites(str(error)) from error
                renew_sessions(self.datastore)
                sessions_renewed = True
        return self._send_appends(appends, resent=True)  # the last try: its failure is raised

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


def drop_closed_connections(pool: psycopg_pool.ConnectionPool[Any]) -> None:
    """Have ``pool`` check each connection with :class:`DropClosedConnections` before it
    lends it, also a pool made elsewhere (the pool reads this attribute at each lend,
    psycopg_pool 3.2 and 3.3)."""
    pool._check = DropClosedConnections(pool)


class PrepPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, building our append-only recorders, with a
    pool that checks each connection before lending it (see
    :class:`DropClosedConnections`)."""

    aggregate_recorder_class = AppendOnlyPostgresAggregateRecorder
    application_recorder_class = AppendOnlyPostgresApplicationRecorder
    process_recorder_class = AppendOnlyPostgresProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        # The library's datastore takes only its own round-trip check (``pre_ping``).
        drop_closed_connections(self.datastore.pool)
