"""Whether this process should receive traffic: ``GET /readyz``.

Ready means: the database answers and takes writes (a read-only primary, or one that
turned standby, would refuse every command), and no projection is further behind the
event store than ``readiness_lag_events_max`` events. Each check is bounded in time, so
a probe answers within a few seconds whatever is down, and reports what it found in
words an operator can act on.

Redis, when configured, is checked but never makes a process not ready: every request
still works without it (the query cache and the login limit fall back to this
process), and since every replica shares it, failing on it would take them all out of
the load balancer at once. It is reported ``degraded`` instead.

A projection stopped at an event it cannot apply shows up here through its growing
lag (and at once in ``/metrics`` and ``prep-es projections status``): one poisoned
event should not take every replica out of the load balancer while the others serve.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Final

import psycopg
import redis
from eventsourcing.persistence import PersistenceError
from pydantic import BaseModel, Field
from redis.backoff import NoBackoff
from redis.retry import Retry

from prep_es.store.postgres_recorders import session_refuses_writes
from prep_es.store.settings import DatabaseLocation, PostgresLocation, Settings
from projections.status import ProjectionStatus
from queries.redis_circuit import RedisCircuit

CHECK_TIMEOUT_S: Final = 2.0
"""Upper bound of each network check (connect, then one round trip)."""
REDIS_CHECK_TIMEOUT_S: Final = 0.25
"""Redis answers in well under a millisecond; waiting longer only slows every probe
while it is down, and it never makes the process not ready anyway."""
PROJECTIONS_NAMED_MAX: Final = 10


class CheckResult(BaseModel):
    """One readiness check."""

    name: str = Field(description="database, read_database, redis, projections or payments")
    ok: bool
    degraded: bool = Field(
        default=False,
        description="Failed, but the process serves without it (Redis): ok stays true",
    )
    detail: str = Field(description="What was found, in words")


class ReadinessReport(BaseModel):
    ready: bool
    test_mode: bool = Field(
        description="True when no real money moves: the sandbox payment provider, or "
        "Stripe with a test key"
    )
    checks: list[CheckResult]

    @property
    def failed(self) -> list[CheckResult]:
        return [check for check in self.checks if not check.ok]


class RefusesWrites(Exception):
    """The database answers, but a new session's transactions are read-only."""


def database_reachable(
    location: DatabaseLocation, timeout_s: float = CHECK_TIMEOUT_S, *, writable: bool = False
) -> str:
    """Connect afresh (not through a pool, which would wait for a free connection, and
    whose sessions keep the defaults they began with) and run a query; the server's
    version on success. Raises on failure, :class:`RefusesWrites` if ``writable`` and
    the database would refuse writes."""
    if isinstance(location, PostgresLocation):
        with psycopg.connect(
            location.conninfo(),
            autocommit=True,
            connect_timeout=max(1, round(timeout_s)),
            options=f"-c statement_timeout={round(timeout_s * 1000)}",
        ) as connection:
            if writable and session_refuses_writes(connection):
                raise RefusesWrites(
                    "refuses writes: transactions are read-only (default_transaction_read_only, "
                    "or a standby)"
                )
            connection.execute("SELECT 1")
            major, minor = divmod(connection.info.server_version, 10_000)
            return f"PostgreSQL {major}.{minor} answered"
    embedded = sqlite3.connect(
        location.path, timeout=timeout_s, uri=location.path.startswith("file:")
    )
    try:
        embedded.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        embedded.close()
    return f"SQLite {sqlite3.sqlite_version} answered"


def redis_reachable(url: str, timeout_s: float = REDIS_CHECK_TIMEOUT_S) -> str:
    """PING once, without retrying: at most ``timeout_s`` to connect and as much to
    answer."""
    client = redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    finally:
        client.close()
    return "Redis answered PING"


class Readiness:
    """The checks of ``/readyz`` for one deployment.

    ``statuses`` reads every projection's status (``projections.status``);
    ``redis_circuit``: that of the process's other Redis users — while it is open the
    Redis check reports ``degraded`` without asking Redis again."""

    def __init__(
        self,
        settings: Settings,
        statuses: Callable[[], Sequence[ProjectionStatus]],
        *,
        timeout_s: float = CHECK_TIMEOUT_S,
        redis_circuit: RedisCircuit | None = None,
    ) -> None:
        self._settings = settings
        self._statuses = statuses
        self._timeout_s = timeout_s
        self._redis_circuit = redis_circuit or RedisCircuit()

    def check(self) -> ReadinessReport:
        """Run every check (blocking I/O: call it from a worker thread)."""
        checks = [self._check_database("database", self._settings.database, writable=True)]
        if self._settings.read_database_url is not None:
            checks.append(self._check_database("read_database", self._settings.read_database))
        if all(check.ok for check in checks):
            checks.append(self._check_projections())
        else:
            checks.append(
                CheckResult(
                    name="projections", ok=False, detail="not checked: a database is unreachable"
                )
            )
        if self._settings.redis_url is not None:
            checks.append(self._check_redis(self._settings.redis_url))
        payments = self._check_payments()
        checks.append(payments)
        return ReadinessReport(
            ready=all(check.ok for check in checks),
            test_mode=self._settings.payments_test_mode,
            checks=checks,
        )

    def _check_payments(self) -> CheckResult:
        """Which provider moves the money, said where an operator looks first. The
        provider is not asked: its outage refuses top-ups and payouts (503, retried),
        never the bookings this process serves."""
        if self._settings.payments_provider == "sandbox":
            detail = "sandbox provider, TEST MODE: no real money moves"
        elif self._settings.payments_test_mode:
            detail = "stripe, TEST MODE (a test key): no real money moves"
        else:
            detail = "stripe, live"
        return CheckResult(name="payments", ok=True, detail=detail)

    def _check_database(
        self, name: str, location: DatabaseLocation, *, writable: bool = False
    ) -> CheckResult:
        try:
            detail = database_reachable(location, self._timeout_s, writable=writable)
        except RefusesWrites as refusal:
            return CheckResult(name=name, ok=False, detail=str(refusal))
        except (psycopg.Error, sqlite3.Error, OSError) as error:
            return CheckResult(name=name, ok=False, detail=f"unreachable: {_first_line(error)}")
        return CheckResult(name=name, ok=True, detail=detail)

    def _check_redis(self, url: str) -> CheckResult:
        if not self._redis_circuit.allows():
            return _redis_degraded(
                "unreachable moments ago, not asked again until its cool-down ends"
            )
        try:
            detail = redis_reachable(url, min(self._timeout_s, REDIS_CHECK_TIMEOUT_S))
        except (redis.RedisError, OSError) as error:
            self._redis_circuit.failed(error)
            return _redis_degraded(f"unreachable ({_first_line(error)})")
        self._redis_circuit.succeeded()
        return CheckResult(name="redis", ok=True, detail=detail)

    def _check_projections(self) -> CheckResult:
        lag_max = self._settings.readiness_lag_events_max
        try:
            statuses = self._statuses()
        except (PersistenceError, psycopg.Error, sqlite3.Error, OSError) as error:
            return CheckResult(
                name="projections", ok=False, detail=f"status unreadable: {_first_line(error)}"
            )
        behind = [status for status in statuses if status.lag_events > lag_max]
        if not behind:
            lag = max((status.lag_events for status in statuses), default=0)
            return CheckResult(
                name="projections",
                ok=True,
                detail=f"{len(statuses)} projection(s), lag at most {lag} event(s) "
                f"(limit {lag_max})",
            )
        named = ", ".join(
            f"{status.name} {status.lag_events} event(s) behind"
            + (" (failed)" if status.failure is not None else "")
            for status in behind[:PROJECTIONS_NAMED_MAX]
        )
        return CheckResult(
            name="projections",
            ok=False,
            detail=f"over the limit of {lag_max} event(s): {named}",
        )


def _redis_degraded(found: str) -> CheckResult:
    return CheckResult(
        name="redis",
        ok=True,
        degraded=True,
        detail=f"degraded: {found}; the query cache and the login limit fall back to this process",
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
