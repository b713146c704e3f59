"""The event and snapshot tables refuse changes to recorded rows, whatever the client."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from prep_es.store.eventstore import PrepApplication, open_application
from prep_es.store.settings import SqliteLocation, parse_database_url
from tests.store.counter import SNAPSHOT_INTERVAL, Counter
from tests.support import store_settings

POSTGRES_TABLES = ("prep_es_events", "prep_es_snapshots")
SQLITE_TABLES = ("stored_events", "stored_snapshots")
FIRST_VERSION = "(SELECT MIN(originator_version) FROM {table})"


def _record_history(app: PrepApplication) -> None:
    counter = Counter(label="kept")
    for _ in range(SNAPSHOT_INTERVAL):
        counter.increment(1)
    app.save(counter)
    assert app.snapshots is not None
    assert list(app.snapshots.get(counter.id)), "a snapshot was taken"


@pytest.fixture
def postgres_app(fresh_postgres_url: str) -> Iterator[PrepApplication]:
    app = open_application(store_settings(fresh_postgres_url))
    _record_history(app)
    yield app
    app.close()


@pytest.fixture
def sqlite_app(sqlite_url: str) -> Iterator[PrepApplication]:
    app = open_application(store_settings(sqlite_url))
    _record_history(app)
    yield app
    app.close()


@pytest.mark.postgres
@pytest.mark.parametrize("table", POSTGRES_TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET topic = 'rewritten'",
        "UPDATE {table} SET state = NULL WHERE originator_version = " + FIRST_VERSION,
        "DELETE FROM {table}",
        "DELETE FROM {table} WHERE originator_version = " + FIRST_VERSION,
        "TRUNCATE {table}",
    ],
)
def test_postgres_refuses_changes(
    postgres_app: PrepApplication, fresh_postgres_url: str, table: str, statement: str
) -> None:
    with psycopg.connect(fresh_postgres_url, autocommit=True) as connection:
        select = sql.SQL("SELECT * FROM {} ORDER BY originator_id, originator_version").format(
            sql.Identifier(table)
        )
        before = connection.execute(select).fetchall()
        assert before

        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            connection.execute(sql.SQL(statement).format(table=sql.Identifier(table)))

        assert connection.execute(select).fetchall() == before


@pytest.mark.parametrize("table", SQLITE_TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET topic = 'rewritten'",
        "UPDATE {table} SET state = NULL WHERE originator_version = " + FIRST_VERSION,
        "DELETE FROM {table}",
        "DELETE FROM {table} WHERE originator_version = " + FIRST_VERSION,
    ],
)
def test_sqlite_refuses_changes(
    sqlite_app: PrepApplication, sqlite_url: str, table: str, statement: str
) -> None:
    location = parse_database_url(sqlite_url)
    assert isinstance(location, SqliteLocation)
    connection = sqlite3.connect(location.path)
    try:
        select = f"SELECT * FROM {table} ORDER BY originator_id, originator_version"
        before = connection.execute(select).fetchall()
        assert before

        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute(statement.format(table=table))
        connection.rollback()

        assert connection.execute(select).fetchall() == before
    finally:
        connection.close()


@pytest.mark.postgres
def test_postgres_triggers_are_created_once_however_often_the_store_opens(
    postgres_app: PrepApplication, fresh_postgres_url: str
) -> None:
    for _ in range(2):
        open_application(store_settings(fresh_postgres_url)).close()

    with psycopg.connect(fresh_postgres_url) as connection:
        rows = connection.execute(
            "SELECT event_object_table, trigger_name, event_manipulation "
            "FROM information_schema.triggers ORDER BY 1, 2, 3"
        ).fetchall()
        truncate_triggers = connection.execute(
            "SELECT tgrelid::regclass::text FROM pg_trigger "
            "WHERE tgname = 'prep_es_append_only_truncate' ORDER BY 1"
        ).fetchall()

    assert rows == [
        (table, "prep_es_append_only_rows", operation)
        for table in POSTGRES_TABLES
        for operation in ("DELETE", "UPDATE")
    ]
    assert truncate_triggers == [(table,) for table in POSTGRES_TABLES]


def test_inserting_new_events_still_works_after_a_refusal(
    sqlite_app: PrepApplication, sqlite_url: str
) -> None:
    location = parse_database_url(sqlite_url)
    assert isinstance(location, SqliteLocation)
    connection = sqlite3.connect(location.path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("DELETE FROM stored_events")
    finally:
        connection.close()

    counter = Counter(label="after")
    counter.increment(2)
    sqlite_app.save(counter)

    assert sqlite_app.repository.get(counter.id).value == 2
