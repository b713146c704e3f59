"""What a projection is: a named, versioned read model built from events.

A projection owns tables. Each *generation* of a projection (a rebuild, or a new
``version`` of its code) builds its own copy of those tables, named
``<name>_g<generation>_<table>``; queries read them through views named
``<name>_<table>`` that point at the active generation. A rebuild therefore fills new
tables while queries keep reading the old ones, and switches the views in the same
transaction that records the new generation as caught up.

Subclasses declare ``name``, ``version``, ``tables``, the DDL of those tables
(``create_tables``), and one *fold* per event type they follow: a method registered
with :func:`fold`, which the base class collects. The registered event types are the
projection's ``event_types``, whose topics the runner asks the event store for; an
event is dispatched to its fold by one dictionary lookup on its class. A fold is
either

- applied at once: ``(self, event, position, sql)``, writing through the
  :class:`~projections.database.Sql` it is given — the runner's transaction, which
  also records the projection's position, so an event is applied exactly once; or
- batched (``@fold(..., batched=True)``): ``(self, event, position, batch)``, run in
  event order at the end of the batch over what :meth:`Projection.load_batch` read
  for the whole batch in a few queries, changing rows in memory that
  :meth:`Projection.write_batch` then writes once each (:meth:`Projection.load_rows`
  and :meth:`Projection.upsert_rows` do the usual load and upsert).

A projection that records every event as stored rather than reading it (the audit
trail) registers one method with :func:`fold_every_stored_event` instead: it follows
every domain event type and is handed each stored event undecoded.

SQL rules: ``%s`` placeholders only, never a literal ``%`` (pass LIKE patterns as
parameters); ids and times are stored as text on SQLite and native types on PostgreSQL
through :meth:`Projection.column`; every write is an idempotent upsert or a
delete-and-insert keyed by the event's identity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic
from psycopg.types.json import Jsonb

from projections.database import Dialect, Row, Sql, uuid_parameter
from projections.events import domain_event_types
from projections.failures import ProjectionFailed

POSTGRES_TYPES = {
    "id": "uuid",
    "time": "timestamptz",
    "date": "date",
    "money": "bigint",
    "json": "jsonb",
    "text": "text",
    "int": "bigint",
    "bool": "boolean",
}


IDS_PER_QUERY = 500
"""Ids per ``IN`` list on SQLite (whose number of parameters is bounded)."""

Fold = Callable[[Any, Any, int, Any], None]
"""A registered fold, called with the projection, the event, its position, and the
batch's ``Sql`` (applied at once) or the batch :meth:`Projection.load_batch` read
(batched)."""
Applier = Callable[[Any, Any, int, Sql], None]
"""What applies an event as the runner reads it: (projection, event, position, sql)."""
StoredFold = Callable[[Any, Notification, Sql], datetime]
Method = TypeVar("Method", bound=Callable[..., Any])

_FOLD_MARK = "__projection_fold__"
_STORED_FOLD_MARK = "__projection_stored_fold__"


def fold(*event_types: type[Any], batched: bool = False) -> Callable[[Method], Method]:
    """Register the decorated method as the projection's fold of each of
    ``event_types``; ``batched``: run at the end of the batch over the rows
    :meth:`Projection.load_batch` read (see the module docstring)."""
    assert event_types, "a fold names the event types it folds"

    def register(method: Method) -> Method:
        setattr(method, _FOLD_MARK, (event_types, batched))
        return method

    return register


def _queued(function: Fold) -> Applier:
    """An applier that queues events for the batched fold ``function``."""

    def queue(projection: Projection, event: Any, position: int, sql: Sql) -> None:
        projection._batched.append((function, event, position))

    return queue


def fold_every_stored_event(method: Method) -> Method:
    """Register the decorated method, ``(self, notification, sql) -> recorded_at``, as
    the fold of every domain event type, handed each stored event undecoded (its JSON
    state as written): for a projection that records events rather than reading them,
    which decoding would cost more than everything else it does. Such a projection
    follows every event, so on PostgreSQL its batches are ranges of positions, which
    :meth:`Projection.apply_stored_range` applies by SQL."""
    setattr(method, _STORED_FOLD_MARK, True)
    return method


def _orjson_text(value: Any) -> str:
    return orjson.dumps(value).decode()


class Projection(ABC):
    """A read model. One instance per generation (its table names differ)."""

    name: ClassVar[str]
    """Stable identifier (``bookings``): names views, tables and the CLI argument."""
    version: ClassVar[int]
    """Bump when the tables or the meaning of rows change: a new version builds from
    position 0 into new tables and replaces the old one once caught up."""
    tables: ClassVar[tuple[str, ...]]
    """Logical table names; each gets a view of the same name prefixed by ``name``."""
    folds: ClassVar[Mapping[type[Any], Applier]] = {}
    """Per event class, what :meth:`apply` calls: its fold (registered with
    :func:`fold`), or for a batched fold what queues it for the end of the batch."""
    event_types: ClassVar[tuple[type[Any], ...]] = ()
    """The event classes the projection folds: the runner asks only for their topics."""
    reads_stored_events: ClassVar[bool] = False
    """``True`` (:func:`fold_every_stored_event`): the runner hands :meth:`apply_stored`
    each stored event as it is (its JSON state undecoded)."""
    records_every_event: ClassVar[bool] = False
    """``True`` (with ``reads_stored_events``): the projection follows every event type,
    so a batch is a range of positions, which :meth:`apply_stored_range` applies on
    PostgreSQL."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Collect the folds registered on the class and its bases (a subclass's fold
        of an event type replaces its base's)."""
        super().__init_subclass__(**kwargs)
        folds: dict[type[Any], Applier] = {}
        stored: StoredFold | None = None
        for klass in reversed(cls.__mro__):
            for value in vars(klass).values():
                marked = getattr(value, _FOLD_MARK, None)
                if marked is not None:
                    event_types, batched = marked
                    applier = _queued(value) if batched else value
                    for event_type in event_types:
                        folds[event_type] = applier
                if getattr(value, _STORED_FOLD_MARK, False):
                    stored = value
        if stored is not None:
            assert not folds, f"{cls.__name__} folds stored events and decoded ones"
            cls.apply_stored = stored  # type: ignore[method-assign,assignment]
            cls.event_types = domain_event_types()
            cls.reads_stored_events = cls.records_every_event = True
        else:
            cls.folds = folds
            cls.event_types = tuple(folds)

    def __init__(self, generation: int, dialect: Dialect) -> None:
        self.generation = generation
        self.dialect = dialect
        self._batched: list[tuple[Fold, Any, int]] = []
        """The batch's events for batched folds, in order, with their folds."""
        self.changed: set[str] = set()
        """Cache dependencies (``kitchen:<id>``, ``kitchens``) the current batch
        changed: the runner hands them to the query cache once the batch commits."""
        self.hints: set[str] = set()
        """What else listeners of the change announcements may use to catch up cheaply
        (``booked:<kitchen id>``: the kitchen's booked intervals changed): announced
        with ``changed`` (PostgreSQL), never a cache dependency."""

    @classmethod
    def topics(cls) -> list[str]:
        return [get_topic(event_type) for event_type in cls.event_types]

    def table(self, table: str) -> str:
        """This generation's physical table for logical ``table``."""
        assert table in self.tables, table
        return f"{self.name}_g{self.generation}_{table}"

    @classmethod
    def view(cls, table: str) -> str:
        """The stable name queries read ``table`` through."""
        assert table in cls.tables, table
        return f"{cls.name}_{table}"

    def column(self, kind: str) -> str:
        """A column type by meaning, per dialect: ``id``, ``time``, ``date``, ``money``,
        ``json``, ``text``, ``int``, ``bool``."""
        postgres = POSTGRES_TYPES
        sqlite = {
            "id": "text",
            "time": "text",
            "date": "text",
            "money": "integer",
            "json": "text",
            "text": "text",
            "int": "integer",
            "bool": "integer",
        }
        return (postgres if self.dialect == "postgresql" else sqlite)[kind]

    def insert_rows(
        self,
        sql: Sql,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        *,
        on_conflict: str = "",
    ) -> None:
        """Insert many rows into this generation's ``table`` in one statement;
        ``columns`` are (name, kind) pairs, kinds as for :meth:`column`."""
        sql.insert_many(
            self.table(table),
            [(name, POSTGRES_TYPES[kind]) for name, kind in columns],
            rows,
            on_conflict=on_conflict,
        )

    def id_value(self, value: UUID) -> UUID | str:
        return uuid_parameter(self.dialect, value)

    def time_value(self, value: datetime) -> datetime | str:
        """Aware times (PostgreSQL stores the instant, whatever the offset); on SQLite a
        fixed-width UTC string, so text order is time order."""
        assert value.tzinfo is not None
        if self.dialect == "postgresql":
            return value
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def date_value(self, value: date) -> date | str:
        return value if self.dialect == "postgresql" else value.isoformat()

    def json_value(self, value: Any) -> Jsonb | str:
        if self.dialect == "postgresql":
            return Jsonb(value, dumps=_orjson_text)
        return _orjson_text(value)

    @abstractmethod
    def create_tables(self, sql: Sql) -> None:
        """Create this generation's tables (``self.table(...)``) with the keys and
        indexes its own event handlers look rows up by."""

    def create_indexes(self, sql: Sql) -> None:  # noqa: B027 (most need none)
        """Create the indexes only queries use. A generation that serves at once gets
        them with its tables; a rebuilding one when it switches over, in the switch's
        transaction: one index build over the finished rows costs far less than keeping
        an index current row by row through the whole catch-up."""

    def drop_tables(self, sql: Sql) -> None:
        for table in self.tables:
            sql.execute(f"DROP TABLE IF EXISTS {self.table(table)}")

    def create_views(self, sql: Sql) -> None:
        """Point the stable views at this generation's tables."""
        for table in self.tables:
            view = self.view(table)
            sql.execute(f"DROP VIEW IF EXISTS {view}")
            sql.execute(f"CREATE VIEW {view} AS SELECT * FROM {self.table(table)}")

    def apply(self, event: Any, position: int, sql: Sql) -> None:
        """Fold one event at ``position``: at once, or (a batched fold) at the end of
        the batch."""
        try:
            applier = self.folds[type(event)]
        except KeyError:
            # Only the registered event types are asked for: anything else is a bug.
            raise AssertionError(f"{self.name} does not follow {type(event).__name__}") from None
        applier(self, event, position, sql)

    def apply_stored(self, notification: Notification, sql: Sql) -> datetime:
        """Apply one stored event (``reads_stored_events``); return when it happened.
        Replaced by the method registered with :func:`fold_every_stored_event`."""
        raise NotImplementedError

    @classmethod  # noqa: B027
    def create_functions(cls, sql: Sql) -> None:
        """Create (or replace) the SQL functions the projection's statements call,
        shared by all its generations: at every start, so code that came with a new
        function finds it in a database made by older code."""

    def apply_stored_range(
        self, after: int, up_to: int, events_table: str, sql: Sql
    ) -> tuple[int, datetime | None]:
        """Apply every stored event with a position in (``after``, ``up_to``] by SQL over
        ``events_table`` (``records_every_event``, on PostgreSQL, whose read models share
        the event store's database): the server builds the rows, nothing is fetched,
        decoded and sent back. Returns how many events were applied and when the last
        one happened."""
        raise NotImplementedError

    def before_batch(self) -> None:
        """Called before a batch's events are applied (a batch may be applied twice,
        if the first attempt failed): reset what ``after_batch`` writes."""
        self._batched.clear()

    def after_batch(self, sql: Sql) -> None:
        """Called once per batch after its events were applied, in the same
        transaction: runs the batched folds, in event order, over what
        :meth:`load_batch` reads, and writes the result with :meth:`write_batch`."""
        batched, self._batched = self._batched, []
        if not batched:
            return
        batch = self.load_batch(sql, [event for _, event, _ in batched])
        for function, event, position in batched:
            try:
                function(self, event, position, batch)
            except Exception as error:
                raise ProjectionFailed.of(
                    self.name, position, get_topic(type(event)), error
                ) from error
        self.write_batch(sql, batch)

    def load_batch(self, sql: Sql, events: Sequence[Any]) -> Any:
        """What the batched folds of ``events`` change, read in as few queries as the
        batch allows (:meth:`load_rows`): the ``batch`` each of them is given."""
        raise NotImplementedError(f"{self.name} has batched folds but no load_batch")

    def write_batch(self, sql: Sql, batch: Any) -> None:
        """Write what the batched folds changed in ``batch``, each row once
        (:meth:`upsert_rows`)."""
        raise NotImplementedError(f"{self.name} has batched folds but no write_batch")

    def load_rows(
        self, sql: Sql, table: str, columns: Sequence[str], key: str, ids: Collection[UUID]
    ) -> list[Row]:
        """The ``columns`` of the rows of this generation's ``table`` whose ``key`` is
        one of ``ids``: one query on PostgreSQL, one per ``IDS_PER_QUERY`` ids on
        SQLite."""
        if not ids:
            return []
        names = ", ".join(columns)
        physical = self.table(table)
        values = [self.id_value(value) for value in ids]
        if self.dialect == "postgresql":
            return sql.fetchall(f"SELECT {names} FROM {physical} WHERE {key} = ANY(%s)", (values,))
        rows: list[Row] = []
        for start in range(0, len(values), IDS_PER_QUERY):
            chunk = values[start : start + IDS_PER_QUERY]
            rows += sql.fetchall(
                f"SELECT {names} FROM {physical} WHERE {key} IN ({', '.join(['%s'] * len(chunk))})",
                chunk,
            )
        return rows

    def upsert_rows(
        self,
        sql: Sql,
        table: str,
        columns: Sequence[tuple[str, str]],
        key: str,
        rows: Sequence[Sequence[Any]],
        *,
        kept: Collection[str] = (),
        where: str = "",
    ) -> None:
        """Insert ``rows`` into this generation's ``table`` in one statement; a row
        whose ``key`` exists replaces every column but the key and ``kept`` (``where``:
        a condition on the update, such as a version guard)."""
        updates = ", ".join(
            f"{name} = excluded.{name}" for name, _ in columns if name != key and name not in kept
        )
        self.insert_rows(
            sql,
            table,
            columns,
            rows,
            on_conflict=f"ON CONFLICT ({key}) DO UPDATE SET {updates}{where}",
        )
