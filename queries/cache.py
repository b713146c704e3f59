"""A query cache that never serves a client an answer older than it asked for.

Every entry records the read-model position it was built at. A *dependency* (a
kitchen, or "every kitchen" for search) records the last position at which a projector
changed what it covers. An entry is served only if it was built at or after both the
client's minimum position and its dependency's last change; otherwise the query runs
against the database and the fresh answer replaces the entry. Projectors call
:meth:`QueryCache.mark_changed` after they commit, so a change invalidates without any
entry having to be found and deleted — and an entry written late, from a read that
started before the change, is still refused.

With Redis (``PREP_ES_REDIS_URL``) the cache is shared by every process of the
deployment; without it the same code keeps a bounded cache per process. If Redis goes
away the cache answers "miss" and ignores writes (queries go to the database), logging
once until it is back, and skips Redis altogether for a cool-down after each failure.

A per-process cache must hear of changes made by runners in *other* processes (another
worker holds the projection's lock, or the projectors run in ``prep-es project``). On
PostgreSQL runners announce their changes with ``NOTIFY`` in the batch's transaction and
:class:`~queries.consistency.ReadPositions` hands them to :meth:`mark_changed`. Where
no announcement can arrive (SQLite, or reading a replica), the cache is told how to read
the read model's position (``stale_before``) and treats every entry built before it as
stale: coarse, but never wrong.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import redis

from projections.announcements import EVERYTHING_CHANGED
from queries.redis_circuit import RedisCircuit

logger = logging.getLogger(__name__)

ENTRY_TTL_S = 300
MEMORY_ENTRIES_MAX = 10_000
KEY_PREFIX = "prep_es:"
EVERYTHING = EVERYTHING_CHANGED
_POSITION = struct.Struct(">q")


class Cached(NamedTuple):
    position: int
    """The read-model position the answer was built at (it holds from there on, until
    its dependency changes)."""
    value: bytes


class QueryCache(ABC):
    @abstractmethod
    def get(self, key: str, *, dependency: str, min_position: int) -> Cached | None:
        """The cached answer for ``key`` if built at or after ``min_position`` and the
        last change of ``dependency``; else ``None``."""

    @abstractmethod
    def put(self, key: str, value: bytes, *, position: int) -> None:
        """Remember ``value`` as the answer for ``key`` built at ``position``."""

    @abstractmethod
    def mark_changed(self, dependencies: list[str], position: int) -> None:
        """Projectors: what ``dependencies`` cover changed, as of ``position``."""


class MemoryQueryCache(QueryCache):
    """Per process, bounded (least recently used entries go first). ``stale_before``:
    where no change announcement can reach this process, how far the read model has
    got now — every entry built before that counts as changed."""

    def __init__(
        self,
        entries_max: int = MEMORY_ENTRIES_MAX,
        *,
        stale_before: Callable[[], int] | None = None,
    ) -> None:
        self._entries: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._changes: dict[str, int] = {}
        self._entries_max = entries_max
        self._stale_before = stale_before
        self._lock = threading.Lock()

    def get(self, key: str, *, dependency: str, min_position: int) -> Cached | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            position, value = entry
            changed = max(self._changes.get(dependency, 0), self._changes.get(EVERYTHING, 0))
            if position < max(min_position, changed):
                return None
        if self._stale_before is not None and position < self._stale_before():
            return None
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        return Cached(position, value)

    def put(self, key: str, value: bytes, *, position: int) -> None:
        with self._lock:
            self._entries[key] = (position, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._entries_max:
                self._entries.popitem(last=False)

    def mark_changed(self, dependencies: list[str], position: int) -> None:
        with self._lock:
            for dependency in dependencies:
                self._changes[dependency] = max(position, self._changes.get(dependency, 0))


# Sets a dependency's last change to the given position unless it is already later.
_MARK_CHANGED = """
for i, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  if tonumber(ARGV[1]) > current then redis.call('SET', key, ARGV[1]) end
end
return 0
"""


class RedisQueryCache(QueryCache):
    """Shared by every process of a deployment. Errors are logged once per outage and
    answered as misses: the database stays the source of every answer. After an outage
    ``circuit`` skips Redis for a cool-down (see ``queries.redis_circuit``).

    Every key starts with ``prep_es:<namespace>:``: deployments sharing one Redis
    database never see each other's entries (see ``prep_es.services.redis_namespace``)."""

    def __init__(self, url: str, *, namespace: str, circuit: RedisCircuit | None = None) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=30
        )
        self._mark_changed = self._client.register_script(_MARK_CHANGED)
        self._prefix = f"{KEY_PREFIX}{namespace}:"
        self._circuit = circuit or RedisCircuit()
        self._failing_since: float | None = None
        self._missed_changes = False
        self._lock = threading.Lock()

    def _failed(self, error: redis.RedisError) -> None:
        self._circuit.failed(error)
        with self._lock:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                logger.warning("query cache unavailable, answering from the database: %s", error)

    def _succeeded(self) -> None:
        self._circuit.succeeded()
        if self._failing_since is not None:
            with self._lock:
                if self._failing_since is not None:
                    logger.info("query cache available again")
                    self._failing_since = None

    def get(self, key: str, *, dependency: str, min_position: int) -> Cached | None:
        if not self._circuit.allows():
            return None
        try:
            entry, changed, everything_changed = self._client.mget(
                self._prefix + "entry:" + key,
                self._prefix + "changed:" + dependency,
                self._prefix + "changed:" + EVERYTHING,
            )
        except redis.RedisError as error:
            self._failed(error)
            return None
        self._succeeded()
        if entry is None:
            return None
        assert isinstance(entry, bytes)
        (position,) = _POSITION.unpack_from(entry)
        if position < max(min_position, int(changed or 0), int(everything_changed or 0)):
            return None
        return Cached(position, bytes(entry[_POSITION.size :]))

    def put(self, key: str, value: bytes, *, position: int) -> None:
        if not self._circuit.allows():
            return
        try:
            self._client.set(
                self._prefix + "entry:" + key, _POSITION.pack(position) + value, ex=ENTRY_TTL_S
            )
        except redis.RedisError as error:
            self._failed(error)
            return
        self._succeeded()

    def mark_changed(self, dependencies: list[str], position: int) -> None:
        if not dependencies:
            return
        if not self._circuit.allows():
            self._missed_changes = True
            return
        # Changes missed during an outage are unknown: once Redis is back, everything
        # cached before now counts as changed.
        keys = [*dependencies, EVERYTHING] if self._missed_changes else dependencies
        try:
            self._mark_changed(keys=[self._prefix + "changed:" + d for d in keys], args=[position])
        except redis.RedisError as error:
            self._missed_changes = True
            self._failed(error)
            return
        self._missed_changes = False
        self._succeeded()
