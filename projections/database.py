"""The read database: where projections keep read models and queries read them.

One small interface over PostgreSQL (psycopg pool) and SQLite, so that projections and
queries write their SQL once: placeholders are ``%s`` (rewritten to ``?`` for SQLite),
rows come back as dicts, and ``dialect`` says which engine answers where the SQL must
differ (full-text search, interval indexes).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal
from uuid import UUID

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)

Dialect = Literal["postgresql", "sqlite"]
Row = dict[str, Any]

_PLACEHOLDER = re.compile(r"%s")
SQLITE_BUSY_TIMEOUT_S = 10.0
POOL_TIMEOUT_S = 10.0


def uuid_parameter(dialect: Dialect, value: UUID) -> UUID | str:
    """A UUID as a statement's parameter: PostgreSQL has a ``uuid`` type; SQLite keeps
    the text."""
    return value if dialect == "postgresql" else str(value)


def uuid_from_row(value: UUID | str) -> UUID:
    """A ``uuid`` column as read: PostgreSQL gives a UUID, SQLite its text."""
    return value if isinstance(value, UUID) else UUID(value)


class ReadModelNotReady(Exception):
    """A query found a read model's table missing: no projector has yet run on this
    database (an API started before its projector worker). Ask again later."""

    code = "read_model_not_ready"
    retry_after_s = 1


class Sql(ABC):
    """A cursor in a transaction (or a read), with ``%s`` placeholders on both engines."""

    dialect: Dialect

    @abstractmethod
    def execute(self, statement: str, params: Sequence[Any] = ()) -> None: ...

    @abstractmethod
    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    def insert_many(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        *,
        on_conflict: str = "",
    ) -> None:
        """Insert ``rows`` in one statement (a batch of events' rows at once).
        ``columns``: (name, PostgreSQL type) pairs; ``on_conflict``: e.g.
        ``"ON CONFLICT (id) DO NOTHING"``."""

    def fetchone(self, statement: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.fetchall(statement, params)
        return rows[0] if rows else None

    def scalar(self, statement: str, params: Sequence[Any] = ()) -> Any:
        row = self.fetchone(statement, params)
        return None if row is None else next(iter(row.values()))


class _PostgresSql(Sql):
    dialect: Dialect = "postgresql"

    def __init__(self, cursor: psycopg.Cursor[Row]) -> None:
        self._cursor = cursor

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(statement.encode(), params or None)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(statement.encode(), rows)

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(statement.encode(), params or None)
        return self._cursor.fetchall()

    def insert_many(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        *,
        on_conflict: str = "",
    ) -> None:
        if not rows:
            return
        # One JSON document per batch (orjson, in C), taken apart by the server: psycopg
        # dumps arrays value by value in Python, which cost a third of a batch's time.
        # The statement has a fixed shape, prepared once, whatever the number of rows.
        names = ", ".join(name for name, _ in columns)
        values = ", ".join(
            f"r->{index}->0" if kind == "jsonb" else f"(r->>{index})::{kind}"
            for index, (_, kind) in enumerate(columns)
        )
        statement = (
            f"INSERT INTO {table} ({names}) SELECT {values} "
            f"FROM jsonb_array_elements(%b) AS r {on_conflict}"
        )
        json_columns = [index for index, (_, kind) in enumerate(columns) if kind == "jsonb"]
        if json_columns:
            rows = [_json_ready(row, json_columns) for row in rows]
        try:
            document = orjson.dumps(rows)
        except orjson.JSONEncodeError as error:
            raise psycopg.DataError(f"cannot insert into {table}: {error}") from error
        self._cursor.execute(
            statement.encode(), [Jsonb(document, dumps=_already_dumped)], prepare=True
        )


def _json_ready(row: Sequence[Any], json_columns: Sequence[int]) -> list[Any]:
    """``row`` with its JSON values in one-element arrays (``r->i->0``: a JSON ``null``
    stays a JSON value, a missing one, ``None``, becomes SQL ``NULL``); JSON given as
    text is embedded as it is."""
    ready = list(row)
    for index in json_columns:
        value = ready[index]
        if value is None:
            continue
        if isinstance(value, Jsonb):
            value = value.obj
        elif isinstance(value, str):
            value = orjson.Fragment(value)
        ready[index] = [value]
    return ready


def _already_dumped(document: Any) -> bytes:
    assert isinstance(document, bytes)
    return document


class _SqliteSql(Sql):
    dialect: Dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @staticmethod
    def _convert(statement: str) -> str:
        return _PLACEHOLDER.sub("?", statement)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._connection.execute(self._convert(statement), tuple(params))

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._connection.executemany(self._convert(statement), [tuple(r) for r in rows])

    def insert_many(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        *,
        on_conflict: str = "",
    ) -> None:
        names = ", ".join(name for name, _ in columns)
        placeholders = ", ".join(["?"] * len(columns))
        self._connection.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders}) {on_conflict}",
            [tuple(row) for row in rows],
        )

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._connection.execute(self._convert(statement), tuple(params))
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class ReadDatabase(ABC):
    """Connections to the database that holds read models."""

    dialect: Dialect

    @abstractmethod
    @contextmanager
    def transaction(self, *, pipelined: bool = False) -> Iterator[Sql]:
        """A read-write transaction: committed when the block ends, rolled back if it
        raises. ``pipelined``: on PostgreSQL, statements are sent without waiting for
        each one's answer (a read waits for everything before it); an error then
        surfaces at the next read or at the commit, not at the statement that caused
        it."""

    @abstractmethod
    @contextmanager
    def reading(self) -> Iterator[Sql]:
        """Read-only statements for one query; each sees what was committed when it
        started."""

    def forget_overwritten(self) -> None:  # noqa: B027 (PostgreSQL needs nothing)
        """Leave nothing overwritten or deleted readable in the database's files, once
        a person's rows were blanked (see :meth:`SqliteReadDatabase.forget_overwritten`).
        PostgreSQL's old row versions are no part of a dump; vacuum reclaims them."""

    @abstractmethod
    def close(self) -> None: ...


def _read_only_unless_writing(connection: psycopg.Connection[Row]) -> None:
    """Statements outside a transaction are read-only; ``transaction()`` begins READ
    WRITE explicitly (psycopg's ``read_only = False``)."""
    connection.execute("SET default_transaction_read_only = on")
    connection.read_only = False


class PostgresReadDatabase(ReadDatabase):
    """One pool of autocommit sessions that are read-only by default. A query's
    statements run alone, each in its own implicit (read-only) transaction: one round
    trip, where BEGIN, SET TRANSACTION READ ONLY and COMMIT around it took three more,
    and each sees the data committed when it starts (as in the READ COMMITTED
    transactions it replaces). The runners' transactions begin READ WRITE."""

    dialect: Dialect = "postgresql"

    def __init__(self, conninfo: str, *, pool_size: int, name: str = "prep_es_read") -> None:
        self.conninfo = conninfo
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"row_factory": dict_row, "autocommit": True},
            configure=_read_only_unless_writing,
            timeout=POOL_TIMEOUT_S,
            name=name,
            open=True,
        )

    @contextmanager
    def transaction(self, *, pipelined: bool = False) -> Iterator[Sql]:
        with self._pool.connection() as connection:
            if not pipelined:
                with connection.transaction(), connection.cursor() as cursor:
                    yield _PostgresSql(cursor)
                return
            with (
                connection.pipeline(),
                connection.transaction(),
                connection.cursor() as cursor,
            ):
                yield _PostgresSql(cursor)

    @contextmanager
    def reading(self) -> Iterator[Sql]:
        with self._pool.connection() as connection, connection.cursor() as cursor:
            try:
                yield _PostgresSql(cursor)
            except psycopg.errors.UndefinedTable as error:
                raise ReadModelNotReady(str(error)) from error

    def close(self) -> None:
        self._pool.close()


class SqliteReadDatabase(ReadDatabase):
    """One connection per thread; writers take SQLite's write lock up front
    (``BEGIN IMMEDIATE``) so two writers wait for each other instead of failing.

    Connections delete securely (``secure_delete``): what a row held before it was
    updated or deleted is overwritten with zeros, not left in the file's free space,
    where a copy of the file would hand it over (a blanked person's name, say)."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            uri = self.path.startswith("file:")
            connection = sqlite3.connect(
                self.path,
                timeout=SQLITE_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
                uri=uri,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA secure_delete=ON")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self, *, pipelined: bool = False) -> Iterator[Sql]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield _SqliteSql(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[Sql]:
        connection = self._connection()
        connection.execute("BEGIN")
        try:
            yield _SqliteSql(connection)
        except sqlite3.OperationalError as error:
            if str(error).startswith("no such table"):
                raise ReadModelNotReady(str(error)) from error
            raise
        finally:
            connection.execute("ROLLBACK")

    def forget_overwritten(self) -> None:
        """Copy the write-ahead log into the database file and empty it
        (``wal_checkpoint(TRUNCATE)``): the log keeps every page as it was before each
        change, the blanked rows' former content with them. Waits for readers of older
        pages (up to the busy timeout); if some still read, the log stays (logged) and
        the next erasure's checkpoint empties it."""
        busy, _, _ = self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            logger.warning("the read database's write-ahead log was busy: not emptied yet")

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()
