"""Personal fields sealed per person, on both backends: stored as envelopes and opened on
load; read as erased (``None``, named in ``erased_fields``) once their subject's data key
is destroyed; bound to their event and field; the master key checked at start, rotated
without touching events; data keys made once per subject, never again after erasure, and
cached within a bound."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from eventsourcing.postgres import PostgresDatastore

from aggregates.base import EventMetadata
from aggregates.booking import Booking
from aggregates.idempotency import IdempotencyRecord
from aggregates.user import PersonalDetails, User
from prep_es.store.eventstore import (
    PrepApplication,
    datastore_of,
    master_key_path,
    open_application,
)
from prep_es.store.personal_cipher import ENVELOPE_KEY, is_envelope
from prep_es.store.personal_keys import (
    KEYS_TABLE,
    DataKeys,
    MasterKey,
    MasterKeyError,
    SubjectErased,
)
from prep_es.store.serialization import OrjsonTranscoder, PydanticMapper
from prep_es.store.settings import Settings, SqliteLocation
from tests.cli.running import cli_runner
from tests.support import store_settings

EMAIL = "ana.lima@example.com"
FULL_NAME = "Ana Lima"
PASSWORD_HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$not-a-real-hash"
PLAINTEXTS = (EMAIL, FULL_NAME, PASSWORD_HASH)
USER_PERSONAL_FIELDS = frozenset({"email", "full_name", "password_hash"})
ERASED_AT = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Without the aggregate cache: every load here reads the store."""
    return store_settings(database_url, aggregate_cache_size=0)


@pytest.fixture
def store(settings: Settings) -> Iterator[PrepApplication]:
    app = open_application(settings)
    yield app
    app.close()


def keyed(settings: Settings, **keys: str) -> Settings:
    """``settings`` with other master keys."""
    return Settings.model_validate({**settings.model_dump(), **keys})


def new_user() -> User:
    return User.register(
        email=EMAIL, full_name=FULL_NAME, role="customer", password_hash=PASSWORD_HASH
    )


def stored_states(app: PrepApplication, aggregate_id: UUID) -> list[dict[str, Any]]:
    """The aggregate's events as stored, decoded from JSON only."""
    return [orjson.loads(stored.state) for stored in app.recorder.select_events(aggregate_id)]


def assert_holds_none_of(raw: bytes, plaintexts: tuple[str, ...]) -> None:
    for plaintext in plaintexts:
        for spelled in {plaintext, plaintext.lower(), orjson.dumps(plaintext).decode()}:
            assert spelled.encode() not in raw, spelled


def assert_no_ciphertext(value: Any) -> None:
    """No envelope, at any depth, of a value handed to the domain."""
    assert not is_envelope(value), value
    if isinstance(value, dict):
        assert ENVELOPE_KEY not in value
        for item in value.values():
            assert_no_ciphertext(item)
    elif isinstance(value, list | tuple | frozenset | set):
        for item in value:
            assert_no_ciphertext(item)


def key_rows(app: PrepApplication, subject: UUID) -> list[tuple[Any, ...]]:
    """The key table's rows for ``subject``: (wrapped key, master key id, erased at)."""
    datastore = datastore_of(app)
    postgres = isinstance(datastore, PostgresDatastore)
    mark = "%s" if postgres else "?"
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT wrapped_key, master_key_id, erased_at FROM {KEYS_TABLE} "
            f"WHERE subject_id = {mark}",
            (subject if postgres else str(subject),),
        )
        rows = cursor.fetchall()
    return [
        tuple(row[name] for name in ("wrapped_key", "master_key_id", "erased_at"))
        if isinstance(row, dict)
        else tuple(row)
        for row in rows
    ]


# --- sealed, and opened on load ----------------------------------------------------------


def test_a_users_personal_fields_are_stored_sealed_and_load_back(store: PrepApplication) -> None:
    user = new_user()
    user.change_full_name("Ana Lima Souza")
    store.save(user)

    raw = b"".join(stored.state for stored in store.recorder.select_events(user.id))
    assert_holds_none_of(raw, (*PLAINTEXTS, "Ana Lima Souza"))
    registered, renamed = stored_states(store, user.id)
    for name in USER_PERSONAL_FIELDS:
        assert is_envelope(registered[name]), name
        assert registered[name]["subject"] == str(user.id)
    assert is_envelope(renamed["full_name"])
    assert registered["role"] == "customer"  # what is not personal stays readable

    loaded = store.repository.get(user.id)
    assert isinstance(loaded, User)
    assert loaded.details() == PersonalDetails(EMAIL, "Ana Lima Souza", PASSWORD_HASH)
    events = list(store.events.get(user.id))
    assert [event.erased_fields for event in events] == [frozenset(), frozenset()]
    assert events[0].email == EMAIL  # type: ignore[attr-defined]


def test_a_field_whose_subject_is_another_field_or_the_actor_is_sealed_for_them(
    store: PrepApplication,
) -> None:
    customer, host = uuid4(), uuid4()
    record = IdempotencyRecord(
        scope="s", key="k", request_hash="h", result={"email": EMAIL}, subject_id=customer
    )
    store.save(record)
    [state] = stored_states(store, record.id)
    assert state["result"]["subject"] == str(customer)

    declined = Booking.BookingDeclined(
        originator_id=uuid4(),
        originator_version=2,
        timestamp=ERASED_AT,
        reason="Ana was rude on the phone",
        metadata=EventMetadata(actor_id=host, actor_role="host"),
    )
    stored = store.mapper.to_stored_event(declined)
    sealed = orjson.loads(stored.state)
    assert sealed["reason"]["subject"] == str(host)
    assert_holds_none_of(stored.state, ("Ana was rude",))
    assert store.mapper.to_domain_event(stored) == declined

    store.destroy_personal_data(host)
    erased = store.mapper.to_domain_event(stored)
    assert erased.reason is None  # type: ignore[attr-defined]
    assert erased.erased_fields == frozenset({"reason"})  # type: ignore[attr-defined]
    assert store.repository.get(record.id).result == {"email": EMAIL}  # not the host's


def test_an_event_written_before_sealing_reads_as_it_is(store: PrepApplication) -> None:
    """A store not yet migrated holds plaintext personal fields: they still load."""
    user = new_user()
    unsealed = PydanticMapper(transcoder=OrjsonTranscoder())
    store.recorder.insert_events([unsealed.to_stored_event(e) for e in user.collect_events()])
    [state] = stored_states(store, user.id)
    assert state["email"] == EMAIL
    loaded = store.repository.get(user.id)
    assert loaded.details() == PersonalDetails(EMAIL, FULL_NAME, PASSWORD_HASH)


# --- erased --------------------------------------------------------------------------------


def test_after_erasure_personal_fields_load_as_none_never_ciphertext(
    store: PrepApplication,
) -> None:
    user = new_user()
    user.change_email("ana@elsewhere.example")
    store.save(user)
    store.take_snapshot(user.id)
    user.erase(reason="asked to be forgotten", forced=False, at=ERASED_AT)
    store.save(user)
    store.destroy_personal_data(user.id)

    events = list(store.events.get(user.id))
    assert [type(e).__name__ for e in events] == ["UserRegistered", "EmailChanged", "UserErased"]
    registered, changed, erased = events
    assert registered.erased_fields == USER_PERSONAL_FIELDS
    assert (registered.email, registered.full_name, registered.password_hash) == (None,) * 3  # type: ignore[attr-defined]
    assert registered.role == "customer"  # type: ignore[attr-defined]
    assert changed.erased_fields == {"email"}
    assert changed.email is None  # type: ignore[attr-defined]
    assert erased.erased_fields == frozenset()
    assert erased.reason == "asked to be forgotten"  # type: ignore[attr-defined]
    for event in events:
        assert_no_ciphertext(event.model_dump())

    # From the snapshot taken before the erasure and the events after it; from the
    # events alone, at a version before the snapshot's.
    assert store.snapshots is not None
    [snapshot] = store.snapshots.get(user.id)
    assert snapshot.originator_version == 2
    loaded = store.repository.get(user.id)
    assert isinstance(loaded, User)
    assert loaded.erased and not loaded.active
    assert (loaded.email, loaded.full_name, loaded.password_hash) == (None, None, None)
    assert_no_ciphertext(vars(loaded))
    first = store.repository.get(user.id, version=1)
    assert (first.email, first.full_name, first.password_hash) == (None, None, None)
    assert not first.erased
    assert_no_ciphertext(vars(first))


def test_an_erased_subjects_data_key_is_a_tombstone_that_takes_no_new_key(
    store: PrepApplication,
) -> None:
    user = new_user()
    store.save(user)
    never_had_one = uuid4()
    store.destroy_personal_data(user.id)
    store.destroy_personal_data(never_had_one)
    store.destroy_personal_data(user.id)  # again: still erased, once

    for subject in (user.id, never_had_one):
        assert store.data_keys.for_reading(subject) is None
        assert store.data_keys.is_erased(subject)
        with pytest.raises(SubjectErased):
            store.data_keys.for_writing(subject)
        [(wrapped, key_id, erased_at)] = key_rows(store, subject)
        assert (wrapped, key_id) == (None, None) and erased_at is not None

    # Nothing personal can be written about them again, by any path.
    position = store.position()
    user.change_full_name("Ana Again")
    with pytest.raises(SubjectErased):
        store.save(user)
    assert store.position() == position
    # Another process, its cache cold, finds the tombstone too.
    other = DataKeys(datastore_of(store), store.data_keys.key_ring)
    with pytest.raises(SubjectErased):
        other.for_writing(user.id)


# --- bound to their event and field ---------------------------------------------------------


def test_an_envelope_moved_to_another_field_or_event_fails_loudly(
    store: PrepApplication,
) -> None:
    user = new_user()
    user.change_full_name("Ana Lima Souza")
    store.save(user)
    registered, renamed = store.recorder.select_events(user.id)
    state = orjson.loads(registered.state)

    def with_state(stored: StoredEvent, changed: dict[str, Any]) -> StoredEvent:
        return dataclasses.replace(stored, state=orjson.dumps(changed))

    swapped = {**state, "email": state["full_name"], "full_name": state["email"]}
    renamed_state = orjson.loads(renamed.state)
    moved = {**renamed_state, "full_name": state["full_name"]}
    another_user = new_user()
    other_id = dataclasses.replace(registered, originator_id=another_user.id)
    for forged in (
        with_state(registered, swapped),  # another field
        with_state(renamed, moved),  # another event of the same aggregate
        other_id,  # the same event's state under another aggregate's id
    ):
        with pytest.raises(MapperDeserialisationError, match="does not open where it is stored"):
            store.mapper.to_domain_event(forged)
    tampered = dict(state["email"])
    tampered[ENVELOPE_KEY] = tampered[ENVELOPE_KEY][:-4] + "AAAA"
    with pytest.raises(MapperDeserialisationError, match="does not open"):
        store.mapper.to_domain_event(with_state(registered, {**state, "email": tampered}))


# --- snapshots --------------------------------------------------------------------------------


def test_a_users_snapshot_seals_its_personal_attributes(store: PrepApplication) -> None:
    user = new_user()
    store.save(user)
    store.take_snapshot(user.id)
    assert store.snapshots is not None
    [snapshot] = store.snapshots.recorder.select_events(user.id)
    assert_holds_none_of(snapshot.state, PLAINTEXTS)
    aggregate_state = orjson.loads(snapshot.state)["state"]
    for name in USER_PERSONAL_FIELDS:
        assert is_envelope(aggregate_state[name]), name
    assert aggregate_state["role"] == "customer"

    loaded = store.repository.get(user.id)
    assert loaded.details() == PersonalDetails(EMAIL, FULL_NAME, PASSWORD_HASH)

    # A snapshot's sealed attribute does not open in an event's field (nor elsewhere).
    [registered] = store.recorder.select_events(user.id)
    state = orjson.loads(registered.state)
    forged = {**state, "email": aggregate_state["email"]}
    with pytest.raises(MapperDeserialisationError, match="does not open"):
        store.mapper.to_domain_event(dataclasses.replace(registered, state=orjson.dumps(forged)))


# --- the master key ------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgresql_without_a_master_key_does_not_open(fresh_postgres_url: str) -> None:
    with pytest.raises(MasterKeyError, match="PREP_ES_MASTER_KEY is required"):
        open_application(Settings(database_url=fresh_postgres_url))


def test_a_wrong_master_key_is_refused_at_open_naming_it(settings: Settings) -> None:
    app = open_application(settings)
    app.save(new_user())
    app.close()
    wrong = MasterKey.generate()

    with pytest.raises(MasterKeyError, match=f"neither PREP_ES_MASTER_KEY \\({wrong.key_id}\\)"):
        open_application(keyed(settings, master_key=wrong.encoded()))

    reopened = open_application(settings)  # the right one still opens it
    reopened.close()


def test_a_data_key_under_a_master_key_the_process_lacks_is_refused_at_open(
    settings: Settings,
) -> None:
    """Most data keys open, one does not (a process restarted with the old key after
    another wrapped a new person's key with the new one): the store does not open,
    rather than each request about that person failing, and its projectors stalling."""
    old, new = MasterKey.generate(), MasterKey.generate()
    app = open_application(keyed(settings, master_key=old.encoded()))
    app.save(new_user(), new_user())
    app.close()
    app = open_application(
        keyed(settings, master_key=new.encoded(), previous_master_key=old.encoded())
    )
    app.save(new_user())
    app.close()

    with pytest.raises(MasterKeyError, match=f"wrapped by master key {new.key_id}"):
        open_application(keyed(settings, master_key=old.encoded()))
    reopened = open_application(
        keyed(settings, master_key=old.encoded(), previous_master_key=new.encoded())
    )
    reopened.close()


def test_the_cli_says_the_master_key_is_wrong_before_it_reads_anything(
    database_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = open_application(settings)
    app.save(new_user())
    app.close()
    cli = cli_runner(monkeypatch, capsys, database_url)
    monkeypatch.setenv("PREP_ES_MASTER_KEY", MasterKey.generate().encoded())

    ran = cli("replay", str(uuid4()))
    assert ran.code == 2
    assert ran.out == ""
    assert ran.err.startswith("error: master_key: the data key of ")
    assert "Traceback" not in ran.err


def test_embedded_mode_keeps_its_generated_master_key_beside_the_database(
    sqlite_url: str,
) -> None:
    settings = Settings(database_url=sqlite_url)
    location = settings.database
    assert isinstance(location, SqliteLocation)
    path = master_key_path(location)
    assert not path.exists()

    app = open_application(settings)
    user = new_user()
    app.save(user)
    app.close()
    assert path.name == Path(location.path).name + ".master-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = MasterKey.parse(path.read_text())

    reopened = open_application(settings)
    assert reopened.repository.get(user.id).details().email == EMAIL
    reopened.close()
    assert MasterKey.parse(path.read_text()) == key  # the same key, not a new one
    explicit = open_application(keyed(settings, master_key=key.encoded()))
    explicit.close()


def test_a_lost_embedded_master_key_is_a_startup_error(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url)
    app = open_application(settings)
    app.save(new_user())
    app.close()
    location = settings.database
    assert isinstance(location, SqliteLocation)
    path = master_key_path(location)
    path.unlink()

    with pytest.raises(MasterKeyError, match=r"is missing.*restore the file"):
        open_application(settings)
    assert not path.exists()  # not replaced by a key that opens nothing


def test_a_damaged_embedded_master_key_file_is_a_startup_error(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url)
    open_application(settings).close()
    location = settings.database
    assert isinstance(location, SqliteLocation)
    master_key_path(location).write_text("not a key\n")

    with pytest.raises(MasterKeyError, match="master-key"):
        open_application(settings)


def test_a_rotation_rewraps_every_data_key_and_leaves_the_events_alone(
    settings: Settings,
) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    before = keyed(settings, master_key=old.encoded())
    app = open_application(before)
    users = [new_user() for _ in range(3)]
    app.save(*users)
    digest = app.email_digest(EMAIL)
    app.destroy_personal_data(users[2].id)
    events_before = [app.recorder.select_events(user.id) for user in users]
    app.close()

    rotating = keyed(settings, master_key=new.encoded(), previous_master_key=old.encoded())
    app = open_application(rotating)  # data keys under the previous key still open
    assert app.repository.get(users[0].id).details().email == EMAIL
    # Two users' keys and the email digests' key; the erased user has none to rewrap.
    assert app.data_keys.rewrap_all() == 3
    assert app.data_keys.rewrap_all() == 0
    assert [app.recorder.select_events(user.id) for user in users] == events_before
    app.close()

    after = keyed(settings, master_key=new.encoded())
    app = open_application(after)
    for user in users[:2]:
        assert app.repository.get(user.id).details() == PersonalDetails(
            EMAIL, FULL_NAME, PASSWORD_HASH
        )
    assert app.repository.get(users[2].id).email is None
    assert app.email_digest(EMAIL) == digest
    for user in users[:2]:
        [(_, key_id, _)] = key_rows(app, user.id)
        assert key_id == new.key_id
    app.close()
    with pytest.raises(MasterKeyError):
        open_application(before)


# --- data keys -------------------------------------------------------------------------------


def test_concurrent_first_writes_for_one_subject_make_one_key(store: PrepApplication) -> None:
    """Eight writers, each with a cache of its own as separate processes have, ask for
    a new subject's key at once: one key is made, and every writer gets it."""
    subject = uuid4()
    writers = [DataKeys(datastore_of(store), store.data_keys.key_ring) for _ in range(8)]
    start = threading.Barrier(len(writers))
    keys: list[bytes] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def write(data_keys: DataKeys) -> None:
        try:
            start.wait()
            key = data_keys.for_writing(subject)
        except Exception as error:
            with lock:
                errors.append(error)
        else:
            with lock:
                keys.append(key)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(keys) == len(writers)
    assert len(set(keys)) == 1
    assert len(key_rows(store, subject)) == 1
    assert store.data_keys.for_reading(subject) == keys[0]


def test_the_key_cache_keeps_the_most_recently_used_keys_within_its_bound(
    store: PrepApplication,
) -> None:
    cached = DataKeys(datastore_of(store), store.data_keys.key_ring, cache_size_max=4)
    subjects = [uuid4() for _ in range(10)]
    keys = [cached.for_writing(subject) for subject in subjects]
    # Another process erases them all: only the last four are still cached here.
    for subject in subjects:
        store.destroy_personal_data(subject)
    assert [cached.for_reading(subject) for subject in subjects[-4:]] == keys[-4:]
    assert [cached.for_reading(subject) for subject in subjects[:6]] == [None] * 6
    # Reading those six again filled the cache with them, pushing the four out.
    assert [cached.for_reading(subject) for subject in subjects[-4:]] == [None] * 4


def test_the_email_digest_is_keyed_by_the_store(database_url: str, settings: Settings) -> None:
    """The same email has one digest per store (so a claim is found again), which nobody
    can compute from the email without the store's secret."""
    app = open_application(settings)
    digest = app.email_digest(EMAIL)
    app.close()
    again = open_application(settings)
    assert again.email_digest(EMAIL) == digest
    assert again.email_digest("bob@example.com") != digest
    again.close()
    assert digest != hashlib.sha256(EMAIL.encode()).hexdigest()
    assert EMAIL not in digest


def test_the_key_file_is_not_readable_by_others_even_with_a_loose_umask(sqlite_url: str) -> None:
    previous = os.umask(0)
    try:
        settings = Settings(database_url=sqlite_url)
        open_application(settings).close()
    finally:
        os.umask(previous)
    location = settings.database
    assert isinstance(location, SqliteLocation)
    assert stat.S_IMODE(master_key_path(location).stat().st_mode) == 0o600
