"""``prep-es keys``: a new master key; a rotation in place while a server reads and
writes through it (both backends); an embedded rotation that makes its key, keeps the
old one for backups, finishes when interrupted and waits for the processes using the
database; the status of the key table, and erasures applied again after an old backup
of it comes back."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregates.user import User
from prep_es.store.eventstore import (
    PrepApplication,
    application_env,
    datastore_of,
    open_application,
)
from prep_es.store.personal_keys import (
    KEYS_TABLE,
    KeyRing,
    MasterKey,
    MasterKeyError,
    next_master_key_path,
    previous_master_key_path,
)
from prep_es.store.settings import Settings
from projections.locks import FileRunnerLock, lock_file_path
from tests.cli.running import RunCli, cli_runner
from tests.cli.test_serve import Server, environment, free_port
from tests.support import PASSWORD, MutableClock, create_user, open_test_runtime
from tests.waiting import wait_until

JWT_SECRET = "keys-test-secret-Hq4Wn8Zr2Tb6Lm1Kx9Vd3Pf7"
API = "/api/v1"
READERS = 8
ROUND_TIMEOUT_S = 120.0


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli(database_url, **variables)``: ``prep-es`` in-process with those settings."""

    def runner(database_url: str, **variables: str) -> RunCli:
        run = cli_runner(monkeypatch, capsys, database_url)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return run

    return runner


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """``start_server(database_url, **variables)``: a running ``prep-es serve``."""
    servers: list[Server] = []

    def start(database_url: str, **variables: str) -> Server:
        port = free_port()
        log_path = tmp_path / f"serve-{port}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prep_es.cli", "serve", "--port", str(port)],
                cwd=tmp_path,
                env=environment(database_url, PREP_ES_JWT_SECRET=JWT_SECRET, **variables),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        server = Server(process=process, port=port, log_path=log_path)
        servers.append(server)
        server.wait_until_healthy()
        return server

    yield start
    for server in servers:
        server.client.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def keys_json(cli: RunCli, *arguments: str, code: int = 0) -> dict[str, Any]:
    ran = cli("keys", *arguments, "--json")
    assert ran.code == code, ran.err + ran.out
    answer: dict[str, Any] = json.loads(ran.out)
    return answer


def wrapped_by(status: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {
        entry["master_key_id"]: (entry["data_keys"], entry["key"]) for entry in status["wrapped_by"]
    }


def signs_in(server: Server, email: str, min_position: int = 0) -> None:
    answer = server.client.post(
        f"{API}/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"X-Prep-Min-Position": str(min_position)},
    )
    assert answer.status_code == 200, (email, answer.text)
    me = server.client.get(
        f"{API}/users/me", headers={"Authorization": f"Bearer {answer.json()['access_token']}"}
    )
    assert me.status_code == 200 and me.json()["email"] == email, me.text


def test_generate_prints_a_new_master_key_each_time(cli: Any, sqlite_url: str) -> None:
    run = cli(sqlite_url)
    first, second = run("keys", "generate"), run("keys", "generate")
    assert first.code == second.code == 0
    assert first.out != second.out
    assert len(MasterKey.parse(first.out).secret) == 32


@pytest.mark.postgres
def test_generate_needs_no_master_key_where_every_other_command_does(
    cli: Any, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It is what an operator runs to get the key PostgreSQL mode refuses to start
    without, with PREP_ES_DATABASE_URL already set."""
    run = cli(fresh_postgres_url)
    monkeypatch.delenv("PREP_ES_MASTER_KEY")
    generated = run("keys", "generate")
    assert generated.code == 0, generated.err
    MasterKey.parse(generated.out)
    refused = run("keys", "status")
    assert refused.code == 2
    assert "PREP_ES_MASTER_KEY is required" in refused.err


def test_rotation_in_place_while_a_server_reads_and_writes_through_it(
    database_url: str, cli: Any, start_server: Any
) -> None:
    old, new = MasterKey.generate().encoded(), MasterKey.generate().encoded()
    runtime = open_test_runtime(database_url, MutableClock(), master_key=old)
    emails = [f"reader{number}@example.com" for number in range(READERS)]
    for email in emails:
        create_user(runtime, "customer", email)
    head = runtime.app.position()
    runtime.close()

    both = {"PREP_ES_MASTER_KEY": new, "PREP_ES_PREVIOUS_MASTER_KEY": old}
    server = start_server(database_url, **both)
    for email in emails:
        signs_in(server, email, head)
    run = cli(database_url, **both)
    before = keys_json(run, "status")
    old_id, new_id = MasterKey.parse(old).key_id, MasterKey.parse(new).key_id
    assert wrapped_by(before)[old_id] == (READERS + 1, "previous")  # + the email index's

    failures: list[str] = []
    rounds = [0]
    stopping = threading.Event()

    def read_and_register() -> None:
        while not stopping.is_set():
            try:
                for email in emails:
                    signs_in(server, email)
                registered = server.client.post(
                    f"{API}/auth/register",
                    json={
                        "email": f"new{rounds[0]}@example.com",
                        "password": PASSWORD,
                        "full_name": "New Reader",
                        "role": "customer",
                    },
                )
                assert registered.status_code == 201, registered.text
            except (AssertionError, httpx.HTTPError) as error:
                failures.append(repr(error))
                return
            rounds[0] += 1

    reader = threading.Thread(target=read_and_register)
    reader.start()
    try:
        wait_until(lambda: rounds[0] >= 1 or failures, ROUND_TIMEOUT_S, "a round of reads")
        rotation = keys_json(run, "rotate")
        at_rotation = rounds[0]
        wait_until(
            lambda: rounds[0] >= at_rotation + 2 or failures,
            ROUND_TIMEOUT_S,
            "two rounds of reads after the rotation",
        )
    finally:
        stopping.set()
        reader.join()
    assert failures == []
    assert rotation["rewrapped"] == READERS + 1
    assert rotation["master_key_id"] == new_id and rotation["replaced_key_id"] == old_id
    after = keys_json(run, "status")
    assert list(wrapped_by(after)) == [new_id]
    assert after["data_keys"] == READERS + 1 + rounds[0]
    assert server.stop() == 0

    # Without the previous key every data key opens; with the old key alone, none does.
    server = start_server(database_url, PREP_ES_MASTER_KEY=new)
    for email in [*emails, "new0@example.com"]:
        signs_in(server, email)
    assert server.stop() == 0
    refused = cli(database_url, PREP_ES_MASTER_KEY=old)("projections", "status")
    assert refused.code == 2 and "error: master_key:" in refused.err


def user_email(app: PrepApplication, email: str) -> str | None:
    """The email of the user registered as ``email``, as the store reads it now."""
    for user_id in registered_users(app):
        user = app.repository.get(user_id)
        assert isinstance(user, User)
        if user.email == email:
            return user.email
    return None


def registered_users(app: PrepApplication) -> list[Any]:
    return [
        notification.originator_id
        for notification in app.notifications(0, None, 1000, ["User.UserRegistered"])
    ]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def embedded_store_with_a_host(sqlite_url: str) -> tuple[Path, Path]:
    """The database file and its key file, the host ``host@example.com`` registered."""
    runtime = open_test_runtime(sqlite_url, MutableClock())
    create_user(runtime, "host", "host@example.com")
    runtime.close()
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    return database, Path(f"{database}.master-key")


def reads_the_host(settings: Settings) -> bool:
    app = open_application(settings)
    try:
        return user_email(app, "host@example.com") == "host@example.com"
    finally:
        app.close()


def test_an_embedded_rotation_makes_its_key_and_keeps_the_old_one_for_backups(
    sqlite_url: str, cli: Any, tmp_path: Path
) -> None:
    _, key_path = embedded_store_with_a_host(sqlite_url)
    old = MasterKey.parse(key_path.read_text())
    run = cli(sqlite_url)
    rotation = keys_json(run, "rotate")
    new = MasterKey.parse(key_path.read_text())
    assert rotation["rewrapped"] == rotation["data_keys"] == 2  # the host, the email index
    assert (rotation["master_key_id"], rotation["replaced_key_id"]) == (new.key_id, old.key_id)
    previous = previous_master_key_path(key_path)
    assert rotation["previous_key_path"] == str(previous)
    assert MasterKey.parse(previous.read_text()) == old != new
    assert mode(key_path) == mode(previous) == 0o600
    assert not next_master_key_path(key_path).exists()
    assert list(wrapped_by(keys_json(run, "status"))) == [new.key_id]
    assert reads_the_host(Settings(database_url=sqlite_url))

    refused = run("keys", "rotate")
    assert refused.code == 1 and "error: rotation_refused:" in refused.err
    assert str(previous) in refused.err
    previous.rename(tmp_path / "kept-with-the-backups.key")
    again = keys_json(run, "rotate")
    assert again["replaced_key_id"] == new.key_id and again["rewrapped"] == 2


def test_a_backup_taken_before_an_embedded_rotation_opens_with_the_key_of_its_time(
    sqlite_url: str, cli: Any, tmp_path: Path
) -> None:
    database, key_path = embedded_store_with_a_host(sqlite_url)
    old = MasterKey.parse(key_path.read_text())
    backup = tmp_path / "backup.db"
    shutil.copy(database, backup)
    keys_json(cli(sqlite_url), "rotate")
    new = MasterKey.parse(key_path.read_text())

    backup_url = f"sqlite:///{backup}"
    assert reads_the_host(Settings(database_url=backup_url, master_key=old.encoded()))
    with pytest.raises(MasterKeyError):
        open_application(Settings(database_url=backup_url, master_key=new.encoded()))

    # Restored in place, it is brought under the current key by a rotation given the key
    # of its time.
    shutil.copy(backup, database)
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    with pytest.raises(MasterKeyError):
        open_application(Settings(database_url=sqlite_url))
    restored = keys_json(cli(sqlite_url, PREP_ES_PREVIOUS_MASTER_KEY=old.encoded()), "rotate")
    assert (restored["master_key_id"], restored["rewrapped"]) == (new.key_id, 2)
    assert MasterKey.parse(key_path.read_text()) == new
    assert reads_the_host(Settings(database_url=sqlite_url))


def test_an_interrupted_embedded_rotation_finishes_when_run_again(
    sqlite_url: str, cli: Any
) -> None:
    _, key_path = embedded_store_with_a_host(sqlite_url)
    next_path = next_master_key_path(key_path)
    run = cli(sqlite_url)

    # Stopped once the new key was written, before anything was rewrapped.
    written = MasterKey.generate()
    next_path.write_text(written.encoded())
    rotation = keys_json(run, "rotate")
    assert rotation["master_key_id"] == written.key_id and rotation["rewrapped"] == 2
    previous_master_key_path(key_path).unlink()

    # Stopped after every data key was rewrapped, before the new key was put in place:
    # a process started now reads them all, and the command puts the key in place.
    current = MasterKey.parse(key_path.read_text())
    rewrapped_with = MasterKey.generate()
    next_path.write_text(rewrapped_with.encoded())
    settings = Settings(database_url=sqlite_url)
    app = PrepApplication(env=application_env(settings))
    app.open_personal_data(KeyRing(current=rewrapped_with, previous=current))
    assert app.data_keys.rewrap_all() == 2
    app.close()
    assert reads_the_host(settings)
    rotation = keys_json(run, "rotate")
    assert (rotation["master_key_id"], rotation["rewrapped"]) == (rewrapped_with.key_id, 0)
    assert MasterKey.parse(key_path.read_text()) == rewrapped_with
    assert not next_path.exists()


def test_an_embedded_rotation_waits_for_the_processes_using_the_database(
    sqlite_url: str, cli: Any
) -> None:
    open_application(Settings(database_url=sqlite_url)).close()
    sweeper = FileRunnerLock(lock_file_path(sqlite_url.removeprefix("sqlite:///"), "sweeper"))
    assert sweeper.try_acquire()
    run = cli(sqlite_url)
    try:
        refused = run("keys", "rotate")
    finally:
        sweeper.release()
    assert refused.code == 2 and "holds the sweeper lock" in refused.err
    assert run("keys", "rotate").code == 0


def key_rows(app: PrepApplication) -> list[tuple[Any, ...]]:
    with datastore_of(app).transaction(commit=False) as cursor:
        cursor.execute(
            "SELECT subject_id, wrapped_key, master_key_id, created_at, erased_at "
            f"FROM {KEYS_TABLE}"
        )
        rows = cursor.fetchall()
    return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in rows]


def restore_key_rows(app: PrepApplication, rows: list[tuple[Any, ...]], mark: str) -> None:
    """What restoring an old backup of the key table does."""
    with datastore_of(app).transaction(commit=True) as cursor:
        cursor.execute(f"DELETE FROM {KEYS_TABLE}")
        for row in rows:
            cursor.execute(
                f"INSERT INTO {KEYS_TABLE} (subject_id, wrapped_key, master_key_id, created_at, "
                f"erased_at) VALUES ({', '.join([mark] * 5)})",
                row,
            )


def test_status_finds_erased_users_whose_key_came_back_and_erasures_are_applied_again(
    database_url: str, cli: Any
) -> None:
    key = MasterKey.generate().encoded()
    runtime = open_test_runtime(database_url, MutableClock(), master_key=key)
    erased = create_user(runtime, "customer", "erased@example.com")
    create_user(runtime, "customer", "kept@example.com")
    app = runtime.app
    backup = key_rows(app)
    user = app.repository.get(erased.user_id)
    assert isinstance(user, User)
    user.erase(reason="asked to be forgotten", forced=False, at=datetime.now(UTC))
    app.save(user)
    app.destroy_personal_data(erased.user_id)
    run = cli(database_url, PREP_ES_MASTER_KEY=key)
    clean = keys_json(run, "status")
    assert (clean["erased"], clean["erased_users"], clean["erased_users_holding_keys"]) == (
        1,
        1,
        [],
    )

    restore_key_rows(app, backup, "%s" if database_url.startswith("postgresql") else "?")
    runtime.close()
    restored = keys_json(run, "status", code=1)
    assert restored["erased_users_holding_keys"] == [str(erased.user_id)]
    text = run("keys", "status")
    assert "run `prep-es keys reapply-erasures`" in text.out

    assert keys_json(run, "reapply-erasures") == {"destroyed": [str(erased.user_id)]}
    assert keys_json(run, "status")["erased_users_holding_keys"] == []
    app = open_application(Settings(database_url=database_url, master_key=key))
    try:
        registered = next(iter(app.events.get(erased.user_id)))
        assert registered.erased_fields == {"email", "full_name", "password_hash"}  # type: ignore[attr-defined]
        assert user_email(app, "kept@example.com") == "kept@example.com"
    finally:
        app.close()
    assert keys_json(run, "reapply-erasures") == {"destroyed": []}
