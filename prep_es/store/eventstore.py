"""The event store: eventsourcing's application and recorders, configured from Settings.

Four guarantees, and where each comes from:

**Append-only.** The tables that hold events and snapshots refuse ``UPDATE``, ``DELETE``
and (PostgreSQL) ``TRUNCATE`` with database triggers, created by the same code that
creates the tables (the recorder subclasses in ``prep_es.store.postgres_recorders``
and ``prep_es.store.sqlite_recorders``), idempotently at every start. History
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

import functools
import importlib
import os
import pkgutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from eventsourcing.application import Application, LRUCache, ProcessingEvent
from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import Notification, Recording, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.utils import Environment, EnvType, get_topic
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed

import aggregates
from aggregates.base import Aggregate as DomainAggregate
from prep_es.store.personal_cipher import PersonalDataCipher
from prep_es.store.personal_keys import (
    DataKeys,
    KeyRing,
    MasterKey,
    MasterKeyError,
    next_master_key_path,
    read_master_key_file,
    read_or_create_master_key,
    stored_data_keys_exist,
)
from prep_es.store.postgres_recorders import (
    NOTIFICATION_ID_MAX,
    POSTGRES_CONNECT_TIMEOUT_S,
    POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_S,
    POSTGRES_LOCK_TIMEOUT_S,
    AppendOnlyPostgresApplicationRecorder,
    PrepPostgresFactory,
    qualified_table,
)
from prep_es.store.pre_encryption import (
    UnmigratedStore,
    first_email_claim,
    is_plaintext_claim,
)
from prep_es.store.serialization import OrjsonTranscoder, PydanticMapper
from prep_es.store.settings import PostgresLocation, Settings, SqliteLocation
from prep_es.store.sqlite_recorders import (
    SQLITE_LOCK_TIMEOUT_S,
    AppendOnlySQLiteApplicationRecorder,
    PrepSQLiteFactory,
)

APPLICATION_NAME: Final = "prep_es"

DATABASE_FILE_MODE: Final = 0o600
"""An embedded database holds password hashes and personal data: its owner's alone.
SQLite gives its ``-wal`` and ``-shm`` files the database file's mode."""


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

    def __init__(self, env: EnvType | None = None, key_ring: KeyRing | None = None) -> None:
        import_domain_modules()
        self._key_ring = key_ring
        super().__init__(env)
        self._latest_events_statement: Composed | None = None
        self._notifications_statements: tuple[Composed, Composed] | None = None

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> PydanticMapper:
        """The mapper, sealing personal fields with data keys kept in this store's
        database (without a key ring, it reads and writes them as they are: only for
        reading a store written before encryption)."""
        mapper = super().construct_mapper()
        assert isinstance(mapper, PydanticMapper), mapper
        if self._key_ring is not None:
            keys = DataKeys(datastore_of(self), self._key_ring)
            mapper.personal = PersonalDataCipher(keys)
        return mapper

    def open_personal_data(self, key_ring: KeyRing) -> None:
        """Seal and open personal fields with data keys wrapped by ``key_ring`` from now
        on (for a store opened without one; creates the key table if needed)."""
        assert isinstance(self.mapper, PydanticMapper), self.mapper
        assert self.mapper.personal is None, "this store has its key ring already"
        self._key_ring = key_ring
        self.mapper.personal = PersonalDataCipher(DataKeys(datastore_of(self), key_ring))

    def email_digest(self, email: str) -> str:
        return self.data_keys.email_digest(email)

    def keyed_digest(self, data: bytes) -> str:
        return self.data_keys.keyed_digest(data)

    def destroy_personal_data(self, subject: UUID) -> None:
        self.data_keys.destroy(subject)
        # The library's own cache of loaded aggregates may hold what the subject wrote,
        # opened before the key was destroyed: replaced by an empty one.
        cache = self.repository.cache
        if isinstance(cache, LRUCache):
            self.repository.cache = LRUCache(maxsize=cache.maxsize)

    def personal_data_destroyed(self, subject: UUID) -> bool:
        return self.data_keys.key_destroyed(subject)

    @property
    def data_keys(self) -> DataKeys:
        """The per-person data keys (see :mod:`prep_es.store.personal_keys`)."""
        return self.personal_cipher.keys

    @property
    def personal_cipher(self) -> PersonalDataCipher:
        """What seals and opens personal fields with those keys: the mapper's own."""
        assert isinstance(self.mapper, PydanticMapper), self.mapper
        personal = self.mapper.personal
        assert personal is not None, "this store was opened without a key ring"
        return personal

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


def master_key_ring(settings: Settings, *, holds_data_keys: bool = False) -> KeyRing:
    """The master key (and the one being rotated out) of ``settings``'s store. Raises
    :class:`MasterKeyError` when PostgreSQL has none, or when the embedded key file is
    missing beside a database that ``holds_data_keys`` and no previous key is given (a
    new key would open none of them: the file must be restored, not made again)."""
    previous = settings.previous_master_key
    previous_key = (
        None
        if previous is None
        else MasterKey.parse(previous.get_secret_value(), name="PREP_ES_PREVIOUS_MASTER_KEY")
    )
    if settings.master_key is not None:
        return KeyRing(MasterKey.parse(settings.master_key.get_secret_value()), previous_key)
    location = settings.database
    if not isinstance(location, SqliteLocation):
        raise MasterKeyError(
            "PREP_ES_MASTER_KEY is required for a store on PostgreSQL (PREP_ES_DATABASE_URL, "
            "or the target of store migrate): it wraps every person's data key (make one "
            "with: prep-es keys generate)"
        )
    if location.is_memory:
        return KeyRing(_process_master_key(), previous_key)
    path = master_key_path(location)
    if holds_data_keys and previous_key is None and not path.exists():
        # (With the previous master key given, a new file is a rotation by hand: the
        # start's check still refuses any data key neither key opens.)
        raise MasterKeyError(
            f"the master key file {path} is missing, and this database holds data keys "
            "it wrapped: restore the file from the backup of this database's master key "
            "(or set PREP_ES_MASTER_KEY to that key); without it no personal field can "
            "be read again"
        )
    current = read_or_create_master_key(path)
    if previous_key is None:
        # A rotation stopped half-way (see ``prep_es.store.key_rotation``): some data keys
        # may already be wrapped by the new key, kept beside the current one until then.
        previous_key = read_master_key_file(next_master_key_path(path))
    return KeyRing(current, previous_key)


def master_key_path(location: SqliteLocation) -> Path:
    """Where embedded mode keeps its master key: beside the database file."""
    return Path(f"{location.path}.master-key")


@functools.cache
def _process_master_key() -> MasterKey:
    """An in-memory store's master key: it lives as long as the store, this process."""
    return MasterKey.generate()


def open_application(settings: Settings) -> PrepApplication:
    """Open the event store named by ``settings.database_url``, creating its file
    (embedded: see :func:`create_database_file`), tables and append-only triggers if
    needed, with its master key checked against the data keys it holds (a lost or wrong
    key is a :class:`MasterKeyError` here, not a failure mid-request), and refused as an
    :class:`~prep_es.store.pre_encryption.UnmigratedStore` if it was written by a
    release that kept emails in plain text (see :func:`check_migrated`). Close it with
    ``app.close()``."""
    location = settings.database
    if isinstance(location, SqliteLocation):
        create_database_file(location)
    application = PrepApplication(env=application_env(settings))
    try:
        # Before the key table or an embedded key file is made: a refused store is left
        # as it was found.
        check_migrated(application)
        holds_data_keys = stored_data_keys_exist(datastore_of(application))
        application.open_personal_data(master_key_ring(settings, holds_data_keys=holds_data_keys))
        application.data_keys.check_master_key()
    except BaseException:
        application.close()
        raise
    return application


def check_migrated(application: PrepApplication) -> None:
    """Raise :class:`UnmigratedStore` if ``application``'s store was written by the
    release before encryption: its email claims have ids derived from the plain email,
    so the keyed claims this release derives would never collide with them, and every
    email registered then could be registered again (see
    :func:`~prep_es.store.pre_encryption.first_email_claim`, which says what the check
    costs)."""
    claim = first_email_claim(application.recorder)
    if claim is not None and is_plaintext_claim(claim):
        raise UnmigratedStore(
            "this event store was written by a release that kept emails in plain text "
            "(its email claims are not keyed): copy it into a new store with "
            "`prep-es store migrate --to URL`, then point PREP_ES_DATABASE_URL at the new one"
        )


def datastore_of(application: PrepApplication) -> PostgresDatastore | SQLiteDatastore:
    """The connection pool behind ``application`` (for raw SQL in tests and tools)."""
    datastore: Any = getattr(application.factory, "datastore", None)
    assert isinstance(datastore, PostgresDatastore | SQLiteDatastore), datastore
    return datastore
