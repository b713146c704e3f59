"""``prep-es store migrate``: a store as the release before encryption wrote it (the rows
of ``tests/fixtures/pre_encryption_store.jsonl``) is refused as it is, and copied into a
new store on either backend, from either backend: verified event by event and read
model by read model, nothing personal left in plain text, every user able to sign in with
their old password, emails still unique, a registration's Idempotency-Key still
replaying. A copy resumes where it stopped, and catches up with what the old store
gained since. A copy that differs is found."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from aggregates.user import EmailClaim
from prep_es.app import create_app
from prep_es.store.eventstore import open_application
from prep_es.store.personal_keys import KEYS_TABLE, MasterKey
from prep_es.store.pre_encryption import CLAIM_TOPIC, IDEMPOTENCY_TOPIC, UnmigratedStore
from prep_es.store.settings import PostgresLocation, Settings, parse_database_url
from prep_es.store.store_migration import StoreMigration, open_source_store
from tests.cli.running import RunCli, cli_runner
from tests.conftest import PostgresServer
from tests.fixtures.pre_encryption_store import (
    fixture_events,
    fixture_snapshots,
    load_pre_encryption_store,
    password_of,
    personal_texts,
    users,
)

REPOSITORY = Path(__file__).resolve().parents[2]
MASTER_KEY = MasterKey.generate().encoded()
JWT_SECRET = "migration-test-secret-Vb8Tn3Qz6Lw1Rk5Hd9Pc2Xf7"
PASSWORD = "a long enough password"
API = "/api/v1"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
PAIRS = [
    ("sqlite", "sqlite"),
    pytest.param("sqlite", "postgres", marks=pytest.mark.postgres),
    pytest.param("postgres", "sqlite", marks=pytest.mark.postgres),
    pytest.param("postgres", "postgres", marks=pytest.mark.postgres),
]
PG_SPACING = 3
"""PostgreSQL sources get gaps between notification ids, as a sequence leaves them."""
REGISTRATIONS_WITH_A_KEY = 2

NewStore = Callable[[str], str]


@pytest.fixture
def new_store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NewStore]:
    """``new_store("sqlite" | "postgres")``: the URL of a new empty store."""
    made: list[str] = []
    servers: list[PostgresServer] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            made.append(f"sqlite:///{tmp_path / f'store-{len(made)}.db'}")
            return made[-1]
        server: PostgresServer = request.getfixturevalue("postgres_server")
        servers.append(server)
        made.append(server.create_database())
        return made[-1]

    yield make
    for url in made:
        if url.startswith("postgresql") and servers:
            servers[0].drop_database(url)


def old_store(new_store: NewStore, backend: str) -> str:
    url = new_store(backend)
    load_pre_encryption_store(url, spacing=PG_SPACING if backend == "postgres" else 1)
    return url


@pytest.fixture
def migrate_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``migrate_cli(source_url)``: ``prep-es`` with the source as PREP_ES_DATABASE_URL,
    the master key of the new stores and a JWT secret."""

    def runner(source_url: str) -> RunCli:
        cli = cli_runner(monkeypatch, capsys, source_url)
        monkeypatch.setenv("PREP_ES_MASTER_KEY", MASTER_KEY)
        monkeypatch.setenv("PREP_ES_JWT_SECRET", JWT_SECRET)
        return cli

    return runner


def migrate(cli: RunCli, target_url: str, *arguments: str) -> dict[str, Any]:
    ran = cli("store", "migrate", "--to", target_url, "--json", *arguments)
    assert ran.code == 0, ran.err + ran.out
    report: dict[str, Any] = json.loads(ran.out)
    return report


def store_dump(url: str) -> bytes:
    """Every byte the store's database holds that a dump would: the whole file on
    SQLite; every row of every table, as text, on PostgreSQL."""
    location = parse_database_url(url)
    if not isinstance(location, PostgresLocation):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(
            Path(f"{path}{suffix}").read_bytes()
            for suffix in ("", "-wal")
            if Path(f"{path}{suffix}").exists()
        )
    dumped = []
    with psycopg.connect(location.conninfo()) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        for (table,) in tables:
            rows = connection.execute(
                sql.SQL("SELECT t::text FROM {} AS t").format(sql.Identifier(table))
            ).fetchall()
            dumped += [row[0].encode() for row in rows]
    return b"\n".join(dumped)


def key_table_exists(url: str) -> bool:
    location = parse_database_url(url)
    if isinstance(location, PostgresLocation):
        with psycopg.connect(location.conninfo()) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_tables WHERE tablename = %s", (KEYS_TABLE,)
            ).fetchone()
    else:
        with closing(sqlite3.connect(location.path)) as connection:
            row = connection.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = ?", (KEYS_TABLE,)
            ).fetchone()
    assert row is not None
    return bool(row[0])


def plaintext_found(dump: bytes) -> list[str]:
    """The fixture's personal texts found in ``dump``: as they are, in lower case, JSON-
    escaped, and (PostgreSQL's text form of bytea) hex-encoded."""
    found = []
    for text in personal_texts():
        forms = {text, text.lower(), orjson.dumps(text).decode().strip('"')}
        encodings = {form.encode() for form in forms} | {
            form.encode().hex().encode() for form in forms
        }
        if any(encoded in dump for encoded in encodings):
            found.append(text)
    return found


# --- the old store as it is --------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unmigrated_store_is_refused_and_left_as_it_was(
    backend: str, new_store: NewStore, migrate_cli: Any
) -> None:
    url = old_store(new_store, backend)
    settings = Settings(database_url=url, master_key=MASTER_KEY)
    with pytest.raises(UnmigratedStore, match="prep-es store migrate"):
        open_application(settings)
    cli = migrate_cli(url)
    for arguments in (
        ("projections", "status"),
        ("users", "create", "--email", "new@example.com", "--password", PASSWORD,
         "--role", "admin"),
    ):  # fmt: skip
        ran = cli(*arguments)
        assert ran.code == 1, (arguments, ran.err)
        assert "error: store_not_migrated:" in ran.err
        assert "prep-es store migrate --to URL" in ran.err
    # Refused before anything was made in it: no key table, no key file.
    assert not key_table_exists(url)
    if backend == "sqlite":
        with pytest.raises(UnmigratedStore):
            open_application(Settings(database_url=url))  # embedded: no key given
        assert not Path(url.removeprefix("sqlite:///") + ".master-key").exists()


@pytest.mark.parametrize("command", [("serve", "--port", "1"), ("project", "--no-sweeper")])
def test_the_server_and_the_projector_worker_refuse_an_unmigrated_store(
    command: tuple[str, ...], new_store: NewStore
) -> None:
    url = old_store(new_store, "sqlite")
    environment = {
        name: value for name, value in os.environ.items() if not name.upper().startswith("PREP_ES_")
    }
    completed = subprocess.run(
        [sys.executable, "-m", "prep_es.cli", *command],
        cwd=REPOSITORY,
        env={**environment, "PREP_ES_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    assert "error: store_not_migrated:" in completed.stderr
    assert "Traceback" not in completed.stderr


# --- the copy ------------------------------------------------------------------------------


@pytest.mark.parametrize(("source_backend", "target_backend"), PAIRS)
def test_migrate_copies_seals_and_verifies_and_users_sign_in(
    source_backend: str, target_backend: str, new_store: NewStore, migrate_cli: Any
) -> None:
    source = old_store(new_store, source_backend)
    target = new_store(target_backend)
    cli = migrate_cli(source)
    report = migrate(cli, target)

    events = fixture_events()
    claims = [row for row in events if row.topic == CLAIM_TOPIC]
    # Every record moves: its id is derived from its keyed scope and key.
    records = [row for row in events if row.topic == IDEMPOTENCY_TOPIC]
    assert len(records) >= REGISTRATIONS_WITH_A_KEY
    assert report["ok"] is True
    assert report["copy"]["copied"] == report["copy"]["events_in_target"] == len(events)
    assert report["copy"]["moved"] == len(claims) + len(records)
    assert report["snapshots_left_behind"] == len(fixture_snapshots())
    assert (report["events"]["compared"], report["events"]["differing"]) == (len(events), 0)
    tables = report["read_models"]
    assert {table["projection"] for table in tables} >= {"users", "bookings", "audit"}
    for table in tables:
        assert table["differing_rows"] == 0, table
        assert table["source_rows"] == table["target_rows"]
    audit = next(table for table in tables if table["projection"] == "audit")
    assert audit["target_rows"] == len(events)

    dump = store_dump(target)
    assert dump, "the target holds something"
    assert plaintext_found(dump) == []
    assert plaintext_found(store_dump(source)), "the texts looked for are in the old store"

    ran = cli("store", "migrate", "--to", target)  # the cut-over's catch-up: nothing new
    assert ran.code == 0, ran.err
    assert "copied 0 event(s)" in ran.out and "Cut-over:" in ran.out

    check_the_new_store_serves(target)


def check_the_new_store_serves(target: str) -> None:
    """Every user of the old store signs in with their password; their emails are still
    taken; a registration's Idempotency-Key replays the user it registered."""
    settings = Settings(
        database_url=target,
        master_key=MASTER_KEY,
        jwt_secret=JWT_SECRET,
        min_position_wait_s=10.0,
        sweep_interval_s=3600.0,
    )
    with TestClient(create_app(settings)) as client:
        head = str(client.app.state.services.runtime.app.position())  # type: ignore[attr-defined]
        for email, registered in users().items():
            signed_in = client.post(
                f"{API}/auth/login",
                json={"email": email, "password": password_of(email)},
                headers={"X-Prep-Min-Position": head},
            )
            assert signed_in.status_code == 200, (email, signed_in.text)
            token = signed_in.json()["access_token"]
            me = client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            assert (me.json()["email"], me.json()["full_name"]) == (
                email,
                registered["full_name"],
            )
        taken = client.post(
            f"{API}/auth/register",
            json={
                "email": "ADMIN@demo.prep.example",
                "password": "another long password",
                "full_name": "Someone Else",
                "role": "customer",
            },
        )
        assert taken.status_code == 409, taken.text
        assert taken.json()["code"] == "email_taken"
        kenji = users()["kenji.sato@fixture.prep.example"]
        replayed = client.post(
            f"{API}/auth/register",
            json={
                "email": kenji["email"],
                "password": password_of(kenji["email"]),
                "full_name": kenji["full_name"],
                "role": kenji["role"],
            },
            headers={"Idempotency-Key": "fixture-registration-2"},
        )
        assert replayed.status_code in (200, 201), replayed.text
        assert replayed.json()["id"] == kenji["id"]


@pytest.mark.parametrize("target_backend", BACKENDS)
def test_a_copy_resumes_and_catches_up_with_what_the_old_store_gained(
    target_backend: str, new_store: NewStore, migrate_cli: Any
) -> None:
    events = fixture_events()
    first = len(events) * 2 // 3
    source = new_store("sqlite")
    load_pre_encryption_store(source, events=events[:first])
    target = new_store(target_backend)
    cli = migrate_cli(source)
    report = migrate(cli, target)
    assert (report["copy"]["copied"], report["copy"]["resumed_after"]) == (first, 0)

    # The old release's servers went on writing meanwhile.
    load_pre_encryption_store(source, events=events[first:], snapshots=False)
    report = migrate(cli, target, "--quick")
    assert report["ok"] is True
    assert (report["copy"]["resumed_after"], report["copy"]["copied"]) == (
        first,
        len(events) - first,
    )
    assert report["events"]["compared"] == len(events) - first
    assert report["read_models"] is None

    report = migrate(cli, target)  # a full check of the whole copy
    assert report["copy"]["copied"] == 0
    assert report["events"]["compared"] == len(events)
    assert all(table["differing_rows"] == 0 for table in report["read_models"])


def test_a_target_holding_anything_else_is_refused(new_store: NewStore, migrate_cli: Any) -> None:
    source = old_store(new_store, "sqlite")
    target = new_store("sqlite")
    cli = migrate_cli(target)
    ran = cli(
        "users", "create", "--email", "someone@example.com", "--password", PASSWORD,
        "--role", "admin",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    cli = migrate_cli(source)
    ran = cli("store", "migrate", "--to", target)
    assert ran.code == 1
    assert "error: migration_refused:" in ran.err and "not a copy of this source" in ran.err

    ran = cli("store", "migrate", "--to", source)
    assert ran.code == 2 and "the store PREP_ES_DATABASE_URL names" in ran.err

    # A store of this release is no source: its claims are keyed already.
    cli = migrate_cli(target)
    ran = cli("store", "migrate", "--to", new_store("sqlite"))
    assert ran.code == 1
    assert "error: not_a_store_written_before_encryption:" in ran.err

    cli = migrate_cli(f"sqlite:///{Path(source.removeprefix('sqlite:///')).parent}/none.db")
    ran = cli("store", "migrate", "--to", new_store("sqlite"))
    assert ran.code == 1 and "there is no database file" in ran.err


def test_verification_finds_a_copy_that_differs_or_holds_plain_text(
    new_store: NewStore,
) -> None:
    """A target written by hand: every event copied as the migration copies it, but the
    notes of one booking changed, and another booking's event stored unsealed."""
    source_url = old_store(new_store, "sqlite")
    target_url = new_store("sqlite")
    source = open_source_store(Settings(database_url=source_url))
    target = open_application(Settings(database_url=target_url, master_key=MASTER_KEY))
    try:
        migration = StoreMigration(source, target)
        requested = [
            row.notification_id
            for row in fixture_events()
            if row.topic == "Booking.BookingRequested"
        ]
        changed, unsealed = requested[0], requested[1]
        stored = []
        for notification in source.notifications(0, None, 10_000):
            transformed = migration.transform.transform(notification).stored
            event = source.mapper.to_domain_event(transformed)
            if notification.id == changed:
                event = event.model_copy(update={"notes": "Changed on the way"})  # type: ignore[attr-defined]
            copied = target.mapper.to_stored_event(event)
            if notification.id == unsealed:
                copied = source.mapper.to_stored_event(event)
            stored.append(copied)
        target.recorder.insert_events(stored)
        check = migration.verify(up_to_source_position=source.position())
    finally:
        target.close()
        source.close()
    assert check.differing == 2
    assert check.compared == len(fixture_events())
    first, second = check.differences
    assert "Booking.BookingRequested" in first and "the decoded payloads differ" in first
    assert "Booking.BookingRequested" in second and "['notes'] stored in plain text" in second


def test_claims_move_to_the_id_their_keyed_digest_derives(
    new_store: NewStore, migrate_cli: Any
) -> None:
    source = old_store(new_store, "sqlite")
    target = new_store("sqlite")
    migrate(migrate_cli(source), target)
    app = open_application(Settings(database_url=target, master_key=MASTER_KEY))
    try:
        for email, registered in users().items():
            claim = app.repository.get(EmailClaim.create_id(email_digest=app.email_digest(email)))
            assert isinstance(claim, EmailClaim)
            assert claim.held_by(
                app.keyed_digest(EmailClaim.holder_message(UUID(registered["id"])))
            )
            assert claim.email_digest == app.email_digest(email) != email
    finally:
        app.close()
