"""One circuit breaker for every Redis user of a process (query cache, login limiter,
readiness): after Redis fails to answer, nobody asks it again for a cool-down.

Without it an unreachable Redis — worse, one that accepts connections and never
answers — costs each request that uses it a full socket timeout, every time. With it
the first failure costs one timeout; for ``cool_down_s`` afterwards every user skips
Redis and falls back at once (the cache answers "miss", the limiter counts per
process, readiness reports ``degraded``). Then one call is let through as a probe: if
it succeeds, Redis is used again; if it fails, another cool-down begins. A probe whose
caller never reports back is followed by another after the next cool-down. (Each user
logs its own outage, in its own words.)

Only outages open the circuit (connection refused or lost, timeouts); an error Redis
itself answers (a script error, say) proves it reachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

import redis

COOL_DOWN_S_DEFAULT: Final = 5.0


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says Redis could not be reached or did not answer in time."""
    return isinstance(error, redis.ConnectionError | redis.TimeoutError | OSError)


class RedisCircuit:
    """Thread-safe; one per process, passed to every Redis user."""

    def __init__(
        self,
        cool_down_s: float = COOL_DOWN_S_DEFAULT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cool_down_s = cool_down_s
        self._clock = clock
        self._closed = True
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """Redis failed, and the cool-down has not ended yet."""
        if self._closed:
            return False
        with self._lock:
            return not self._closed and self._clock() < self._retry_at

    def allows(self) -> bool:
        """Whether to ask Redis now: always while it answers; after a failure, not until
        the cool-down ends, then once (the probe) per cool-down."""
        if self._closed:  # the hot path: one attribute read, no lock
            return True
        with self._lock:
            if self._closed:
                return True
            now = self._clock()
            if now < self._retry_at:
                return False
            self._retry_at = now + self._cool_down_s
            return True

    def failed(self, error: BaseException) -> None:
        """Report a failed call; an outage opens the circuit for a cool-down."""
        if not is_outage(error):
            return
        with self._lock:
            self._closed = False
            self._retry_at = self._clock() + self._cool_down_s

    def succeeded(self) -> None:
        """Report a call Redis answered; closes the circuit."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
