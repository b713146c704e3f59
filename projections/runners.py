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

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from eventsourcing.persistence import Notification

from prep_es.store.eventstore import DATABASE_IDENTITY_QUERY, PrepApplication
from prep_es.store.known_copies_follower import ERASED_TOPIC
from projections.announcements import (
    CHANGES_CHANNEL,
    CHANGES_PAYLOAD_CHARS_MAX,
    EVERYTHING_CHANGED,
    HINTS_SEPARATOR,
    POSITIONS_CHANNEL,
    ChangeListener,
    PositionListener,
)
from projections.base import Projection
from projections.database import ReadDatabase, Sql
from projections.decoding import EventDecoder
from projections.failures import ProjectionFailed
from projections.generations import (
    STATE_TABLE,
    GenerationKey,
    GenerationState,
    Superseded,
    generations,
    lock_states,
)
from projections.shared_commits import SharedCommits

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
REBUILD_BATCH_SIZE = 2000
ERROR_TEXT_LENGTH_MAX = 4000
GENERATIONS_REFRESH_S = 1.0
IDLE_POSITION_WRITE_S = 0.1
"""How long a following runner may leave its stored position behind when nothing of its
topics arrived (see ``ProjectionRunner.defer_idle_positions``)."""


class _TryOnly(Exception):
    """Rolls back a transaction that only tried whether its statements succeed."""


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
    def participant(self) -> str:
        return self.runner.name

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

    @property
    def participant(self) -> str:
        return self.runner.name

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
        if any(notification.topic == ERASED_TOPIC for notification in batch.notifications):
            # The erased user's rows are blanked: leave nothing of them in the files.
            self.database.forget_overwritten()
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
                    projection.apply(event, notification.id, sql)
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
