"""Password hashing with argon2id (memory-hard), through argon2-cffi, bounded in cost.

Each hash or check holds ``memory_cost`` KiB for its duration, so an API process lets
only :class:`BoundedPasswords`' few threads run them: a burst of logins waits for a
turn (briefly, then :class:`PasswordHashingBusy`, HTTP 503) instead of holding a hash's
memory per request. The same few threads run them all because glibc keeps a freed
hash's memory in the arena of the thread that used it: hashes spread over the
request threadpool's 40 threads would each leave their 19 MiB behind.

    PasswordHashingBusy   every hashing thread stayed busy for the whole wait (HTTP 503)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Final, Protocol, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")

# OWASP Password Storage Cheat Sheet, argon2id's first recommended configuration.
ARGON2_MEMORY_COST_KIB: Final = 19 * 1024
ARGON2_TIME_COST: Final = 2
ARGON2_PARALLELISM: Final = 1
BUSY_RETRY_AFTER_S: Final = 1


class PasswordHashingBusy(Exception):
    """Every hashing thread stayed busy while the request waited for one; try again
    after ``retry_after_s`` seconds."""

    code: ClassVar[str] = "password_hashing_busy"

    def __init__(self, retry_after_s: int = BUSY_RETRY_AFTER_S) -> None:
        self.retry_after_s = retry_after_s
        self.detail = f"too many password checks at once; try again in {retry_after_s} s"
        super().__init__(self.detail)


class PasswordHashes(Protocol):
    """What logins and registrations need of password hashing."""

    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether ``password_hash`` was made with other parameters than today's."""
        ...


class Argon2Passwords:
    """Hashes and verifies passwords with argon2id; by default with the OWASP
    recommended parameters (m=19 MiB, t=2, p=1). Tests may pass cheaper ones."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher(
            time_cost=ARGON2_TIME_COST,
            memory_cost=ARGON2_MEMORY_COST_KIB,
            parallelism=ARGON2_PARALLELISM,
            type=Type.ID,
        )

    @classmethod
    def cheap_for_tests(cls) -> Argon2Passwords:
        return cls(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return False


class BoundedPasswords:
    """Runs ``passwords``' hashes and checks on at most ``concurrent_max`` threads of
    its own. A caller waits at most ``wait_s`` for one to be free, then gets
    :class:`PasswordHashingBusy`. Thread-safe; :meth:`close` ends the threads."""

    def __init__(self, passwords: PasswordHashes, *, concurrent_max: int, wait_s: float) -> None:
        assert concurrent_max >= 1 and wait_s >= 0
        self._passwords = passwords
        self._wait_s = wait_s
        self._turns = threading.BoundedSemaphore(concurrent_max)
        self._threads = ThreadPoolExecutor(concurrent_max, thread_name_prefix="prep-es-hash")

    def hash(self, password: str) -> str:
        return self._run(self._passwords.hash, password)

    def verify(self, password_hash: str, password: str) -> bool:
        return self._run(self._passwords.verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._passwords.needs_rehash(password_hash)

    def _run(self, work: Callable[..., T], *arguments: str) -> T:
        if not self._turns.acquire(timeout=self._wait_s):
            raise PasswordHashingBusy
        try:
            # At most ``concurrent_max`` turns are out, so a thread is free at once.
            return self._threads.submit(work, *arguments).result()
        finally:
            self._turns.release()

    def close(self) -> None:
        self._threads.shutdown(wait=True)
