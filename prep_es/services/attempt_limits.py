"""Limits on attempts (logins, password changes, registrations): how many a key may make
in a window, counted per process or, with Redis, across every process of the deployment."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final
from uuid import UUID

import redis

from aggregates.user import fold_email
from prep_es.store.settings import Settings
from queries.redis_circuit import RedisCircuit

# The name these warnings had before the limits left ``auth``: alerts may match it.
logger = logging.getLogger("prep_es.services.auth")

ATTEMPT_WINDOW_S: Final = 60
ATTEMPT_KEYS_MAX: Final = 100_000
"""Rate-limit keys (email × client, client) remembered per process; the oldest windows
go first beyond it."""
REDIS_TIMEOUT_S: Final = 0.25


@dataclass(frozen=True)
class Quota:
    """At most ``attempts_max`` attempts under ``key`` in one window."""

    key: str
    attempts_max: int


class AttemptLimiter(ABC):
    """Counts attempts per key in windows of :data:`ATTEMPT_WINDOW_S` seconds opened by
    a key's first attempt.

    An attempt is counted *before* the work it limits, in the same atomic step as the
    check (:meth:`reserve`): had the check and the count been two steps around a slow
    password check, a parallel burst would pass the check many times over before the
    first failure was counted."""

    @abstractmethod
    def reserve(self, quotas: Sequence[Quota]) -> int | None:
        """If every quota has an attempt left, count one under each key and answer
        ``None``: the attempt may go ahead. Otherwise count nothing and answer the
        seconds until the exhausted keys' windows end."""

    @abstractmethod
    def refund(self, key: str) -> None:
        """Give one attempt back under ``key``: it turned out not to count."""

    @abstractmethod
    def reset(self, key: str) -> None:
        """Forget every attempt under ``key``."""


KeyedHash = Callable[[str], str]
"""A keyed hash of a text (HMAC with a server secret: the event store's
``email_digest``). Keys that name an email or a client address are made with it, so
that neither can be recovered from a key, in Redis or in memory, by hashing guesses —
nor an erased person's email found there."""


def login_key(email: str, client: str, keyed_hash: KeyedHash) -> str:
    """The key of one email's logins from one client. Emails are case-insensitive."""
    return keyed_hash(f"login\x00{fold_email(email)}\x00{client}")


def password_change_key(user_id: UUID) -> str:
    """The key of one user's password changes, whatever the client: whoever holds one of
    the user's tokens may guess, from anywhere."""
    return hashlib.sha256(f"password_change\x00{user_id}".encode()).hexdigest()


def client_key(action: str, client: str, keyed_hash: KeyedHash) -> str:
    """The key of everything one client address does of ``action``, hashed likewise."""
    return keyed_hash(f"{action}\x00{client}")


class MemoryAttemptLimiter(AttemptLimiter):
    """Per process, bounded: beyond ``keys_max`` keys the oldest windows go first."""

    def __init__(
        self,
        *,
        keys_max: int = ATTEMPT_KEYS_MAX,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert keys_max >= 1
        self._keys_max = keys_max
        self._monotonic = monotonic
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """Each key's window: when it ends (monotonic seconds) and its attempts."""
        self._lock = threading.Lock()

    def reserve(self, quotas: Sequence[Quota]) -> int | None:
        now = self._monotonic()
        with self._lock:
            waits_s = [
                window[0] - now
                for quota in quotas
                if (window := self._current(quota.key, now)) is not None
                and window[1] >= quota.attempts_max
            ]
            if waits_s:
                return max(1, math.ceil(max(waits_s)))
            for quota in quotas:
                window = self._current(quota.key, now)
                if window is None:
                    self._windows[quota.key] = (now + ATTEMPT_WINDOW_S, 1)
                    self._windows.move_to_end(quota.key)
                else:
                    self._windows[quota.key] = (window[0], window[1] + 1)
            while len(self._windows) > self._keys_max:
                self._windows.popitem(last=False)
        return None

    def _current(self, key: str, now: float) -> tuple[float, int] | None:
        window = self._windows.get(key)
        if window is not None and window[0] <= now:
            del self._windows[key]
            return None
        return window

    def refund(self, key: str) -> None:
        now = self._monotonic()
        with self._lock:
            window = self._current(key, now)
            if window is not None and window[1] > 0:
                self._windows[key] = (window[0], window[1] - 1)

    def reset(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)


_RESERVE_SCRIPT: Final = """
-- KEYS: the keys; ARGV[1]: the window in seconds; ARGV[1 + i]: KEYS[i]'s attempts max.
local window_s = tonumber(ARGV[1])
local wait_s = 0
for index, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[index + 1]) then
    local ttl_s = redis.call('TTL', key)
    if ttl_s < 1 then
      redis.call('EXPIRE', key, window_s)
      ttl_s = window_s
    end
    if ttl_s > wait_s then wait_s = ttl_s end
  end
end
if wait_s > 0 then return wait_s end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, window_s, 'NX')
end
return 0
"""

_REFUND_SCRIPT: Final = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisAttemptLimiter(AttemptLimiter):
    """Shared by every process of a deployment through Redis (keys under
    ``prep_es:<namespace>:attempts:``, see ``prep_es.services.redis_namespace``), each
    reservation one Lua script (atomic in Redis). While Redis cannot be reached, counts
    per process instead (logged once per outage); after an outage ``circuit`` skips
    Redis for a cool-down (see ``queries.redis_circuit``)."""

    KEY_PREFIX: ClassVar[str] = "prep_es:"

    def __init__(self, url: str, *, namespace: str, circuit: RedisCircuit | None = None) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._reserve = self._client.register_script(_RESERVE_SCRIPT)
        self._refund = self._client.register_script(_REFUND_SCRIPT)
        self._prefix = f"{self.KEY_PREFIX}{namespace}:attempts:"
        self._circuit = circuit or RedisCircuit()
        self._fallback = MemoryAttemptLimiter()
        self._failing = False
        self._lock = threading.Lock()

    def _failed(self, error: redis.RedisError) -> None:
        self._circuit.failed(error)
        with self._lock:
            if not self._failing:
                self._failing = True
                logger.warning("rate limits: Redis unavailable, counting per process: %s", error)

    def _succeeded(self) -> None:
        self._circuit.succeeded()
        if self._failing:
            with self._lock:
                if self._failing:
                    self._failing = False
                    logger.info("rate limits: Redis available again")

    def reserve(self, quotas: Sequence[Quota]) -> int | None:
        if not self._circuit.allows():
            return self._fallback.reserve(quotas)
        keys = [self._prefix + quota.key for quota in quotas]
        arguments = [ATTEMPT_WINDOW_S, *(quota.attempts_max for quota in quotas)]
        try:
            wait_s = int(self._reserve(keys=keys, args=arguments))
        except redis.RedisError as error:
            self._failed(error)
            return self._fallback.reserve(quotas)
        self._succeeded()
        return wait_s if wait_s > 0 else None

    def refund(self, key: str) -> None:
        self._fallback.refund(key)
        if not self._circuit.allows():
            return
        try:
            self._refund(keys=[self._prefix + key])
        except redis.RedisError as error:
            self._failed(error)
            return
        self._succeeded()

    def reset(self, key: str) -> None:
        self._fallback.reset(key)
        if not self._circuit.allows():
            return
        try:
            self._client.delete(self._prefix + key)
        except redis.RedisError as error:
            self._failed(error)
            return
        self._succeeded()

    def close(self) -> None:
        self._client.close()


def open_attempt_limiter(
    settings: Settings, *, namespace: str, circuit: RedisCircuit | None = None
) -> AttemptLimiter:
    """``namespace`` and ``circuit``: those of the deployment's Redis keys and of this
    process's Redis users (used only with Redis)."""
    if settings.redis_url is None:
        return MemoryAttemptLimiter()
    return RedisAttemptLimiter(settings.redis_url, namespace=namespace, circuit=circuit)
