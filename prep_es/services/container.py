"""Everything a request needs, opened once per process from :class:`Settings`.

:func:`open_services` opens the event store and its command handlers, the read side
(primary and replica), read-model positions for read-your-writes, the query cache and
every query service, token issuing, password hashing (on a few threads of its own) and
the rate limits on logins, re-entered passwords and registrations. With
``settings.run_projectors`` it also runs this process's share of the projectors (the
Supervisor: one active runner per projection across processes) and the sweeper, which
applies the time-driven transitions every ``settings.sweep_interval_s``. With the
sandbox payment provider, every process delivers the sandbox's notifications to its own
webhook handling (the processes share the sandbox's outbox; each notification is
delivered by one).
:meth:`Services.close` stops them and closes everything, in reverse order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Protocol

from aggregates.errors import NotFound
from aggregates.jurisdictions import JurisdictionCatalog
from commands import Commands
from commands.admission import Admission
from commands.clock import Clock
from commands.context import Actor, CommandContext
from commands.sweeper import Sweeper, SweepIncomplete, SweepReport
from commands.users import PasswordHashing, RecordPasswordRehash
from prep_es.services.attempt_limits import AttemptLimiter, open_attempt_limiter
from prep_es.services.auth import (
    CurrentPasswordLimit,
    Login,
    PasswordVerifying,
    RegistrationLimit,
    TokenService,
)
from prep_es.services.credentials import CurrentCredentials
from prep_es.services.passwords import Argon2Passwords, BoundedPasswords
from prep_es.services.readside import (
    ReadSide,
    configured_projections,
    lock_factory,
    open_read_side,
    start_projectors,
)
from prep_es.services.redis_namespace import redis_namespace
from prep_es.services.runtime import Runtime, open_runtime, system_clock
from prep_es.services.user_changes import ReadModelLeads, UserChanges
from prep_es.store.known_copies_follower import KnownCopiesFollower
from prep_es.store.settings import PostgresLocation, Settings
from projections.base import Projection
from projections.database import ReadDatabase
from projections.generations import request_rebuild
from projections.kitchens import KitchensProjection
from projections.locks import RunnerLock
from projections.status import ProjectionStatus, projection_statuses
from projections.supervisor import Supervisor
from projections.users import UsersProjection
from queries.accounts import AccountQueries
from queries.analytics import AnalyticsQueries
from queries.audit import AuditQueries
from queries.bookings import BookingQueries
from queries.cache import MemoryQueryCache, QueryCache, RedisQueryCache
from queries.compliance import ComplianceQueries
from queries.consistency import ReadPositions
from queries.erasure import ErasureLeadQueries
from queries.export import ExportQueries
from queries.kitchen_cache import CachedKitchenQueries, PublishedPages
from queries.kitchen_index import (
    LiveSearchIndex,
    RenderKitchen,
    load_booked,
    load_search_index,
)
from queries.kitchens import KitchenQueries
from queries.payments import PaymentQueries
from queries.redis_circuit import RedisCircuit
from queries.timetravel import TimeTravelQueries
from queries.users import UserCredentials, UserQueries

logger = logging.getLogger(__name__)

SWEEPER_STOP_TIMEOUT_S: Final = 30.0
SWEEP_RETRY_FIRST_WAIT_S: Final = 0.5
"""The wait before the first retry of a failed sweep (doubling after each failure)."""
SWEEPER_LOCK_NAME: Final = "sweeper"


class Passwords(PasswordHashing, PasswordVerifying, Protocol):
    """Hashes (registration) and verifies (login) passwords."""


class SweeperThread:
    """Runs ``sweep`` at once and then every ``interval_s`` until stopped.

    A failed sweep (an exception, such as the database restarting under it, or
    ``SweepIncomplete``) is logged and tried again soon, not an interval later: after
    ``SWEEP_RETRY_FIRST_WAIT_S``, doubling on each failure in a row up to
    ``interval_s``. Each transition is its own idempotent command, so a retry redoes
    nothing that was done. After a database restart every pooled connection is dead;
    the pool drops them before use (see ``prep_es.store.postgres_recorders``), so the first retry
    that finds the database up sweeps.

    With ``lock`` (a runner lock named ``sweeper``), it sweeps only while it holds the
    lock, so one process sweeps however many serve: the others stand by, asking for
    the lock every ``interval_s``, and take over when its holder dies. Sweeping twice
    would be harmless but not free: each sweeper first reads every booking and
    certificate event of the store. Failing to ask for the lock is retried soon too."""

    def __init__(
        self, sweep: Callable[[], object], interval_s: float, *, lock: RunnerLock | None = None
    ) -> None:
        assert interval_s > 0
        self._sweep = sweep
        self._interval_s = interval_s
        self._lock = lock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prep-es-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        failures_in_a_row = 0
        try:
            while not self._stopping.is_set():
                if self._sweep_if_holding_lock():
                    failures_in_a_row = 0
                    wait_s = self._interval_s
                else:
                    failures_in_a_row += 1
                    wait_s = retry_wait_s(failures_in_a_row, self._interval_s)
                    logger.info("sweeping again in %.1f s", wait_s)
                self._stopping.wait(wait_s)
        finally:
            if self._lock is not None:
                self._lock.release()

    def _sweep_if_holding_lock(self) -> bool:
        """Whether this turn went well: swept, or stood by for the lock's holder."""
        if self._lock is not None:
            try:
                if not self._lock.try_acquire():
                    return True
            except Exception:
                logger.exception("could not ask for the sweeper lock")
                return False
        try:
            report = self._sweep()
        except Exception:
            logger.exception("sweep failed")
            return False
        logger.debug("sweep done: %s", report)
        return True

    def stop(self) -> None:
        """Stop after the sweep in progress, if any (and let another process sweep)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=SWEEPER_STOP_TIMEOUT_S)


def retry_wait_s(failures_in_a_row: int, interval_s: float) -> float:
    """How long to wait before sweeping again after ``failures_in_a_row`` failures:
    ``SWEEP_RETRY_FIRST_WAIT_S`` doubled on each, never more than ``interval_s``."""
    doublings = min(failures_in_a_row - 1, 32)
    return min(SWEEP_RETRY_FIRST_WAIT_S * float(2**doublings), interval_s)


def sweep_fully(sweeper: Sweeper) -> SweepReport:
    """One sweep; ``SweepIncomplete`` if any due transition failed (retried soon)."""
    report = sweeper.sweep()
    if report.failed:
        raise SweepIncomplete(report)
    return report


def locked_sweeper(runtime: Runtime, interval_s: float) -> SweeperThread:
    """A sweeper of ``runtime``'s store that sweeps only while it holds the sweeper lock
    (one process at a time; not started)."""
    return SweeperThread(
        partial(sweep_fully, runtime.commands.sweeper),
        interval_s,
        lock=lock_factory(runtime.settings.database)(SWEEPER_LOCK_NAME),
    )


@dataclass
class Services:
    """One per process; shared by every request (each member is thread-safe)."""

    settings: Settings
    clock: Clock
    runtime: Runtime
    read_side: ReadSide
    read_positions: ReadPositions
    query_cache: QueryCache
    redis_circuit: RedisCircuit
    """Shared by this process's Redis users: the query cache, the attempt limiter and
    readiness (see ``queries.redis_circuit``)."""
    users: UserQueries
    admission: Admission
    """The per-request authentication check, on the write model's users (see
    ``commands.admission``)."""
    kitchens: CachedKitchenQueries
    kitchens_uncached: KitchenQueries
    kitchen_pages: PublishedPages | None
    """Where this process hears of every change (see :func:`open_published_pages`)."""
    search_index: LiveSearchIndex | None
    """Likewise (see :func:`open_search_index`)."""
    bookings: BookingQueries
    accounts: AccountQueries
    payments: PaymentQueries
    analytics: AnalyticsQueries
    audit: AuditQueries
    export: ExportQueries
    compliance: ComplianceQueries
    timetravel: TimeTravelQueries
    tokens: TokenService
    catch_up_users: Callable[[], None]
    """Until the users read model has every event stored so far (at most
    ``min_position_wait_s``, then ``ReadModelBehind``): for a user it does not know,
    who may have registered a moment ago."""
    login: Login
    user_changes: UserChanges
    """A signed-in user's password and profile changes and erasures (their wrong
    current passwords limited), and admins' erasures."""
    registration_limit: RegistrationLimit
    attempt_limiter: AttemptLimiter
    passwords: BoundedPasswords
    projections: tuple[type[Projection], ...]
    known_copies: KnownCopiesFollower | None
    """Keeps the command handlers' known copies current (PostgreSQL; see
    ``prep_es.store.known_copies_follower``)."""
    supervisor: Supervisor | None = None
    sweeper: SweeperThread | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def commands(self) -> Commands:
        return self.runtime.commands

    def projection_named(self, name: str) -> type[Projection]:
        for projection_class in self.projections:
            if projection_class.name == name:
                return projection_class
        names = ", ".join(projection_class.name for projection_class in self.projections)
        raise NotFound(f"no projection {name!r}; projections: {names}", code="projection_not_found")

    def projection_statuses(self) -> list[ProjectionStatus]:
        """How far each of this deployment's projections has got, read from the
        database now (see ``projections.status``)."""
        return projection_statuses(
            self.runtime.app, self.read_side.write_database, self.projections
        )

    def request_rebuild(self, name: str) -> int:
        """Start rebuilding projection ``name`` from position 0 (the runner holding its
        lock, in this process or another, does the work); the generation building."""
        return request_rebuild(self.read_side.write_database, self.projection_named(name))

    def close(self) -> None:
        """Stop the sweeper and the projectors (each finishes what it is doing), end
        read-your-writes waits, then close the databases. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.sweeper is not None:
            self.sweeper.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.known_copies is not None:
            self.known_copies.close()
        self.read_positions.close()
        close_limiter = getattr(self.attempt_limiter, "close", None)
        if close_limiter is not None:
            close_limiter()
        self.passwords.close()
        self.read_side.close()
        self.runtime.close()


def open_query_cache(
    settings: Settings,
    read_positions: ReadPositions,
    *,
    namespace: str = "",
    circuit: RedisCircuit | None = None,
) -> QueryCache:
    """Redis if configured (keys under ``namespace``, see ``prep_es.services.redis_namespace``);
    else a cache in this process, told of every change by the runners' announcements
    (PostgreSQL) or, where none can arrive, treating everything built before the
    kitchens read model's current position as stale."""
    if settings.redis_url is not None:
        assert namespace, "a Redis cache needs the deployment's namespace"
        return RedisQueryCache(settings.redis_url, namespace=namespace, circuit=circuit)
    if read_positions.hears_changes:
        return _following_changes(read_positions)
    return MemoryQueryCache(stale_before=lambda: read_positions.position(KitchensProjection.name))


def _following_changes(read_positions: ReadPositions) -> MemoryQueryCache:
    """A cache in this process, told of every change the runners announce."""
    cache = MemoryQueryCache()
    read_positions.follow_changes(cache.mark_changed)
    return cache


def open_published_pages(read_positions: ReadPositions, clock: Clock) -> PublishedPages | None:
    """Published kitchens' pages kept in this process, where it hears of every change
    and knows the kitchens read model's position without asking the database
    (PostgreSQL, not a replica); elsewhere ``None``: the route answers every time."""
    if not read_positions.hears_changes:
        return None
    return PublishedPages(
        _following_changes(read_positions),
        position=lambda: read_positions.announced(KitchensProjection.name),
        clock=clock,
    )


def open_search_index(
    read_positions: ReadPositions,
    database: ReadDatabase,
    jurisdictions: JurisdictionCatalog,
    clock: Clock,
    render: RenderKitchen,
) -> LiveSearchIndex | None:
    """Searches answered from this process's memory, where it hears of every change and
    knows the kitchens read model's position without asking the database (PostgreSQL,
    not a replica); elsewhere ``None``: every search is SQL."""
    if not read_positions.hears_changes:
        return None
    index = LiveSearchIndex(
        partial(load_search_index, database, render),
        load_booked=partial(load_booked, database),
        position=lambda: read_positions.announced(KitchensProjection.name),
        jurisdictions=jurisdictions,
        clock=clock,
    )
    read_positions.follow_changes(index.changed, with_hints=True)
    return index


def start_sandbox_deliveries(runtime: Runtime) -> None:
    """With the sandbox provider, send its notifications to this process's webhook
    handling, as a real provider sends them to the webhook route (stopped when the
    runtime closes). Every API and projector process does, so a deployment with any of
    them running gets its notifications."""
    sandbox = runtime.payment_provider.sandbox
    if sandbox is not None:
        sandbox.start_delivering(runtime.deliver_sandbox_notification)


def follow_known_copies(runtime: Runtime) -> KnownCopiesFollower | None:
    """Where other processes may write the same store (PostgreSQL), a follower that keeps
    this process's known copies of aggregates from going stale; on SQLite ``None``."""
    location = runtime.settings.database
    if not isinstance(location, PostgresLocation):
        return None
    follower = KnownCopiesFollower(
        runtime.app, runtime.commands.processor.known, location.conninfo()
    )
    follower.start()
    return follower


def open_services(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    passwords: Passwords | None = None,
    render_kitchen: RenderKitchen | None = None,
) -> Services:
    """Open everything; on failure, close what was opened and re-raise.
    ``render_kitchen``: a kitchen's JSON in search answers, to answer searches from
    memory (see :func:`open_search_index`); without it every search is SQL."""
    tokens = TokenService.from_settings(settings, clock)  # refuses a missing secret first
    hashing = BoundedPasswords(
        passwords or Argon2Passwords(),
        concurrent_max=settings.password_hashes_concurrent_max,
        wait_s=settings.password_hash_wait_s,
    )
    opened: list[object] = [hashing]
    runtime = open_runtime(settings, clock=clock, passwords=hashing)
    opened.append(runtime)
    try:
        read_side = open_read_side(settings)
        opened.append(read_side)
        read_positions = ReadPositions(
            read_side.query_database,
            replica=settings.read_database_url is not None,
            event_store_head=runtime.app.position,
            waiters_max=settings.min_position_waiters_max,
        )
        redis_circuit = RedisCircuit(settings.redis_cool_down_s)
        namespace = "" if settings.redis_url is None else redis_namespace(settings)
        query_cache = open_query_cache(
            settings, read_positions, namespace=namespace, circuit=redis_circuit
        )
        kitchen_pages = open_published_pages(read_positions, clock)
        search_index = (
            None
            if render_kitchen is None
            else open_search_index(
                read_positions,
                read_side.query_database,
                runtime.jurisdictions,
                clock,
                render_kitchen,
            )
        )
        users = UserQueries(read_side.query_database)
        read_positions.start()
        opened.append(read_positions)
        known_copies = follow_known_copies(runtime)
        if known_copies is not None:
            opened.append(known_copies)
        admission = Admission(
            runtime.app, runtime.commands.processor.known, copies_followed=known_copies is not None
        )
        database = read_side.query_database
        kitchens_uncached = KitchenQueries(
            database, jurisdictions=runtime.jurisdictions, clock=clock
        )
        attempt_limiter = open_attempt_limiter(settings, namespace=namespace, circuit=redis_circuit)

        def catch_up_users() -> None:
            read_positions.wait_for(
                UsersProjection.name, runtime.app.position(), settings.min_position_wait_s
            )

        def record_rehash(credentials: UserCredentials, password_hash: str) -> None:
            runtime.commands.users.record_password_rehash(
                RecordPasswordRehash(
                    user_id=credentials.id,
                    replaced_hash=credentials.password_hash,
                    password_hash=password_hash,
                ),
                CommandContext(actor=Actor(user_id=credentials.id, role=credentials.role)),
            )

        bookings = BookingQueries(database)
        accounts = AccountQueries(database)
        payments = PaymentQueries(database)
        audit = AuditQueries(database, runtime.app.personal_cipher)
        services = Services(
            settings=settings,
            clock=clock,
            runtime=runtime,
            read_side=read_side,
            read_positions=read_positions,
            query_cache=query_cache,
            redis_circuit=redis_circuit,
            users=users,
            admission=admission,
            kitchens=CachedKitchenQueries(
                kitchens_uncached,
                query_cache,
                position=lambda: read_positions.position("kitchens"),
                clock=clock,
            ),
            kitchens_uncached=kitchens_uncached,
            kitchen_pages=kitchen_pages,
            search_index=search_index,
            bookings=bookings,
            accounts=accounts,
            payments=payments,
            analytics=AnalyticsQueries(database),
            audit=audit,
            export=ExportQueries(
                users=users,
                accounts=accounts,
                payments=payments,
                bookings=bookings,
                kitchens=kitchens_uncached,
                audit=audit,
            ),
            compliance=ComplianceQueries(database),
            timetravel=TimeTravelQueries(runtime.app),
            tokens=tokens,
            catch_up_users=catch_up_users,
            login=Login(
                users=CurrentCredentials(read_side.query_database, admission),
                passwords=hashing,
                tokens=tokens,
                limiter=attempt_limiter,
                failures_max=settings.login_failures_max,
                client_failures_max=settings.login_failures_per_client_max,
                catch_up_users=catch_up_users,
                record_rehash=record_rehash,
                keyed_hash=runtime.app.email_digest,
            ),
            user_changes=UserChanges(
                runtime.commands,
                CurrentPasswordLimit(attempt_limiter, settings.login_failures_max),
                ReadModelLeads(
                    ErasureLeadQueries(database), read_positions, settings.min_position_wait_s
                ),
            ),
            registration_limit=RegistrationLimit(
                attempt_limiter,
                settings.registrations_per_client_max,
                keyed_hash=runtime.app.email_digest,
            ),
            attempt_limiter=attempt_limiter,
            passwords=hashing,
            projections=configured_projections(settings),
            known_copies=known_copies,
        )
        opened = [services]
        if settings.run_projectors:
            services.supervisor, _ = start_projectors(
                settings,
                runtime.app,
                read_side,
                projection_classes=services.projections,
                on_position=read_positions.observe,
                on_changes=query_cache.mark_changed,
            )
            services.sweeper = locked_sweeper(runtime, settings.sweep_interval_s)
            services.sweeper.start()
        start_sandbox_deliveries(runtime)
    except BaseException:
        for resource in reversed(opened):
            close = getattr(resource, "close", None)
            if close is not None:
                close()
        raise
    return services
