"""An SQLite file another process holds locked (``BEGIN EXCLUSIVE``, a backup tool, a
long migration) past the busy timeout: a write is answered 503 with ``Retry-After``,
like any database that cannot serve now, and succeeds once the lock is released."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.problems import database_unavailable
from prep_es.app import create_app
from prep_es.services.passwords import Argon2Passwords
from tests.api.conftest import Api, api_settings, assert_problem
from tests.support import START_OF_TESTS, MutableClock


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = api_settings(f"sqlite:///{tmp_path / 'prep_es.db'}")
    clock = MutableClock(START_OF_TESTS)
    app = create_app(settings, clock=clock, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as client:
        yield Api(app=app, client=client, clock=clock, settings=settings)


def test_a_write_while_another_process_holds_the_file_locked_is_a_503(
    api: Api, tmp_path: Path
) -> None:
    customer = api.register("customer")
    top_up = {"amount": "10.00", "payment_method": "pm_card_visa"}
    other_process = sqlite3.connect(tmp_path / "prep_es.db", isolation_level=None)
    try:
        other_process.execute("BEGIN EXCLUSIVE")
        response = api.post("/accounts/me/top-ups", customer, json=top_up)
        assert_problem(response, 503, "database_unavailable")
        assert response.headers["Retry-After"] == "1"
    finally:
        other_process.execute("ROLLBACK")
        other_process.close()

    assert api.post("/accounts/me/top-ups", customer, json=top_up).status_code == 202
    assert api.get("/accounts/me", customer).status_code == 200


@pytest.mark.parametrize(
    ("message", "unavailable"),
    [
        ("database is locked", True),
        ("database table is locked", True),
        ("no such table: prep_es_events", False),
    ],
)
def test_only_a_lock_held_elsewhere_counts_as_unavailable(message: str, unavailable: bool) -> None:
    """Errors made without SQLite's error code (as a wrapper might): the message says."""
    assert database_unavailable(sqlite3.OperationalError(message)) is unavailable
