"""Shared fixtures: real databases, fresh for every run and for every test that needs one.

PostgreSQL is reached through the maintenance URL in ``TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). Each run creates its own databases,
named ``prep_es_test_<random>``, and drops them when done, so runs never see each
other's data. When PostgreSQL is unreachable, PostgreSQL tests are skipped with a
warning in the summary — unless ``CI=true``, where that is an error.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from threading import Lock
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from prep_es.services.readside import ReadSide, open_read_side
from prep_es.store.eventstore import PrepApplication, open_application
from prep_es.store.settings import PostgresLocation, Settings, parse_database_url
from tests.support import (
    Marketplace,
    MutableClock,
    build_marketplace,
    deliver_payment_notifications,
    open_test_runtime,
    store_settings,
    top_up,
)

MAINTENANCE_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 3
DATABASE_PREFIX = "prep_es_test_"

_unavailable_reasons: list[str] = []


@dataclass
class PostgresServer:
    """Creates and drops throwaway databases on the test PostgreSQL server."""

    maintenance_url: str
    created: set[str] = field(default_factory=set)
    lock: Lock = field(default_factory=Lock)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self.maintenance_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )

    def create_database(self) -> str:
        """A new empty database; returns its ``postgresql://`` URL."""
        name = DATABASE_PREFIX + secrets.token_hex(6)
        with self._connect() as connection:
            connection.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
        with self.lock:
            self.created.add(name)
        return self.url_of(name)

    def drop_database(self, url: str) -> None:
        location = parse_database_url(url)
        assert isinstance(location, PostgresLocation)
        assert location.dbname.startswith(DATABASE_PREFIX), location.dbname
        with self._connect() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(location.dbname)
                )
            )
        with self.lock:
            self.created.discard(location.dbname)

    def drop_all(self) -> None:
        for name in sorted(self.created):
            self.drop_database(self.url_of(name))

    def url_of(self, name: str) -> str:
        """The URL of database ``name``, with the maintenance URL's credentials."""
        return urlunsplit(urlsplit(self.maintenance_url)._replace(path=f"/{name}"))


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(os.environ.get("TEST_POSTGRES_URL", MAINTENANCE_URL_DEFAULT))
    try:
        with server._connect() as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as error:
        reason = f"PostgreSQL unreachable at {server.maintenance_url}: {error}".strip()
        if _is_ci():
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
        _unavailable_reasons.append(reason)
        pytest.skip(reason)
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A database shared by the whole run (tests must not assume it is empty)."""
    return postgres_server.create_database()


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new empty database for this test, dropped after it."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new empty SQLite file for this test."""
    return f"sqlite:///{tmp_path / 'prep_es.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty store on each backend in turn."""
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_postgres_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return store_settings(database_url)


@pytest.fixture
def application(settings: Settings) -> Iterator[PrepApplication]:
    app = open_application(settings)
    yield app
    app.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reason in dict.fromkeys(_unavailable_reasons):
        terminalreporter.write_sep("!", "PostgreSQL tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(reason, red=True)
        terminalreporter.write_line("Start PostgreSQL (see .ci/run) to run them.", red=True)


@pytest.fixture
def market(database_url: str) -> Iterator[Marketplace]:
    """A marketplace made through the command handlers: an admin, a host with a
    published compliant kitchen, a funded customer (see ``tests.support``)."""
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    yield build_marketplace(runtime, clock)
    runtime.close()


@pytest.fixture
def unhurried_market(database_url: str) -> Iterator[Marketplace]:
    """A marketplace whose sandbox takes a second to settle transfers and send
    notifications: the two phases of a payout can be seen apart."""
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock, sandbox_notification_delay_s=1.0)
    market = build_marketplace(runtime, clock, top_up_cents=0)
    top_up(runtime, market.customer, 1_000_000)
    clock.advance(timedelta(seconds=2))
    deliver_payment_notifications(runtime)
    yield market
    runtime.close()


@pytest.fixture
def read_side(database_url: str) -> Iterator[ReadSide]:
    """The read side over the same database as ``market``'s event store."""
    side = open_read_side(store_settings(database_url))
    yield side
    side.close()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty store on each backend in turn, shared by one test module (for modules
    that build one world of data and ask it many questions)."""
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
        yield url
        server.drop_database(url)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('module') / 'prep_es.db'}"
