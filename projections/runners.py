"""Runners: follow the event store and keep read models current, exactly once.

Each batch of events (up to ``batch_size``) is applied in one read-database transaction
together with the projection's new position, so a crash at any point neither loses nor
double-applies an event. The position only moves forward over events that are all
committed: the event store commits in notification-id order (see
``prep_es.store.eventstore``), so once id N is visible every id below it is too, and a runner
may skip straight to the head over ids whose topics it does not follow.

Only the holder of a projection's lock (``projections.locks``) runs it; other processes
stand by and take over when it goes away. A projection that fails on an event stops
with that event's position, topic and error recorded in ``projection_state`` (and
logged); it retries from that event with a growing pause, so a fixed cause (or a
restart with fixed code) resumes it where it stopped.

A rebuild adds a *building* generation: the lock holder fills its new tables from
position 0 in large batches while the active generation keeps serving and following,
then switches the views over in the transaction that catches the new one up.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from eventsourcing.persistence import Notification

from prep_es.store.eventstore import DATABASE_IDENTITY_QUERY, PrepApplication
from prep_es.store.funnel import Funnel
from projections.base import Projection
from projections.database import ReadDatabase, Row, Sql
from projections.failures import ProjectionFailed
from projections.locks import RunnerLock, lock_key

logger = logging.getLogger(__name__)

STATE_TABLE = "projection_state"
POSITIONS_CHANNEL = "prep_es_projections"
CHANGES_CHANNEL = "prep_es_changes"
"""Where a runner announces, in its batch's transaction, the cache dependencies the batch
changed (``"<position> <dependency> ..."``): processes that cache answers themselves hear
of changes made by a runner in another process."""
CHANGES_PAYLOAD_CHARS_MAX = 7000
"""Below PostgreSQL's 8000-byte NOTIFY limit: hints that do not fit are left out, and a
list of changes that does not fit is announced as everything."""
HINTS_SEPARATOR = "|"
"""In a change announcement (``<position> <dependency>… [| <hint>…]``), before the
projection's hints (see ``Projection.hints``)."""
EVERYTHING_CHANGED = "*"
BATCH_SIZE = 500
REBUILD_BATCH_SIZE = 2000
STANDBY_POLL_S = 1.0
IDLE_WAIT_S = 1.0
FAILURE_BACKOFF_S_MIN = 1.0
FAILURE_BACKOFF_S_MAX = 60.0
ERROR_TEXT_LENGTH_MAX = 4000
FEED_CHUNK_IDS = 1_000
FEED_CHUNKS_MAX = 8
"""The shared reader's chunks kept (about 8k events, ~5 MB with their decoded events per
1,000): runners of a rebuild drift apart further than that, but 24 chunks cost a
rebuild-all ~30 MB more peak memory for no throughput this machine could measure."""
NARROW_SHARE = 0.1
LEAD_WAIT_S_MAX = 0.25
"""How long a rebuilding runner about to read a chunk nobody has read waits, at most, for
rebuilding runners more than half the kept chunks behind it (then it reads anyway)."""
LEAD_PAUSE_S = 0.002
READER_STALE_S = 1.0
NARROW_SAMPLE_MIN = 5_000
GENERATIONS_REFRESH_S = 1.0
SHARED_COMMIT_GROUP_MAX = 32
SHARED_COMMIT_GATHER_S = 0.003
"""How long a shared commit waits, at most, for the rest of the runners one append woke
(one transaction per wake-up rather than two: the bookings lag p50 fell from 25 to 20 ms
and its p99 from ~55 to ~45 ms under the lag benchmark's load)."""
PARTICIPANT_SEEN_S = 1.0
IDLE_POSITION_WRITE_S = 0.1
"""How long a following runner may leave its stored position behind when nothing of its
topics arrived (see ``ProjectionRunner.defer_idle_positions``)."""

PositionListener = Callable[[str, int], None]
ChangeListener = Callable[[list[str], int], None]
"""Told, after a batch commits, which cache dependencies it changed and its position."""


class _TryOnly(Exception):
    """Rolls back a transaction that only tried whether its statements succeed."""


class Superseded(Exception):
    """The generation being applied is no longer the one to apply (switched or
    dropped by another process)."""


@dataclass(frozen=True)
class GenerationState:
    name: str
    generation: int
    version: int
    active: bool
    state: str
    position: int
    events_applied: int
    position_timestamp: float | None
    updated_at: float
    failed_position: int | None
    failed_topic: str | None
    failed_error: str | None

    @classmethod
    def of(cls, row: Row) -> GenerationState:
        return cls(
            name=row["name"],
            generation=int(row["generation"]),
            version=int(row["version"]),
            active=bool(row["active"]),
            state=row["state"],
            position=int(row["position"]),
            events_applied=int(row["events_applied"]),
            position_timestamp=row["position_timestamp"],
            updated_at=float(row["updated_at"]),
            failed_position=row["failed_position"],
            failed_topic=row["failed_topic"],
            failed_error=row["failed_error"],
        )


def ensure_state_table(sql: Sql) -> None:
    boolean = "boolean" if sql.dialect == "postgresql" else "integer"
    real = "double precision" if sql.dialect == "postgresql" else "real"
    sql.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} ("
        "name text NOT NULL, generation integer NOT NULL, version integer NOT NULL, "
        f"active {boolean} NOT NULL, state text NOT NULL, position bigint NOT NULL, "
        f"events_applied bigint NOT NULL, position_timestamp {real}, "
        f"updated_at {real} NOT NULL, failed_position bigint, failed_topic text, "
        "failed_error text, PRIMARY KEY (name, generation))"
    )


def _serialize_schema_changes(sql: Sql) -> None:
    if sql.dialect == "postgresql":
        sql.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("projection-schema"),))


def generations(sql: Sql, name: str) -> list[GenerationState]:
    rows = sql.fetchall(f"SELECT * FROM {STATE_TABLE} WHERE name = %s ORDER BY generation", (name,))
    return [GenerationState.of(row) for row in rows]


GenerationKey = tuple[str, int]
"""(projection name, generation)."""


def lock_states(sql: Sql, keys: Sequence[GenerationKey]) -> dict[GenerationKey, GenerationState]:
    """The state rows of ``keys``, locked until the transaction ends (in one statement,
    in a fixed order: two transactions never wait for each other's rows)."""
    if not keys:
        return {}
    pairs = ", ".join(["(%s, %s)"] * len(keys))
    suffix = " FOR UPDATE" if sql.dialect == "postgresql" else ""
    rows = sql.fetchall(
        f"SELECT * FROM {STATE_TABLE} WHERE (name, generation) IN ({pairs}) "
        f"ORDER BY name, generation{suffix}",
        [value for key in sorted(keys) for value in key],
    )
    states = (GenerationState.of(row) for row in rows)
    return {(state.name, state.generation): state for state in states}


def ensure_ready(database: ReadDatabase, projection_class: type[Projection]) -> None:
    """Make sure the projection has an active generation (tables and views exist), and
    a building one if the active generation was made by an older ``version``."""
    with database.transaction() as sql:
        _serialize_schema_changes(sql)
        ensure_state_table(sql)
        projection_class.create_functions(sql)
        known = generations(sql, projection_class.name)
        active = [g for g in known if g.active]
        if not active:
            generation = 1 + max((g.generation for g in known), default=0)
            _add_generation(sql, projection_class, generation, active=True)
            return
        building = [g for g in known if not g.active and g.state != "retired"]
        if active[0].version != projection_class.version and not any(
            g.version == projection_class.version for g in building
        ):
            generation = 1 + max(g.generation for g in known)
            _add_generation(sql, projection_class, generation, active=False)


def request_rebuild(database: ReadDatabase, projection_class: type[Projection]) -> int:
    """Start building a new generation from position 0; the current one keeps serving
    until the new one has caught up. Returns the new generation (or the one already
    building)."""
    ensure_ready(database, projection_class)
    with database.transaction() as sql:
        _serialize_schema_changes(sql)
        known = generations(sql, projection_class.name)
        for state in known:
            if not state.active and state.state != "retired":
                return state.generation
        generation = 1 + max(g.generation for g in known)
        _add_generation(sql, projection_class, generation, active=False)
        return generation


def _add_generation(
    sql: Sql, projection_class: type[Projection], generation: int, *, active: bool
) -> None:
    projection = projection_class(generation, sql.dialect)
    projection.drop_tables(sql)
    projection.create_tables(sql)
    if active:
        projection.create_indexes(sql)
        projection.create_views(sql)
    sql.execute(
        f"INSERT INTO {STATE_TABLE} (name, generation, version, active, state, position, "
        "events_applied, position_timestamp, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, 0, 0, NULL, %s)",
        (
            projection_class.name,
            generation,
            projection_class.version,
            active,
            "running" if active else "building",
            time.time(),
        ),
    )


class EventDecoder:
    """Reads and decodes stored events for every runner of a process, once between them.

    Runners of different projections follow the same store, at different speeds and
    with different topics. Rather than each asking the store for its own topics, they
    read through this: the store is read in chunks of ``chunk_ids`` notification ids
    (each chunk once, with the topics of every runner that reads through this decoder,
    see :meth:`follow`; a chunk is extended as the head moves on), and each runner
    keeps the events of its topics. Events are decoded once per chunk, on
    first use. The most recently used ``chunks_max`` chunks are kept (memory stays
    bounded, however long the store); a runner narrower than ``NARROW_SHARE`` of the
    events reads a chunk nobody has read yet with its own topics (the database skips
    the rest), rather than fetching everything for runners that may never come.

    Ids below a head are all committed (see the module docstring), so a chunk read up
    to a head is complete up to it. Events are immutable, so sharing them across
    threads is safe."""

    def __init__(
        self,
        app: PrepApplication,
        *,
        chunk_ids: int = FEED_CHUNK_IDS,
        chunks_max: int = FEED_CHUNKS_MAX,
    ) -> None:
        assert chunk_ids > 0 and chunks_max > 0
        self._app = app
        self._chunk_ids = chunk_ids
        self._chunks_max = chunks_max
        self._chunks: OrderedDict[int, _Chunk] = OrderedDict()
        self._lock = threading.Lock()
        self._topic_counts: dict[str, int] = {}
        self._counted = 0
        self._rebuilding: dict[int, tuple[int, float]] = {}
        """Per thread reading for a rebuild: the chunk it is at, and when it got there."""
        self._topics: frozenset[str] = frozenset()
        """The topics chunks are read with: those of the runners that read through this
        decoder (none yet: every topic)."""

    def follow(self, topics: frozenset[str]) -> None:
        """A runner of ``topics`` reads through this decoder: chunks are read with its
        topics too. Events no runner follows (a kitchen-day's claims, idempotency
        records) are then left in the database, and a process that runs only some of
        the projections reads only their events. Chunks read before without them are
        dropped (runners are made before they read, so this is at the start)."""
        with self._lock:
            if topics <= self._topics:
                return
            self._topics |= topics
            self._chunks.clear()

    def notifications(
        self, start: int, stop: int, limit: int, topics: frozenset[str], *, rebuilding: bool
    ) -> list[Notification]:
        """Up to ``limit`` stored events of ``topics`` with ids in (``start``, ``stop``],
        in id order; ``stop`` must not be beyond the store's head. ``rebuilding``: for a
        generation catching up from far behind, which keeps pace with the others (see
        :meth:`_keep_pace`)."""
        found: list[Notification] = []
        if not topics:
            return found
        position = start
        while position < stop and len(found) < limit:
            index = position // self._chunk_ids
            if rebuilding:
                self._keep_pace(index)
            chunk_stop = min((index + 1) * self._chunk_ids, stop)
            chunk = self._chunk(index, chunk_stop, topics)
            if chunk is None:
                # A narrow reader where nobody read yet: its own topics only, uncached.
                found += self._select(position, stop, limit - len(found), topics)
                return found
            ids, notifications = chunk.ids, chunk.notifications
            for offset in range(bisect.bisect_right(ids, position), len(ids)):
                notification = notifications[offset]
                if notification.id > chunk_stop:
                    break
                if notification.topic in topics:
                    found.append(notification)
                    if len(found) == limit:
                        break
            position = chunk_stop
        return found

    def _keep_pace(self, index: int) -> None:
        """Rebuilding runners drift apart (their work per event differs), and a runner
        too far behind finds the chunks it needs dropped: it reads and decodes them
        again. A rebuilding runner about to read a chunk nobody has read, more than half
        the kept chunks ahead of the slowest rebuilding runner, waits (boundedly) for it
        to come closer; waiting hands the slow ones the interpreter."""
        now = time.monotonic()
        self._rebuilding[threading.get_ident()] = (index, now)
        if index in self._chunks:
            return
        deadline = now + LEAD_WAIT_S_MAX
        while now < deadline:
            slowest = min(
                (at for at, seen in list(self._rebuilding.values()) if now - seen < READER_STALE_S),
                default=index,
            )
            if index - slowest <= self._chunks_max // 2:
                return
            time.sleep(LEAD_PAUSE_S)
            now = time.monotonic()

    def decode(self, notification: Notification) -> Any:
        # One lookup, atomic under the interpreter lock: called for every event a
        # runner applies, where taking the decoder's lock showed in a rebuild's profile.
        chunk = self._chunks.get((notification.id - 1) // self._chunk_ids)
        if chunk is None:
            return self._app.mapper.to_domain_event(notification)
        event = chunk.events.get(notification.id)
        if event is None:
            event = self._app.mapper.to_domain_event(notification)
            chunk.events[notification.id] = event
        return event

    def _chunk(self, index: int, stop: int, topics: frozenset[str]) -> _Chunk | None:
        """Chunk ``index`` read at least up to ``stop``; ``None`` if it was not read yet
        and ``topics`` are a narrow share of the events."""
        with self._lock:
            chunk = self._chunks.get(index)
            if chunk is None:
                if self._narrow(topics):
                    return None
                chunk = self._chunks[index] = _Chunk(index * self._chunk_ids, self._topics)
                while len(self._chunks) > self._chunks_max:
                    self._chunks.popitem(last=False)
            else:
                self._chunks.move_to_end(index)
        if chunk.read_to < stop:
            with chunk.lock:
                if chunk.read_to < stop:
                    more = self._select(chunk.read_to, stop, stop - chunk.read_to, chunk.topics)
                    self._count(more)
                    chunk.extend(more, stop)
        return chunk

    def _narrow(self, topics: frozenset[str]) -> bool:
        if self._counted < NARROW_SAMPLE_MIN:
            return False
        own = sum(self._topic_counts.get(topic, 0) for topic in topics)
        return own < NARROW_SHARE * self._counted

    def _count(self, notifications: Sequence[Notification]) -> None:
        with self._lock:
            for notification in notifications:
                topic = notification.topic
                self._topic_counts[topic] = self._topic_counts.get(topic, 0) + 1
            self._counted += len(notifications)

    def _select(
        self, start: int, stop: int, limit: int, topics: frozenset[str]
    ) -> Sequence[Notification]:
        return self._app.notifications(start, stop, limit, sorted(topics))


class _Chunk:
    """Stored events of ``topics`` (empty: every topic) with ids in (``first``,
    ``read_to``], in id order, and those of them decoded so far."""

    def __init__(self, first: int, topics: frozenset[str]) -> None:
        self.topics = topics
        self.read_to = first
        self.ids: list[int] = []
        self.notifications: list[Notification] = []
        self.events: dict[int, Any] = {}
        self.lock = threading.Lock()

    def extend(self, notifications: Sequence[Notification], read_to: int) -> None:
        # Appended before ``read_to`` moves: a reader that sees the new ``read_to``
        # sees the events below it (readers only read ids up to their own stop).
        self.notifications += notifications
        self.ids += [notification.id for notification in notifications]
        self.read_to = read_to


@dataclass
class Batch:
    """Events for one generation of one projection, and where they move it."""

    runner: ProjectionRunner
    state: GenerationState
    projection: Projection
    notifications: Sequence[Notification]
    new_position: int
    switching: bool
    full: bool
    applied: int = 0
    """How many events writing it applied (set by :meth:`ProjectionRunner.write`)."""

    @property
    def key(self) -> GenerationKey:
        return (self.runner.name, self.state.generation)

    # As an item of :class:`SharedCommits`:

    @property
    def locks(self) -> list[GenerationKey]:
        return [self.key]

    def write(self, sql: Sql, locked: Mapping[GenerationKey, GenerationState]) -> None:
        self.runner.write(self, sql, locked=locked)

    def committed(self) -> bool:
        self.runner.committed(self)
        return self.full

    def commit_alone(self) -> bool:
        return self.runner.commit(self)


@dataclass(frozen=True)
class IdleAnnouncement:
    """A following runner's new position, none of its topics having arrived: announced
    to every process (a notification), stored later (see ``defer_idle_positions``)."""

    runner: ProjectionRunner
    position: int
    locks: tuple[GenerationKey, ...] = ()

    def write(self, sql: Sql, locked: Mapping[GenerationKey, GenerationState]) -> None:
        sql.execute(
            "SELECT pg_notify(%s, %s)", (POSITIONS_CHANNEL, f"{self.runner.name}:{self.position}")
        )

    def committed(self) -> bool:
        if self.runner.on_position is not None:
            self.runner.on_position(self.runner.name, self.position)
        return False

    def commit_alone(self) -> bool:
        with self.runner.database.transaction(pipelined=True) as sql:
            self.write(sql, {})
        return self.committed()


class SharedCommits:
    """Commits the batches of a process's following runners together.

    Every append wakes every runner, and each would commit its own small batch: seven
    transactions (each with its state lock, position update and notification) for one
    command. Through this :class:`~prep_es.store.funnel.Funnel`, the batches ready while a
    commit is in flight share the next transaction, whose leader first waits a moment
    for the other runners woken by the same append; each batch still writes its own
    position, so exactly-once is as before. If the shared transaction fails, each batch
    is committed alone, which names the event that failed (and lets the others
    through)."""

    def __init__(self, database: ReadDatabase) -> None:
        self._database = database
        self._funnel: Funnel[Batch | IdleAnnouncement, bool] = Funnel(
            self._commit_group,
            group_size_max=SHARED_COMMIT_GROUP_MAX,
            expected_group=self._expected_group,
            gather_s=SHARED_COMMIT_GATHER_S,
        )
        self._last_seen: dict[str, float] = {}
        """When each runner last handed something in (read and written by the funnel's
        leader, under its lock)."""

    def _expected_group(self, queued: Sequence[Batch | IdleAnnouncement]) -> int:
        """Every runner that handed something in lately: one append wakes them all, and
        each hands in a batch or an idle announcement."""
        now = time.monotonic()
        for item in queued:
            self._last_seen[item.runner.name] = now
        return sum(1 for seen in self._last_seen.values() if now - seen < PARTICIPANT_SEEN_S)

    def commit(self, batch: Batch) -> bool:
        """As :meth:`ProjectionRunner.commit`: ``True`` if there may be more."""
        return self._funnel.submit(batch)

    def announce(self, announcement: IdleAnnouncement) -> None:
        self._funnel.submit(announcement)

    def _commit_group(
        self, group: Sequence[Batch | IdleAnnouncement]
    ) -> list[bool | BaseException]:
        if len(group) > 1:
            try:
                with self._database.transaction(pipelined=True) as sql:
                    locked = lock_states(sql, [key for item in group for key in item.locks])
                    for item in group:
                        item.write(sql, locked)
            except Exception:
                logger.debug("a shared projection commit failed; committing alone", exc_info=True)
            else:
                return [item.committed() for item in group]
        return [self._commit_alone(item) for item in group]

    @staticmethod
    def _commit_alone(item: Batch | IdleAnnouncement) -> bool | BaseException:
        try:
            return item.commit_alone()
        except Exception as error:
            return error


def applies_by_sql(app: PrepApplication, database: ReadDatabase) -> bool:
    """Whether projections that record every event are applied by SQL over the events
    table (``Projection.apply_stored_range``): where the read models are in the event
    store's own PostgreSQL database."""
    if database.dialect != "postgresql":
        return False
    with database.reading() as sql:
        row = sql.fetchone(DATABASE_IDENTITY_QUERY)
    return row is not None and tuple(row.values()) == app.postgres_database_identity()


class ProjectionRunner:
    """Applies events to one projection's generations; used by one thread."""

    def __init__(
        self,
        projection_class: type[Projection],
        app: PrepApplication,
        database: ReadDatabase,
        *,
        batch_size: int = BATCH_SIZE,
        rebuild_batch_size: int = REBUILD_BATCH_SIZE,
        on_position: PositionListener | None = None,
        on_changes: ChangeListener | None = None,
        decoder: EventDecoder | None = None,
        defer_idle_positions: bool = False,
        shared_commits: SharedCommits | None = None,
    ) -> None:
        """``shared_commits``: commits the active generation's batches together with
        those of the process's other runners (see :class:`SharedCommits`).

        ``defer_idle_positions`` (PostgreSQL): when none of the projection's topics
        arrived, announce the new position (``on_position`` and a notification) without
        a transaction, and store it at most every ``IDLE_POSITION_WRITE_S`` or with the
        next batch that has events. The read model at the announced position is the one
        stored (nothing happened to it between), so waiters and exactly-once are served
        alike; a runner following a busy store then commits once per batch of its own
        events, not once per wake-up of every runner."""
        assert batch_size > 0 and rebuild_batch_size > 0
        self.projection_class = projection_class
        self.name = projection_class.name
        self.app = app
        self.database = database
        self.batch_size = batch_size
        self.rebuild_batch_size = rebuild_batch_size
        self.on_position = on_position
        self.on_changes = on_changes
        self.decoder = decoder or EventDecoder(app)
        self.shared_commits = shared_commits
        self.events_table = (
            app.postgres_events_table()
            if projection_class.records_every_event and applies_by_sql(app, database)
            else None
        )
        """Where batches of a projection that records every event are applied by SQL
        (``Projection.apply_stored_range``): they are ranges of positions, not fetched."""
        self.topics = frozenset(projection_class.topics())
        if self.events_table is None:
            self.decoder.follow(self.topics)
        self._known: list[GenerationState] | None = None
        self._known_at = 0.0
        self._projections: dict[int, Projection] = {}
        self.defer_idle_positions = defer_idle_positions and database.dialect == "postgresql"
        self._idle_to: tuple[int, int] | None = None
        """(generation, position): the active generation has nothing up to position,
        announced but not stored."""
        self._stored_at = 0.0

    def _projection(self, generation: int) -> Projection:
        if generation not in self._projections:
            self._projections[generation] = self.projection_class(generation, self.database.dialect)
        return self._projections[generation]

    def step(self, head: int | None = None) -> bool:
        """Apply at most one batch to the active generation and one to a building
        generation, up to ``head``. ``True`` if there may be more to do at once.

        Without ``head`` (a direct call), the store's head and the generations are read
        afresh; the supervisor's loop passes the head it was woken with and relies on
        the generations this runner last saw (read again every second)."""
        if head is None:
            self._remember(None)
            head = self.app.position()
        more = False
        for state in self.generations():
            limit = self.batch_size if state.active else self.rebuild_batch_size
            more |= self._apply_batch(state, head, limit)
        return more

    def generations(self) -> list[GenerationState]:
        """The generations this runner should advance (see :meth:`step`)."""
        return [
            state
            for state in self._generations()
            # Generations made by another version of this projection's code are left
            # alone: an older active one keeps serving, frozen, until this code's
            # generation has caught up and replaces it.
            if state.state != "retired" and state.version == self.projection_class.version
        ]

    def forget_generations(self) -> None:
        self._remember(None)

    def _generations(self) -> list[GenerationState]:
        """The projection's generations: read again at least every
        ``GENERATIONS_REFRESH_S`` (to see rebuild requests from other processes),
        else as this runner last left them."""
        if self._known is None or time.monotonic() - self._known_at > GENERATIONS_REFRESH_S:
            with self.database.reading() as sql:
                self._known = generations(sql, self.name)
            self._known_at = time.monotonic()
        return self._known

    def _remember(self, state: GenerationState | None) -> None:
        """Keep ``state`` as this runner's view of its generation (``None``: forget
        everything and read again next time)."""
        if state is None or self._known is None:
            self._known = None
            return
        self._known = [state if g.generation == state.generation else g for g in self._known]

    def catch_up(self, *, timeout_s: float | None = None) -> None:
        """Apply batches until the active generation is at the head and no generation
        is building (or ``timeout_s`` passes)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            more = self.step()
            with self.database.reading() as sql:
                known = generations(sql, self.name)
            building = any(not g.active and g.state == "building" for g in known)
            if not more and not building:
                return
            if deadline is not None and time.monotonic() > deadline:
                return

    def _apply_batch(self, state: GenerationState, head: int, limit: int) -> bool:
        start = state.position
        idle_to = self._idle_to
        if state.active and idle_to is not None and idle_to[0] == state.generation:
            start = max(start, idle_to[1])
        if state.active and start >= head:
            if start > state.position and time.monotonic() - self._stored_at >= (
                IDLE_POSITION_WRITE_S
            ):
                # Quiet since: store the position announced.
                self.apply_fetched(state, [], start, full=False)
            return False
        if self.events_table is not None:
            up_to = min(head, start + limit)
            return self.apply_fetched(state, [], up_to, full=up_to < head)
        notifications = self.decoder.notifications(
            start, head, limit, self.topics, rebuilding=not state.active
        )
        if (
            not notifications
            and state.active
            and self.defer_idle_positions
            and time.monotonic() - self._stored_at < IDLE_POSITION_WRITE_S
        ):
            self._announce_idle(state, head)
            return False
        full = len(notifications) == limit
        new_position = notifications[-1].id if full else head
        return self.apply_fetched(state, notifications, new_position, full=full)

    def store_idle_position(self) -> None:
        """Store the position announced without a transaction, if any (when stopping)."""
        idle_to = self._idle_to
        if idle_to is None:
            return
        for state in self.generations():
            if state.active and state.generation == idle_to[0] and state.position < idle_to[1]:
                self.apply_fetched(state, [], idle_to[1], full=False)

    def _announce_idle(self, state: GenerationState, position: int) -> None:
        """Nothing of this projection's topics up to ``position``: tell the waiters in
        every process, store it later (``defer_idle_positions``)."""
        self._idle_to = (state.generation, position)
        announcement = IdleAnnouncement(self, position)
        if self.shared_commits is not None:
            self.shared_commits.announce(announcement)
        else:
            announcement.commit_alone()

    def prepare(
        self,
        state: GenerationState,
        notifications: Sequence[Notification],
        new_position: int,
        *,
        full: bool,
    ) -> Batch:
        """A batch of ``notifications`` — every event of this projection's topics after
        ``state.position`` up to ``new_position`` — for ``state``'s generation. ``full``:
        the fetch stopped at its limit, so there is more before the head."""
        return Batch(
            runner=self,
            state=state,
            projection=self._projection(state.generation),
            notifications=notifications,
            new_position=new_position,
            switching=not state.active and not full,
            full=full,
        )

    def apply_fetched(
        self,
        state: GenerationState,
        notifications: Sequence[Notification],
        new_position: int,
        *,
        full: bool,
    ) -> bool:
        """Apply a batch (see :meth:`prepare`): in its own transaction, or in one shared
        with other runners' (``shared_commits``, for the active generation)."""
        batch = self.prepare(state, notifications, new_position, full=full)
        if self.shared_commits is not None and state.active:
            return self.shared_commits.commit(batch)
        return self.commit(batch)

    def commit(self, batch: Batch) -> bool:
        """Apply ``batch`` in its own transaction; ``True`` if there may be more."""
        try:
            try:
                self._commit_batch(batch, pipelined=True)
            except ProjectionFailed:
                # Pipelined, an SQL error surfaces after the statement that caused it:
                # apply the batch again one statement at a time to name the event.
                self._commit_batch(batch, pipelined=False)
        except Superseded:
            self._remember(None)
            return True
        except ProjectionFailed as failure:
            self._remember(None)
            self._record_failure(batch.state, failure)
            raise
        self.committed(batch)
        return batch.full

    def committed(self, batch: Batch) -> None:
        """After ``batch`` committed: remember where the generation is, and tell the
        cache and the waiters."""
        state, new_position, switching = batch.state, batch.new_position, batch.switching
        self._stored_at = time.monotonic()
        if state.active and self._idle_to is not None and self._idle_to[1] <= new_position:
            self._idle_to = None
        if switching:
            self._remember(None)
        else:
            self._remember(
                dataclasses.replace(
                    state,
                    position=new_position,
                    events_applied=state.events_applied + batch.applied,
                    state="running" if state.active else "building",
                )
            )
        if state.active or switching:
            changed_now = batch.projection.changed
            if self.on_changes is not None and (changed_now or switching):
                # A switch replaces every row: everything cached from the old ones goes.
                changed = [*sorted(changed_now), *([self.name] if switching else [])]
                self.on_changes(changed, new_position)
            if self.on_position is not None:
                self.on_position(self.name, new_position)
        if switching:
            logger.info(
                "projection %s: generation %d caught up at %d and now serves queries",
                self.name,
                state.generation,
                new_position,
            )

    def _commit_batch(self, batch: Batch, *, pipelined: bool) -> None:
        try:
            with self.database.transaction(pipelined=pipelined) as sql:
                self.write(batch, sql, locked=None)
        except (ProjectionFailed, Superseded):
            raise
        except psycopg.Error as error:
            if self.events_table is not None and not pipelined:
                raise self._first_failing_event(batch, self.events_table, error) from error
            # Raised at the commit or a later read: the batch as a whole failed.
            last = batch.notifications[-1] if batch.notifications else None
            raise ProjectionFailed.of(
                self.name,
                last.id if last else batch.new_position,
                last.topic if last else "",
                error,
            ) from error

    def _first_failing_event(
        self, batch: Batch, events_table: str, error: psycopg.Error
    ) -> ProjectionFailed:
        """A range of positions applied by SQL failed as a whole: the first event whose
        range fails, found by halving (each try in a transaction rolled back), so that
        the failure names its event as for projections applied event by event."""
        start, good, bad = batch.state.position, batch.state.position, batch.new_position
        while bad - good > 1:
            middle = (good + bad) // 2
            try:
                with self.database.transaction() as sql:
                    batch.projection.apply_stored_range(start, middle, events_table, sql)
                    raise _TryOnly
            except _TryOnly:
                good = middle
            except psycopg.Error as found:
                bad, error = middle, found
        with self.database.reading() as sql:
            topic = sql.scalar(
                f"SELECT topic FROM {events_table} WHERE notification_id = %s", (bad,)
            )
        return ProjectionFailed.of(self.name, bad, topic or "", error)

    def write(
        self, batch: Batch, sql: Sql, *, locked: Mapping[GenerationKey, GenerationState] | None
    ) -> None:
        """Write ``batch`` and the generation's new position in the transaction of
        ``sql`` (this runner's alone, or one shared with other projections'). ``locked``:
        the generations this transaction has locked already (see :func:`lock_states`)."""
        state, projection = batch.state, batch.projection
        projection.changed.clear()
        projection.hints.clear()
        projection.before_batch()
        if sql.dialect == "postgresql" and not (state.active or batch.switching):
            # A building generation serves nobody yet: a crash may lose its last
            # batches, rows and position together (a commit stays atomic), and they are
            # applied again. Its commits need not wait for the disk.
            sql.execute("SET LOCAL synchronous_commit = off")
        if locked is None:
            locked = lock_states(sql, [batch.key])
        current = locked.get(batch.key)
        if (
            current is None
            or current.state == "retired"
            or current.active != state.active
            or current.position != state.position
        ):
            raise Superseded  # switched, dropped, or moved on by another holder
        timestamp = self._apply_events(batch, sql)
        projection.after_batch(sql)
        sql.execute(
            f"UPDATE {STATE_TABLE} SET position = %s, "
            "events_applied = events_applied + %s, "
            "position_timestamp = COALESCE(%s, position_timestamp), updated_at = %s, "
            "state = %s, failed_position = NULL, failed_topic = NULL, "
            "failed_error = NULL WHERE name = %s AND generation = %s",
            (
                batch.new_position,
                batch.applied,
                timestamp,
                time.time(),
                "running" if state.active or batch.switching else "building",
                self.name,
                state.generation,
            ),
        )
        if batch.switching:
            self._switch_to(projection, sql)
        if state.active or batch.switching:
            self._announce(sql, batch.new_position, projection, switching=batch.switching)

    def _apply_events(self, batch: Batch, sql: Sql) -> float | None:
        """Apply the batch's events; when the last one happened (``None``: no event)."""
        projection, notifications = batch.projection, batch.notifications
        if self.events_table is not None:
            batch.applied, last_at = projection.apply_stored_range(
                batch.state.position, batch.new_position, self.events_table, sql
            )
            return None if last_at is None else last_at.timestamp()
        batch.applied = len(notifications)
        recorded_at: datetime | None = None
        for notification in notifications:
            try:
                if projection.reads_stored_events:
                    recorded_at = projection.apply_stored(notification, sql)
                else:
                    event: Any = self.decoder.decode(notification)
                    projection.applier(type(event))(projection, event, notification.id, sql)
                    recorded_at = event.timestamp
            except Exception as error:
                raise ProjectionFailed.of(
                    self.name, notification.id, notification.topic, error
                ) from error
        return None if recorded_at is None else recorded_at.timestamp()

    def _switch_to(self, projection: Projection, sql: Sql) -> None:
        """Make ``projection``'s generation the one queries read, in this transaction."""
        old = sql.fetchall(
            f"SELECT generation FROM {STATE_TABLE} WHERE name = %s AND active = %s",
            (self.name, True),
        )
        projection.create_indexes(sql)
        projection.create_views(sql)
        for row in old:
            self._projection(int(row["generation"])).drop_tables(sql)
        sql.execute(
            f"UPDATE {STATE_TABLE} SET active = %s, state = %s WHERE name = %s AND active = %s",
            (False, "retired", self.name, True),
        )
        sql.execute(
            f"UPDATE {STATE_TABLE} SET active = %s, state = %s WHERE name = %s AND generation = %s",
            (True, "running", self.name, projection.generation),
        )

    def _announce(
        self, sql: Sql, position: int, projection: Projection, *, switching: bool
    ) -> None:
        """Tell listeners in every process, once this transaction commits, the new
        position and what it changed (PostgreSQL; SQLite has no notifications)."""
        if sql.dialect != "postgresql":
            return
        changed = [*sorted(projection.changed), *([self.name] if switching else [])]
        if changed:
            # Before the position: a listener marks the change before it wakes anyone
            # waiting for the position (notifications arrive in the order sent).
            payload = f"{position} {' '.join(changed)}"
            if projection.hints:
                hinted = " ".join([payload, HINTS_SEPARATOR, *sorted(projection.hints)])
                payload = hinted if len(hinted) <= CHANGES_PAYLOAD_CHARS_MAX else payload
            if len(payload) > CHANGES_PAYLOAD_CHARS_MAX:
                payload = f"{position} {EVERYTHING_CHANGED}"
            sql.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, payload))
        sql.execute("SELECT pg_notify(%s, %s)", (POSITIONS_CHANNEL, f"{self.name}:{position}"))

    def _record_failure(self, state: GenerationState, failure: ProjectionFailed) -> None:
        logger.error(
            "projection %s (generation %d) stopped at position %d, topic %s: %s",
            self.name,
            state.generation,
            failure.position,
            failure.topic,
            failure.error,
        )
        with self.database.transaction() as sql:
            sql.execute(
                f"UPDATE {STATE_TABLE} SET state = %s, failed_position = %s, "
                "failed_topic = %s, failed_error = %s, updated_at = %s "
                "WHERE name = %s AND generation = %s",
                (
                    "failed",
                    failure.position,
                    failure.topic,
                    failure.error[:ERROR_TEXT_LENGTH_MAX],
                    time.time(),
                    self.name,
                    state.generation,
                ),
            )


class AppendSignal:
    """Wakes runners when the event store has something new: PostgreSQL LISTEN on the
    events channel, else a short poll of the head position."""

    def __init__(
        self, app: PrepApplication, *, conninfo: str | None, channel: str, poll_s: float = 0.02
    ) -> None:
        self._app = app
        self._conninfo = conninfo
        self._channel = channel
        self._poll_s = poll_s
        self._condition = threading.Condition()
        self._head = app.position()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="prep-es-append-signal", daemon=True
        )
        self._thread.start()

    def wait(self, after: int, timeout_s: float) -> int:
        """Until the head passes ``after`` or ``timeout_s``; the head seen."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._head > after or self._stopping.is_set(), timeout=timeout_s
            )
            return self._head

    def _advance(self) -> None:
        head = self._app.position()
        with self._condition:
            if head > self._head:
                self._head = head
                self._condition.notify_all()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._conninfo is None:
                    self._advance()
                    self._stopping.wait(self._poll_s)
                else:
                    self._listen(self._conninfo)
            except Exception:
                logger.exception("watching the event store for new events failed; retrying")
                self._stopping.wait(1.0)

    def _listen(self, conninfo: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'LISTEN "{self._channel}"')
            self._advance()  # anything committed before LISTEN took effect
            while not self._stopping.is_set():
                for _ in connection.notifies(timeout=IDLE_WAIT_S, stop_after=1):
                    break
                # The appends announced meanwhile are all below the head read next:
                # one read for them all.
                for _ in connection.notifies(timeout=0):
                    pass
                self._advance()

    def stop(self) -> None:
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout=5)


class Supervisor:
    """Runs every projection in threads: one runner per projection, active only while
    this process holds that projection's lock."""

    def __init__(
        self,
        app: PrepApplication,
        database: ReadDatabase,
        projection_classes: Sequence[type[Projection]],
        *,
        lock_factory: Callable[[str], RunnerLock],
        signal: AppendSignal,
        on_position: PositionListener | None = None,
        on_changes: ChangeListener | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.app = app
        self.database = database
        self.projection_classes = list(projection_classes)
        self._lock_factory = lock_factory
        self._signal = signal
        self._on_position = on_position
        self._on_changes = on_changes
        self._batch_size = batch_size
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._decoder = EventDecoder(app)
        self._shared_commits = SharedCommits(database)

    def start(self) -> None:
        for projection_class in self.projection_classes:
            ensure_ready(self.database, projection_class)
        for projection_class in self.projection_classes:
            thread = threading.Thread(
                target=self._run,
                args=(projection_class,),
                name=f"prep-es-projection-{projection_class.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Runners finish their current batch and stop; the signal goes with them."""
        self._stopping.set()
        self._signal.stop()  # wakes runners waiting for new events
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def _run(self, projection_class: type[Projection]) -> None:
        lock = self._lock_factory(projection_class.name)
        runner = ProjectionRunner(
            projection_class,
            self.app,
            self.database,
            batch_size=self._batch_size,
            on_position=self._on_position,
            on_changes=self._on_changes,
            decoder=self._decoder,
            defer_idle_positions=True,
            shared_commits=self._shared_commits,
        )
        backoff_s = FAILURE_BACKOFF_S_MIN
        head: int | None = None
        try:
            while not self._stopping.is_set():
                # Everything that can fail is inside: a database that cannot be reached
                # (to ask for the lock, say) is retried, never the end of the thread —
                # that would stall the projection silently.
                try:
                    if not lock.try_acquire():
                        self._stopping.wait(STANDBY_POLL_S)
                        continue
                    if head is None:
                        head = self.app.position()
                    if not runner.step(head):
                        head = self._signal.wait(after=head, timeout_s=IDLE_WAIT_S)
                    backoff_s = FAILURE_BACKOFF_S_MIN
                except ProjectionFailed:
                    self._stopping.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, FAILURE_BACKOFF_S_MAX)
                except Exception:
                    logger.exception("projection %s: runner error; retrying", runner.name)
                    lock.release()
                    self._stopping.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, FAILURE_BACKOFF_S_MAX)
        finally:
            try:
                if lock.try_acquire():
                    runner.store_idle_position()
            except Exception:
                logger.exception("projection %s: storing its position failed", runner.name)
            lock.release()
