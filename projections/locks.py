"""One active runner per projection, across processes.

PostgreSQL: a session-level advisory lock held on a dedicated connection; when the
holding process dies its connection drops and the lock is free for a standby at once.
SQLite: an exclusive ``flock`` on a file beside the database, released by the kernel
when the holding process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from abc import ABC, abstractmethod
from typing import IO

import psycopg

HELD_CHECK_INTERVAL_S = 1.0


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    digest = hashlib.blake2b(f"prep_es:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class RunnerLock(ABC):
    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if free; ``True`` if this process now holds it."""

    @abstractmethod
    def is_held(self) -> bool:
        """Still held (the PostgreSQL session behind it may have died)."""

    @abstractmethod
    def release(self) -> None: ...


class PostgresRunnerLock(RunnerLock):
    def __init__(self, conninfo: str, name: str) -> None:
        self._conninfo = conninfo
        self._key = lock_key(name)
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._checked_at = 0.0

    def try_acquire(self) -> bool:
        # Asked before every batch: check the session is alive at most once a second
        # rather than with a round trip each time.
        recently_checked = time.monotonic() - self._checked_at < HELD_CHECK_INTERVAL_S
        if self._connection is not None and (recently_checked or self.is_held()):
            return True
        self.release()
        connection = psycopg.connect(self._conninfo, autocommit=True)
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        if row is not None and row[0] is True:
            self._connection = connection
            self._checked_at = time.monotonic()
            return True
        connection.close()
        return False

    def is_held(self) -> bool:
        if self._connection is None or self._connection.closed:
            return False
        try:
            self._connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        self._checked_at = time.monotonic()
        return True

    def release(self) -> None:
        if self._connection is not None:
            self._connection.close()  # closing the session releases its advisory locks
            self._connection = None


class FileRunnerLock(RunnerLock):
    def __init__(self, path: str) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        file = open(self._path, "ab")  # noqa: SIM115 (held open as long as the lock)
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return False
        self._file = file
        return True

    def is_held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class ProcessRunnerLock(RunnerLock):
    """For an in-memory database, which only this process can see."""

    _locks: dict[str, threading.Lock] = {}
    _guard = threading.Lock()

    def __init__(self, name: str) -> None:
        with self._guard:
            self._lock = self._locks.setdefault(name, threading.Lock())
        self._held = False

    def try_acquire(self) -> bool:
        if not self._held:
            self._held = self._lock.acquire(blocking=False)
        return self._held

    def is_held(self) -> bool:
        return self._held

    def release(self) -> None:
        if self._held:
            self._lock.release()
            self._held = False


def lock_file_path(database_path: str, name: str) -> str:
    directory, base = os.path.split(os.path.abspath(database_path))
    return os.path.join(directory, f".{base}.{name}.lock")
