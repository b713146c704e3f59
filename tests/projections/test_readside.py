"""Read-side wiring: where read models are written and where queries read them."""

from __future__ import annotations

import psycopg
import pytest

from prep_es.services.readside import open_read_side
from projections.audit import AuditProjection
from projections.database import PostgresReadDatabase
from projections.generations import ensure_ready
from projections.runners import ProjectionRunner
from tests.support import MutableClock, build_marketplace, open_test_runtime, store_settings


@pytest.mark.postgres
def test_queries_read_the_replica_when_one_is_configured(
    fresh_postgres_url: str, postgres_url: str
) -> None:
    """No streaming replica runs here: a second database stands in for one, and the
    query side must read it, while projectors write the primary."""
    clock = MutableClock()
    runtime = open_test_runtime(fresh_postgres_url, clock)
    build_marketplace(runtime, clock)
    side = open_read_side(store_settings(fresh_postgres_url, read_database_url=postgres_url))
    try:
        assert isinstance(side.query_database, PostgresReadDatabase)
        assert side.query_database is not side.write_database
        ensure_ready(side.write_database, AuditProjection)
        ProjectionRunner(AuditProjection, runtime.app, side.write_database).catch_up()
        with side.write_database.reading() as sql:
            assert sql.scalar("SELECT count(*) FROM audit_entries") == runtime.app.position()
        with side.query_database.reading() as sql:
            assert sql.scalar("SELECT current_database()") == postgres_url.rsplit("/", 1)[1]
    finally:
        side.close()
        runtime.close()


def test_without_a_replica_queries_read_the_primary(sqlite_url: str) -> None:
    side = open_read_side(store_settings(sqlite_url))
    try:
        assert side.query_database is side.write_database
    finally:
        side.close()


@pytest.mark.postgres
def test_queries_cannot_write_and_runners_can(fresh_postgres_url: str) -> None:
    """Query statements run alone (no transaction around them) in read-only sessions;
    a runner's transaction begins READ WRITE on the same connections."""
    database = PostgresReadDatabase(fresh_postgres_url, pool_size=1)
    try:
        with database.transaction() as sql:
            sql.execute("CREATE TABLE written (n int)")
            sql.execute("INSERT INTO written VALUES (1)")
        with (
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
            database.reading() as sql,
        ):
            sql.execute("INSERT INTO written VALUES (2)")
        with database.reading() as sql:
            assert sql.scalar("SELECT count(*) FROM written") == 1
            assert sql.scalar("SELECT now() = statement_timestamp()") is True  # no BEGIN
        with database.transaction(pipelined=True) as sql:
            sql.execute("INSERT INTO written VALUES (3)")
        with database.reading() as sql:
            assert sql.scalar("SELECT sum(n) FROM written") == 4
    finally:
        database.close()
