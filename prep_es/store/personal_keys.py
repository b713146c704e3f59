"""Per-person data keys, wrapped by the master key, in a table that is not append-only.

Each subject (a user's id) gets a random 256-bit data key the first time something
personal about them is written. The key is stored wrapped (AES-256-GCM under the master
key, the subject's id as associated data) in ``personal_data_keys``, one row per subject,
with the id of the master key that wrapped it. Erasing a subject replaces its wrapped key
with NULL and stamps ``erased_at``: the row stays as a tombstone, so that nothing written
later (a process that has not heard of the erasure yet) can create a new key for them.

The master key never touches the table: ``PREP_ES_MASTER_KEY`` (required on PostgreSQL),
or in embedded mode a key generated once beside the database file (mode 0600).
``PREP_ES_PREVIOUS_MASTER_KEY`` lets processes read keys still wrapped by the master key
being rotated out, while ``prep-es keys rotate`` rewraps them.

Unwrapped keys are cached per process (bounded; an entry lives ``KEY_CACHE_TTL_S``), so a
load decrypts without a query; an erasure in another process is seen here within that
time, and at once by the process that erased.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import itertools
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import InternalError
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from prep_es.store.postgres_recorders import (
    SCHEMA_CHANGE_LOCK_KEY,
    DatabaseRefusesWrites,
    new_session_refuses_writes,
    renew_sessions,
)
from prep_es.store.secret_files import read_or_create_secret_file

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
KEYS_TABLE: Final = "personal_data_keys"
KEY_CACHE_SIZE_MAX: Final = 8192
KEY_CACHE_TTL_S: Final = 30.0
PREFETCH_SUBJECTS_MAX: Final = 500
EMAIL_INDEX_SUBJECT: Final = UUID("00000000-0000-4000-8000-00000000e4a1")
"""The subject whose data key is the server's secret for keyed email hashes (see
:meth:`DataKeys.email_digest`): a key like the others, so it is rotated and backed up with
them, and never erased."""


class MasterKeyError(Exception):
    """The master key is missing, malformed, or does not open the stored data keys: a
    startup error, named before any request is served."""


class SubjectErased(Exception):
    """Something personal was to be written about a subject whose key was destroyed."""


@dataclass(frozen=True)
class MasterKey:
    """A 256-bit key that wraps data keys, and its public id (a hash prefix)."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise MasterKeyError(f"a master key is {KEY_BYTES} bytes, base64-encoded")

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def parse(cls, text: str, *, name: str = "PREP_ES_MASTER_KEY") -> MasterKey:
        try:
            secret = base64.urlsafe_b64decode(_padded(text.strip()))
        except (binascii.Error, ValueError) as error:
            raise MasterKeyError(f"{name} is not base64: {error}") from None
        if len(secret) != KEY_BYTES:
            raise MasterKeyError(
                f"{name} holds {len(secret)} bytes; a master key is {KEY_BYTES} bytes, "
                "base64-encoded (make one with: prep-es keys generate)"
            )
        return cls(secret)

    def encoded(self) -> str:
        return base64.urlsafe_b64encode(self.secret).decode()

    @property
    def key_id(self) -> str:
        return hmac.new(self.secret, b"prep-es master key id", hashlib.sha256).hexdigest()[:16]

    def wrap(self, subject: UUID, data_key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + AESGCM(self.secret).encrypt(nonce, data_key, _wrap_context(subject))

    def unwrap(self, subject: UUID, wrapped: bytes) -> bytes:
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return AESGCM(self.secret).decrypt(nonce, sealed, _wrap_context(subject))
        except InvalidTag:
            raise MasterKeyError(
                f"the data key of {subject} does not open with master key {self.key_id}"
            ) from None


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def _wrap_context(subject: UUID) -> bytes:
    return b"prep-es data key:" + subject.bytes


def stored_data_keys_exist(datastore: PostgresDatastore | SQLiteDatastore) -> bool:
    """Whether the store's database holds any data key (its key table may not exist
    yet): asked before a master key is chosen, so a missing key file is not replaced."""
    if isinstance(datastore, PostgresDatastore):
        exists = f"SELECT to_regclass('{KEYS_TABLE}') IS NOT NULL AS found"
    else:
        exists = (
            "SELECT count(*) > 0 AS found FROM sqlite_master "
            f"WHERE type = 'table' AND name = '{KEYS_TABLE}'"
        )
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(exists)
        row = cursor.fetchone()
        assert row is not None
        if not _values(row)[0]:
            return False
        cursor.execute(f"SELECT 1 FROM {KEYS_TABLE} WHERE wrapped_key IS NOT NULL LIMIT 1")
        return cursor.fetchone() is not None


def read_or_create_master_key(path: Path) -> MasterKey:
    """The embedded master key kept in ``path``, made if absent (see
    ``read_or_create_secret_file``)."""
    text = read_or_create_secret_file(path, lambda: MasterKey.generate().encoded() + "\n")
    return MasterKey.parse(text, name=str(path))


def replace_master_key_file(path: Path, key: MasterKey) -> None:
    """Write ``key`` into ``path`` atomically (mode 0600), on disk before this returns."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key.encoded() + "\n")
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable (a crash after a rename returns must not
    bring the old file back)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def next_master_key_path(path: Path) -> Path:
    """Where an embedded rotation keeps the new master key until every data key is
    rewrapped with it (see ``prep_es.store.key_rotation``)."""
    return path.with_name(path.name + ".next")


def previous_master_key_path(path: Path) -> Path:
    """Where an embedded rotation leaves the master key it replaced: it opens backups of
    the database taken before the rotation."""
    return path.with_name(path.name + ".previous")


def read_master_key_file(path: Path) -> MasterKey | None:
    """The master key kept in ``path``, or None if there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return MasterKey.parse(text, name=str(path))


@dataclass(frozen=True)
class KeyRing:
    """The master key data keys are wrapped with, and the one being rotated out."""

    current: MasterKey
    previous: MasterKey | None = None

    def unwrap(self, subject: UUID, wrapped: bytes, key_id: str) -> bytes:
        for master in (self.current, self.previous):
            if master is not None and master.key_id == key_id:
                return master.unwrap(subject, wrapped)
        raise MasterKeyError(
            f"the data key of {subject} is wrapped by master key {key_id}, which is neither "
            f"PREP_ES_MASTER_KEY ({self.current.key_id}) nor PREP_ES_PREVIOUS_MASTER_KEY"
        )


class _KeysSql:
    """The key table's statements in one backend's dialect."""

    def __init__(self, datastore: PostgresDatastore | SQLiteDatastore) -> None:
        self.datastore = datastore
        postgres = isinstance(datastore, PostgresDatastore)
        mark = "%s" if postgres else "?"
        subject_type, bytes_type = ("uuid", "bytea") if postgres else ("text", "blob")
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} ("
            f"subject_id {subject_type} PRIMARY KEY, "
            f"wrapped_key {bytes_type}, master_key_id text, "
            "created_at text NOT NULL, erased_at text)"
        )
        self.create_index = (
            f"CREATE INDEX IF NOT EXISTS {KEYS_TABLE}_by_master_key ON {KEYS_TABLE} (master_key_id)"
        )
        self.select = (
            f"SELECT wrapped_key, master_key_id FROM {KEYS_TABLE} WHERE subject_id = {mark}"
        )
        self.insert = (
            f"INSERT INTO {KEYS_TABLE} (subject_id, wrapped_key, master_key_id, created_at) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (subject_id) DO NOTHING"
        )
        self.erase = (
            f"INSERT INTO {KEYS_TABLE} (subject_id, created_at, erased_at) "
            f"VALUES ({mark}, {mark}, {mark}) ON CONFLICT (subject_id) DO UPDATE "
            "SET wrapped_key = NULL, master_key_id = NULL, "
            f"erased_at = coalesce({KEYS_TABLE}.erased_at, excluded.erased_at)"
        )
        self.all_wrapped = (
            f"SELECT subject_id, wrapped_key, master_key_id FROM {KEYS_TABLE} "
            "WHERE wrapped_key IS NOT NULL ORDER BY subject_id"
        )
        self.rewrap = (
            f"UPDATE {KEYS_TABLE} SET wrapped_key = {mark}, master_key_id = {mark} "
            f"WHERE subject_id = {mark} AND master_key_id = {mark}"
        )
        self.one_wrapped = (
            f"SELECT subject_id, wrapped_key, master_key_id FROM {KEYS_TABLE} "
            "WHERE wrapped_key IS NOT NULL LIMIT 1"
        )
        self.mark = mark
        self.count_wrapped = (
            f"SELECT master_key_id, count(*) AS data_keys FROM {KEYS_TABLE} "
            "WHERE wrapped_key IS NOT NULL GROUP BY master_key_id ORDER BY master_key_id"
        )
        self.count_erased = f"SELECT count(*) AS erased FROM {KEYS_TABLE} WHERE wrapped_key IS NULL"
        self.holds_key = (
            f"SELECT 1 AS held FROM {KEYS_TABLE} "
            f"WHERE subject_id = {mark} AND wrapped_key IS NOT NULL"
        )
        self.postgres = postgres

    def one_wrapped_by_another(self, count: int) -> str:
        """One data key wrapped by none of ``count`` master keys (the parameters:
        :meth:`other_key_bounds`): ranges of the index on ``master_key_id`` around
        them, a few page reads however many keys there are."""
        mark = self.mark
        ranges = [f"master_key_id < {mark}"]
        ranges += [f"(master_key_id > {mark} AND master_key_id < {mark})"] * (count - 1)
        ranges.append(f"master_key_id > {mark}")
        return (
            f"SELECT subject_id, wrapped_key, master_key_id FROM {KEYS_TABLE} "
            f"WHERE wrapped_key IS NOT NULL AND ({' OR '.join(ranges)}) LIMIT 1"
        )

    @staticmethod
    def other_key_bounds(key_ids: list[str]) -> tuple[str, ...]:
        """The parameters of :meth:`one_wrapped_by_another` for ``key_ids`` (sorted,
        distinct): below the first, between each two, above the last."""
        between = [bound for pair in itertools.pairwise(key_ids) for bound in pair]
        return (key_ids[0], *between, key_ids[-1])

    def select_many(self, count: int) -> str:
        """The wrapped keys of ``count`` subjects (a statement per count on SQLite)."""
        if self.postgres:
            condition = "subject_id = ANY(%s)"
        else:
            condition = f"subject_id IN ({', '.join('?' * count)})"
        return f"SELECT subject_id, wrapped_key, master_key_id FROM {KEYS_TABLE} WHERE {condition}"

    def subjects(self, subjects: list[UUID]) -> tuple[Any, ...]:
        if self.postgres:
            return (subjects,)
        return tuple(str(subject) for subject in subjects)

    def subject(self, subject: UUID) -> Any:
        return subject if self.postgres else str(subject)

    @contextlib.contextmanager
    def transaction(self, *, commit: bool = False) -> Iterator[Any]:
        """A transaction on the key table; only one that writes commits (a read takes
        no writer's turn on SQLite)."""
        with self.datastore.transaction(commit=commit) as cursor:
            yield cursor

    def forget_overwritten(self) -> None:
        """On SQLite, copy the write-ahead log into the file and empty it: the log keeps
        every page as it was, a destroyed or rewrapped key's former bytes with it (the
        file's own free space is zeroed by ``secure_delete``). Best effort: a reader of
        older pages keeps the log until the next checkpoint."""
        if self.postgres:
            return
        assert isinstance(self.datastore, SQLiteDatastore)
        with self.datastore.get_connection(commit=True) as connection:
            connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")


@dataclass(frozen=True)
class KeyCounts:
    """What the key table holds (see :meth:`DataKeys.counts`)."""

    wrapped_by: dict[str, int]
    """How many data keys each master key wraps, by the master key's id."""
    erased: int
    """Tombstones: subjects whose data key was destroyed."""

    @property
    def data_keys(self) -> int:
        return sum(self.wrapped_by.values())


@dataclass
class _Cached:
    key: bytes | None
    """None: erased (or never had a key)."""
    expires_at: float
    cipher: AESGCM | None = None
    """The key's cipher, made at its first use: making one costs as much as using it."""


class DataKeys:
    """The data keys of every subject (see the module's docstring). Thread-safe."""

    def __init__(
        self,
        datastore: PostgresDatastore | SQLiteDatastore,
        keys: KeyRing,
        *,
        cache_size_max: int = KEY_CACHE_SIZE_MAX,
        cache_ttl_s: float = KEY_CACHE_TTL_S,
    ) -> None:
        self._sql = _KeysSql(datastore)
        self._keys = keys
        self._cache: OrderedDict[UUID, _Cached] = OrderedDict()
        self._cache_size_max = cache_size_max
        self._cache_ttl_s = cache_ttl_s
        self._lock = threading.Lock()
        with self._sql.transaction(commit=True) as cursor:
            if isinstance(datastore, PostgresDatastore):
                # Processes starting together: one makes the index, the others wait.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_CHANGE_LOCK_KEY,))
            cursor.execute(self._sql.create)
            cursor.execute(self._sql.create_index)

    @property
    def key_ring(self) -> KeyRing:
        return self._keys

    def check_master_key(self) -> None:
        """Raise :class:`MasterKeyError` unless the master key opens a stored data key,
        and every data key is wrapped by a master key of this process (a key under
        another one would fail each request about its person, and stall the projectors
        at their events): run at startup, so a lost or wrong key stops the process
        before any request."""
        key_ids = sorted(
            {master.key_id for master in (self._keys.current, self._keys.previous) if master}
        )
        with self._sql.transaction() as cursor:
            cursor.execute(self._sql.one_wrapped)
            row = cursor.fetchone()
            cursor.execute(
                self._sql.one_wrapped_by_another(len(key_ids)),
                self._sql.other_key_bounds(key_ids),
            )
            other = cursor.fetchone()
        for found in (row, other):
            if found is not None:
                subject, wrapped, key_id = _row(found)
                self._keys.unwrap(subject, wrapped, key_id)

    def for_reading(self, subject: UUID) -> bytes | None:
        """The subject's data key, or None if it was destroyed (or never made)."""
        cached = self._cached(subject)
        if cached is not None:
            return cached.key
        key = self._load(subject)
        self._remember(subject, key)
        return key

    def cipher_for_reading(self, subject: UUID) -> AESGCM | None:
        """:meth:`for_reading`'s key as a cipher, kept with the key while it is cached;
        None if the key was destroyed (or never made)."""
        cached = self._cached(subject)
        if cached is None:
            cached = self._remember(subject, self._load(subject))
        if cached.key is None:
            return None
        if cached.cipher is None:
            cached.cipher = AESGCM(cached.key)
        return cached.cipher

    def prefetch(self, subjects: Iterable[UUID]) -> None:
        """Have the keys of ``subjects`` cached, those not cached yet read in one query
        (at most :data:`PREFETCH_SUBJECTS_MAX` at once): for a reader about to open the
        fields of many people, such as a page of the audit trail."""
        missing = [subject for subject in dict.fromkeys(subjects) if self._cached(subject) is None]
        for start in range(0, len(missing), PREFETCH_SUBJECTS_MAX):
            chunk = missing[start : start + PREFETCH_SUBJECTS_MAX]
            with self._sql.transaction() as cursor:
                cursor.execute(self._sql.select_many(len(chunk)), self._sql.subjects(chunk))
                rows = cursor.fetchall()
            found: dict[UUID, bytes | None] = dict.fromkeys(chunk)
            for row in rows:
                subject, wrapped, key_id = _row_or_erased(row)
                found[subject] = (
                    None if wrapped is None else self._keys.unwrap(subject, wrapped, key_id)
                )
            for subject, key in found.items():
                self._remember(subject, key)

    def key_destroyed(self, subject: UUID) -> bool:
        """Whether the subject's key is gone (destroyed, or never made), as the key table
        has it now: not this process's cache, which a key destroyed by another process
        reaches only when its entry expires. What it finds replaces the cached entry."""
        key = self._load(subject)
        self._remember(subject, key)
        return key is None

    def for_writing(self, subject: UUID) -> bytes:
        """The subject's data key, made now if they have none. Raises
        :class:`SubjectErased` if their key was destroyed."""
        cached = self._cached(subject)
        if cached is not None and cached.key is not None:
            return cached.key
        key = self._load(subject)
        if key is None:
            wrapped_now = secrets.token_bytes(KEY_BYTES)
            master = self._keys.current
            self._write(
                self._sql.insert,
                (
                    self._sql.subject(subject),
                    master.wrap(subject, wrapped_now),
                    master.key_id,
                    _now(),
                ),
            )
            key = self._load(subject)  # another process may have made it first
            if key is None:
                raise SubjectErased(f"{subject} was erased: nothing personal is kept about them")
        self._remember(subject, key)
        return key

    def destroy(self, subject: UUID) -> None:
        """Destroy the subject's data key for good: what was encrypted with it can no
        longer be read by anyone, and nothing new can be encrypted for them."""
        now = _now()
        self._write(self._sql.erase, (self._sql.subject(subject), now, now))
        with self._lock:
            self._cache.pop(subject, None)
        self._sql.forget_overwritten()

    def forget_erased(self, subject: UUID) -> None:
        """Another process erased the subject: read them as erased from now on, without
        waiting for the cached key to expire (their key may be destroyed a moment after
        the erasure is stored; until it is, the store still holds it)."""
        self._remember(subject, None)

    def is_erased(self, subject: UUID) -> bool:
        return self.for_reading(subject) is None

    def rewrap_all(self) -> int:
        """Rewrap every data key not yet wrapped by the current master key (unwrapping
        with the previous one), in one transaction; the number rewrapped."""
        master = self._keys.current
        rewrapped = 0
        with self._sql.transaction(commit=True) as cursor:
            cursor.execute(self._sql.all_wrapped)
            rows = [_row(row) for row in cursor.fetchall()]
            for subject, wrapped, key_id in rows:
                if key_id == master.key_id:
                    continue
                data_key = self._keys.unwrap(subject, wrapped, key_id)
                cursor.execute(
                    self._sql.rewrap,
                    (
                        master.wrap(subject, data_key),
                        master.key_id,
                        self._sql.subject(subject),
                        key_id,
                    ),
                )
                rewrapped += 1
        self._sql.forget_overwritten()
        return rewrapped

    def counts(self) -> KeyCounts:
        """How many data keys each master key wraps, and how many were destroyed (two
        scans of the key table: for operators, not for requests)."""
        with self._sql.transaction() as cursor:
            cursor.execute(self._sql.count_wrapped)
            rows = cursor.fetchall()
            wrapped_by = {str(key_id): int(count) for key_id, count in map(_values, rows)}
            cursor.execute(self._sql.count_erased)
            (erased,) = _values(cursor.fetchone())
        return KeyCounts(wrapped_by=wrapped_by, erased=int(erased))

    def holds_key(self, subject: UUID) -> bool:
        """Whether the key table holds a data key for ``subject`` now (read from the
        table, not the cache; nothing is unwrapped)."""
        with self._sql.transaction() as cursor:
            cursor.execute(self._sql.holds_key, (self._sql.subject(subject),))
            return cursor.fetchone() is not None

    def email_digest(self, email: str) -> str:
        """A keyed hash (HMAC-SHA256) of a normalized email: what ids and index keys are
        derived from, so that a guessed email cannot be checked against them without the
        server's secret."""
        return self.keyed_digest(email.encode())

    def keyed_digest(self, data: bytes) -> str:
        """HMAC-SHA256 of ``data`` with the server's secret: for any stored digest of
        something a person typed (a request's fingerprint), which a plain hash would let
        anyone holding a copy of the store confirm guesses against."""
        secret = self.for_writing(EMAIL_INDEX_SUBJECT)
        return hmac.new(secret, data, hashlib.sha256).hexdigest()

    def _write(self, statement: str, parameters: tuple[Any, ...]) -> None:
        """Run one writing statement in a transaction of its own. A PostgreSQL session
        that refuses writes is handled as the event store's appends handle it (see
        :mod:`prep_es.store.postgres_recorders`): the pooled sessions are renewed once
        if a new session takes writes, else :class:`DatabaseRefusesWrites` is raised."""
        datastore = self._sql.datastore
        for renewed in (False, True):
            try:
                with self._sql.transaction(commit=True) as cursor:
                    cursor.execute(statement, parameters)
            except InternalError as error:
                read_only = isinstance(error.__cause__, psycopg.errors.ReadOnlySqlTransaction)
                if not (read_only and isinstance(datastore, PostgresDatastore)):
                    raise
                if renewed or new_session_refuses_writes(datastore):
                    raise DatabaseRefusesWrites(str(error)) from error
                renew_sessions(datastore)
            else:
                return

    def _load(self, subject: UUID) -> bytes | None:
        with self._sql.transaction() as cursor:
            cursor.execute(self._sql.select, (self._sql.subject(subject),))
            row = cursor.fetchone()
        if row is None:
            return None
        wrapped, key_id = _values(row)
        if wrapped is None:
            return None
        return self._keys.unwrap(subject, bytes(wrapped), str(key_id))

    def _cached(self, subject: UUID) -> _Cached | None:
        with self._lock:
            cached = self._cache.get(subject)
            if cached is None:
                return None
            if cached.expires_at < time.monotonic():
                del self._cache[subject]
                return None
            self._cache.move_to_end(subject)
            return cached

    def _remember(self, subject: UUID, key: bytes | None) -> _Cached:
        entry = _Cached(key, time.monotonic() + self._cache_ttl_s)
        with self._lock:
            self._cache[subject] = entry
            self._cache.move_to_end(subject)
            while len(self._cache) > self._cache_size_max:
                self._cache.popitem(last=False)
        return entry


def _row_or_erased(row: Any) -> tuple[UUID, bytes | None, str]:
    """A key row; its wrapped key None once erased."""
    if isinstance(row, dict):
        subject, wrapped, key_id = row["subject_id"], row["wrapped_key"], row["master_key_id"]
    else:
        subject, wrapped, key_id = row[0], row[1], row[2]
    return UUID(str(subject)), None if wrapped is None else bytes(wrapped), str(key_id)


def _values(row: Any) -> tuple[Any, ...]:
    """A row's values in column order, whichever row type the backend gives."""
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def _row(row: Any) -> tuple[UUID, bytes, str]:
    """A key row that holds a wrapped key."""
    subject, wrapped, key_id = _row_or_erased(row)
    assert wrapped is not None, subject
    return subject, wrapped, key_id


def _now() -> str:
    return datetime.now(UTC).isoformat()
