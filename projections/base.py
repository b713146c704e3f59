"""What a projection is: a named, versioned read model built from events.

A projection owns tables. Each *generation* of a projection (a rebuild, or a new
``version`` of its code) builds its own copy of those tables, named
``<name>_g<generation>_<table>``; queries read them through views named
``<name>_<table>`` that point at the active generation. A rebuild therefore fills new
tables while queries keep reading the old ones, and switches the views in the same
transaction that records the new generation as caught up.

Subclasses declare ``name``, ``version``, ``tables``, the DDL of those tables
(``create_tables``), and one ``@apply.register`` method per event type they follow; the
event types give the topics the runner asks the event store for. Every method writes
through the :class:`~projections.database.Sql` it is given — the runner's transaction,
which also records the projection's position, so an event is applied exactly once.

SQL rules: ``%s`` placeholders only, never a literal ``%`` (pass LIKE patterns as
parameters); ids and times are stored as text on SQLite and native types on PostgreSQL
through :meth:`Projection.column`; every write is an idempotent upsert or a
delete-and-insert keyed by the event's identity.
"""

from __future__ import annotations

import functools
import inspect
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from functools import singledispatchmethod
from importlib import resources
from typing import Any, ClassVar
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic
from psycopg.types.json import Jsonb

from aggregates.jurisdictions import JurisdictionCatalog
from projections.database import Dialect, Sql, uuid_parameter

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


Applier = Callable[["Projection", Any, int, Sql], None]
_APPLIERS: dict[tuple[type[Projection], type[Any]], Applier] = {}


def _orjson_text(value: Any) -> str:
    return orjson.dumps(value).decode()


@functools.cache
def packaged_jurisdictions() -> JurisdictionCatalog:
    """The jurisdiction rules shipped with Prep ES: read models that need them (kitchen
    compliance, occupancy) are built with these by default, so a rebuild computes the
    same rows whatever the process's settings."""
    text = resources.files("prep_es.store").joinpath("jurisdictions.toml").read_text("utf-8")
    return JurisdictionCatalog.from_mapping(tomllib.loads(text))


class Projection(ABC):
    """A read model. One instance per generation (its table names differ)."""

    name: ClassVar[str]
    """Stable identifier (``bookings``): names views, tables and the CLI argument."""
    version: ClassVar[int]
    """Bump when the tables or the meaning of rows change: a new version builds from
    position 0 into new tables and replaces the old one once caught up."""
    tables: ClassVar[tuple[str, ...]]
    """Logical table names; each gets a view of the same name prefixed by ``name``."""
    event_types: ClassVar[tuple[type[Any], ...]]
    """The event classes ``apply`` handles: the runner asks only for their topics."""
    reads_stored_events: ClassVar[bool] = False
    """``True``: the runner hands :meth:`apply_stored` each stored event as it is (its
    JSON state undecoded), for a projection that records events rather than reading
    them — decoding would cost it more than everything else it does."""

    records_every_event: ClassVar[bool] = False
    """``True`` (with ``reads_stored_events``): the projection follows every event type,
    so a batch is a range of positions, which :meth:`apply_stored_range` applies on
    PostgreSQL."""

    def __init__(self, generation: int, dialect: Dialect) -> None:
        self.generation = generation
        self.dialect = dialect
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

    @singledispatchmethod  # noqa: B027 (the default ignores events it has no method for)
    def apply(self, event: Any, position: int, sql: Sql) -> None:
        """Apply one event at ``position``; the default ignores it."""

    @classmethod
    def applier(cls, event_type: type[Any]) -> Applier:
        """The function :meth:`apply` runs for events of ``event_type`` (called with the
        projection first), looked up once per class and type: on Python 3.11 every
        access to a ``singledispatchmethod`` builds and wraps a new function, which cost
        a rebuild about 5% of its time."""
        key = (cls, event_type)
        applier = _APPLIERS.get(key)
        if applier is None:
            method = inspect.getattr_static(cls, "apply")
            if isinstance(method, singledispatchmethod):
                applier = method.dispatcher.dispatch(event_type)
            else:
                applier = method
            _APPLIERS[key] = applier
        return applier

    def apply_stored(self, notification: Notification, sql: Sql) -> datetime:
        """Apply one stored event (``reads_stored_events``); return when it happened."""
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

    def before_batch(self) -> None:  # noqa: B027
        """Called before a batch's events are applied (a batch may be applied twice,
        if the first attempt failed): reset what ``after_batch`` writes."""

    def after_batch(self, sql: Sql) -> None:  # noqa: B027
        """Called once per batch after its events were applied, in the same
        transaction: for work cheaper done once per batch than once per event."""
