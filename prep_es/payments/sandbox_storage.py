"""Where the sandbox provider keeps its payments, transfers, outbox and signing secret:
tables prefixed ``sandbox_`` in the event store's own database, so that every process
on one database sees the same sandbox.

SQLite: one connection per provider, used by one thread at a time; writers take the
write lock up front (``BEGIN IMMEDIATE``) and wait for other processes' writers (busy
timeout). PostgreSQL: a small pool of autocommit sessions, each transaction explicit.
Statements are written once, with ``?`` placeholders.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal

import psycopg
from psycopg_pool import ConnectionPool

from prep_es.store.postgres_recorders import drop_closed_connections
from prep_es.store.settings import DatabaseLocation, PostgresLocation

SQLITE_BUSY_TIMEOUT_S: Final = 10.0
POOL_SIZE_MAX: Final = 4
POOL_TIMEOUT_S: Final = 10.0
SECRET_BYTES: Final = 32
_SCHEMA_LOCK_KEY: Final = 0x5A4D_B0C5
"""The advisory lock that keeps two processes from creating the tables at once (two
``CREATE TABLE IF NOT EXISTS`` racing can still collide in PostgreSQL's catalog)."""

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]

_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS sandbox_secret (
        id INTEGER PRIMARY KEY,
        secret TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sandbox_payments (
        reference TEXT PRIMARY KEY,
        top_up_id TEXT NOT NULL UNIQUE,
        amount_cents BIGINT NOT NULL,
        payment_method TEXT NOT NULL,
        outcome TEXT NOT NULL,
        failure_code TEXT,
        created_at {timestamp} NOT NULL,
        settles_at {timestamp} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sandbox_payments_by_creation ON sandbox_payments (created_at)",
    """CREATE TABLE IF NOT EXISTS sandbox_transfers (
        reference TEXT PRIMARY KEY,
        payout_id TEXT NOT NULL UNIQUE,
        method TEXT NOT NULL,
        amount_cents BIGINT NOT NULL,
        destination TEXT,
        payment_reference TEXT,
        outcome TEXT NOT NULL,
        failure_code TEXT,
        created_at {timestamp} NOT NULL,
        settles_at {timestamp} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sandbox_transfers_by_creation ON sandbox_transfers (created_at)",
    """CREATE INDEX IF NOT EXISTS sandbox_transfers_by_payment
        ON sandbox_transfers (payment_reference)""",
    """CREATE TABLE IF NOT EXISTS sandbox_outbox (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        payload {bytes} NOT NULL,
        due_at {timestamp} NOT NULL,
        delivered_at {timestamp},
        attempts INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE INDEX IF NOT EXISTS sandbox_outbox_due
        ON sandbox_outbox (due_at) WHERE delivered_at IS NULL""",
)
"""Times are unix seconds (``created_at``, ``due_at``): the same arithmetic on both
backends, and the provider's clock, not the database's, decides what is due."""

_TYPES: Final[dict[Dialect, dict[str, str]]] = {
    "sqlite": {"timestamp": "REAL", "bytes": "BLOB"},
    "postgresql": {"timestamp": "DOUBLE PRECISION", "bytes": "BYTEA"},
}


class Statements(ABC):
    """The statements of one transaction."""

    @abstractmethod
    def execute(self, statement: str, parameters: Sequence[object] = ()) -> list[Row]:
        """Run ``statement`` (``?`` placeholders) and return the rows it gives, if any."""


class SandboxDatabase(ABC):
    dialect: Dialect

    @property
    def lock_rows(self) -> str:
        """What a ``SELECT`` ends with to lock the rows it reads until the transaction
        ends (SQLite's write transaction already holds the whole database)."""
        return " FOR UPDATE" if self.dialect == "postgresql" else ""

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Statements]:
        """Committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def close(self) -> None: ...

    def create_tables(self) -> None:
        with self.transaction() as statements:
            if self.dialect == "postgresql":
                statements.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))
            for table in _TABLES:
                statements.execute(table.format(**_TYPES[self.dialect]))

    def signing_secret(self) -> str:
        """The database's signing secret, made by the first process to ask for it."""
        with self.transaction() as statements:
            statements.execute(
                "INSERT INTO sandbox_secret (id, secret) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
                (secrets.token_hex(SECRET_BYTES),),
            )
            rows = statements.execute("SELECT secret FROM sandbox_secret WHERE id = 1")
        assert len(rows) == 1
        secret = rows[0][0]
        assert isinstance(secret, str)
        return secret


def open_sandbox_database(location: DatabaseLocation) -> SandboxDatabase:
    """Connections to ``location`` (a private in-memory SQLite database when it names
    memory: the sandbox then lives as long as the provider), tables created."""
    database: SandboxDatabase
    if isinstance(location, PostgresLocation):
        database = _PostgresDatabase(location.conninfo())
    else:
        database = _SqliteDatabase(":memory:" if location.is_memory else location.path)
    try:
        database.create_tables()
    except BaseException:
        database.close()
        raise
    return database


class _SqliteStatements(Statements):
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, statement: str, parameters: Sequence[object] = ()) -> list[Row]:
        return self._connection.execute(statement, parameters).fetchall()


class _SqliteDatabase(SandboxDatabase):
    dialect: Dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(
            path,
            timeout=SQLITE_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
            uri=path.startswith("file:"),
        )
        self._connection.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def transaction(self) -> Iterator[Statements]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteStatements(self._connection)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class _PostgresStatements(Statements):
    def __init__(self, cursor: psycopg.Cursor[Row]) -> None:
        self._cursor = cursor

    def execute(self, statement: str, parameters: Sequence[object] = ()) -> list[Row]:
        self._cursor.execute(statement.replace("?", "%s").encode(), parameters or None)
        return self._cursor.fetchall() if self._cursor.description is not None else []


class _PostgresDatabase(SandboxDatabase):
    dialect: Dialect = "postgresql"

    def __init__(self, conninfo: str) -> None:
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=POOL_SIZE_MAX,
            kwargs={"autocommit": True},
            timeout=POOL_TIMEOUT_S,
            name="prep_es_sandbox",
            open=False,
        )
        # After a database restart every idle connection is dead: drop them before use,
        # as the event store's pool does, rather than fail a payment on each.
        drop_closed_connections(self._pool)
        self._pool.open()

    @contextmanager
    def transaction(self) -> Iterator[Statements]:
        with (
            self._pool.connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            yield _PostgresStatements(cursor)

    def close(self) -> None:
        self._pool.close()
