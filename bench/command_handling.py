"""Command-side throughput and load latency on PostgreSQL, each against its floor.

Run by ``make bench`` (``.venv/bin/python -m bench.command_handling``); ``--quick`` is a reduced
run for checks (well under 3 minutes). In one run, at 1 and 4 threads:

(a) ``raw_insert``  raw psycopg: one single-row INSERT + COMMIT per transaction, pooled
(b) ``es_save``     bare eventsourcing: ``Application.save`` of a new one-event aggregate
(c) ``booking``     our ``request_booking`` handler end to end (booking, schedule, hold,
                    idempotency record; one transaction), counting successful bookings
(d) ``account_load`` ``repository.get`` of one account after 100 and after 100k events
                    (aggregate cache disabled; snapshots every 100 events). The account
                    grows by ``Account.FundsDeposited`` events saved in batches: events
                    a store written before top-ups holds, which keep the account's state
                    as small as these figures always measured it (each credited top-up
                    adds an entry to the account's refundable top-ups)
(e) ``es_get``      bare eventsourcing: ``repository.get`` of a one-event aggregate (no
                    cache), the floor of (h)
(f) ``top_up``      our ``request_top_up`` with ``pm_card_visa``, idempotency key and all:
                    the top-up recorded, the sandbox asked (it writes its own tables and
                    queues its notification), its answer recorded; two transactions
(g) ``notification`` ``Runtime.receive_notification`` of sandbox-signed ``succeeded``
                    notifications, each for a top-up made by (f) or before the run
                    (untimed): signature verified, notification recorded, top-up
                    succeeded and account credited, in one transaction
(h) ``duplicate_notification`` the same as (g), again, for notifications (g) received:
                    answered as duplicates, and the store must not move (checked after
                    each run)

(i) ``register``    our ``register_user`` handler end to end, a new email each time: the
                    user's data key made, email, name and password hash sealed with it,
                    the email's claim keyed by its HMAC, the account opened; passwords
                    hashed with the tests' cheap argon2 parameters, so the figure is the
                    command's cost, not the hash's
(j) ``login``       ``Login.log_in`` of users registered before the run (untimed): the
                    attempt limits, the users read model, the write model's check, the
                    password verified (cheap parameters again), a token issued

Customers are funded before measuring through sandbox top-ups (``pm_card_visa``), their
notifications delivered at once; (f), (g) and (h) have a database, a runtime and
customers of their own, so that their top-ups neither grow (c)'s store nor take its
aggregate cache; as in (c), each thread serves customers of its own, so that a conflict
needs a bug to happen. The ratios compare (c), (f), (g) and (i) with (b), and (h) and (j) with (e).

It prints a table and writes ``bench/results/commands.json``::

    {"figures": {name: {"value": v, "unit": u}}, "ratios": {name: r}, "meta": {...}}

PostgreSQL: ``PREP_ES_BENCH_DATABASE_URL`` names a database to run in (measurements use
separate tables there; nothing is dropped). Unset, the bench creates fresh databases
``prep_es_bench_<random>_{raw,es,cmd,pay,load}`` on ``postgresql://postgres@127.0.0.1:5432``
and drops them at the end, also on failure.

``--profile SECONDS`` instead profiles (c) at 1 thread with cProfile and prints the
hotspots (cumulative), and where the time goes by package.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import statistics
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate as LibraryAggregate
from eventsourcing.utils import Environment, EnvType
from psycopg import sql
from psycopg_pool import ConnectionPool

from aggregates.account import Account
from aggregates.errors import DomainError
from aggregates.payment_notification import NotificationOutcome
from aggregates.top_up import TopUpStatus
from bench import reporting
from bench.databases import (
    DATABASE_PREFIX,
    SERVER_URL_DEFAULT,
    URL_VARIABLE,
    ScratchDatabases,
    postgres_location,
)
from bench.reporting import run_meta
from commands.bookings import RequestBooking
from commands.context import Actor, CommandContext
from commands.top_ups import RequestTopUp
from commands.users import RegisterUser
from prep_es.payments.sandbox_notifications import read_event
from prep_es.services.container import open_services
from prep_es.services.passwords import Argon2Passwords
from prep_es.services.runtime import Runtime, open_runtime
from prep_es.store.eventstore import open_application
from prep_es.store.settings import Settings
from tests.support import (
    PASSWORD,
    TEST_PAYMENT_SETTINGS,
    as_actor,
    create_user,
    master_key_settings,
    publish_compliant_kitchen,
    store_settings,
    top_up,
)

THREAD_COUNTS: Final = (1, 4)
POOL_SIZE: Final = 10
"""Connections per pool, the same for every floor and for Prep ES (its default)."""
RAW_PAYLOAD: Final = os.urandom(200)
"""About the size of one stored event's state."""

NOW: Final = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)
"""The fixed clock of the booking bench: a Monday, 09:00 in Los Angeles."""
LOS_ANGELES: Final = ZoneInfo("America/Los_Angeles")
OPENS_AT_HOUR: Final = 5
SLOTS_PER_DAY: Final = 18  # 1-hour slots, 05:00–23:00 local
CERTIFICATES_EXPIRE_ON: Final = date(2035, 12, 31)
FUNDING_CENTS: Final = 100_000_000  # a million dollars: holds never run out
HOSTS: Final = 5

TOP_UP_CENTS: Final = 1_000
"""Each top-up of (f) and (g): far below the day's limit per customer."""
SUCCEEDING_CARD: Final = "pm_card_visa"
NOTIFICATIONS_PER_S_FIRST_GUESS: Final = 500.0
"""How fast (g) is assumed to go before its first run says."""
NOTIFICATION_SUPPLY_MARGIN: Final = 1.5
"""Notifications ready before each run of (g): this many times what the fastest run so
far would receive in a measured run."""
NOTIFICATIONS_KEPT_FOR_DUPLICATES: Final = 1_000
LANES: Final = max(THREAD_COUNTS)
"""The customers of (f), (g) and (h) fall in this many lanes (customer number modulo
it); each thread serves whole lanes, so that two threads never race for one account
and a conflict needs a bug to happen, as in (c). Lanes prepare in a thread each."""
FLOOR_AGGREGATES_TO_GET: Final = 1_000

ACCOUNT_LOAD_SAMPLES: Final = 100
ACCOUNT_GROW_BATCH: Final = 1000


@dataclass(frozen=True)
class Plan:
    """How long and how big: the full run, or the reduced ``--quick`` one."""

    mode: str
    rounds: int
    duration_s: float
    """Per run; each workload runs ``rounds`` times at each thread count."""
    warmup_s: float
    kitchens: int
    customers: int
    account_events_large: int


FULL = Plan("full", 3, 4.0, 1.0, 50, 200, 100_000)
QUICK = Plan("quick", 2, 1.5, 0.5, 12, 40, 10_000)


# --- databases -------------------------------------------------------------------


@dataclass
class Databases:
    """Where each measurement runs: its own fresh database, or its own tables in the
    database named by ``PREP_ES_BENCH_DATABASE_URL``."""

    given_url: str | None
    scratch: ScratchDatabases = field(
        default_factory=lambda: ScratchDatabases(server_url=SERVER_URL_DEFAULT)
    )

    @property
    def token(self) -> str:
        return self.scratch.token

    def url(self, purpose: str) -> str:
        return self.given_url if self.given_url is not None else self.scratch.create(purpose)

    def table_prefix(self) -> str:
        """Distinct table names per run when sharing a given database."""
        return f"bench_{self.token}"

    def drop_all(self) -> None:
        self.scratch.drop_all()


# --- the throughput harness ------------------------------------------------------

Op = Callable[[], str | None]
"""One operation: ``None`` when it succeeded, else a label for how it was refused."""


@dataclass
class Run:
    name: str
    threads: int
    elapsed_s: float
    succeeded: int
    refused: Counter[str]
    latencies_ns: list[int]

    @property
    def ops_per_s(self) -> float:
        return self.succeeded / self.elapsed_s

    def latency_ms(self, quantile: float) -> float:
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))
        return ordered[index] / 1e6

    def summary(self) -> str:
        return (
            f"{self.name}_{self.threads}t".ljust(26)
            + f" {self.ops_per_s:9.1f} ops/s  p50 {self.latency_ms(0.5):7.2f} ms  "
            f"p99 {self.latency_ms(0.99):7.2f} ms  ({self.succeeded} ok, "
            f"{sum(self.refused.values())} refused, {self.elapsed_s:.1f} s)"
        )


def run_threads(
    name: str, threads: int, duration_s: float, make_op: Callable[[int, int], Op]
) -> Run:
    """Run ``make_op(thread_index, threads)`` in ``threads`` threads for ``duration_s``,
    all starting together; latency counts successful operations only."""
    ops = [make_op(index, threads) for index in range(threads)]
    barrier = threading.Barrier(threads + 1)
    latencies: list[list[int]] = [[] for _ in range(threads)]
    refusals: list[Counter[str]] = [Counter() for _ in range(threads)]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        op, mine, refused = ops[index], latencies[index], refusals[index]
        barrier.wait()
        deadline = time.perf_counter() + duration_s
        clock = time.perf_counter_ns
        while time.perf_counter() < deadline:
            started = clock()
            try:
                outcome = op()
            except Exception as error:  # counted, and the first one is shown
                if not failures:
                    failures.append(error)
                    traceback.print_exc()
                outcome = type(error).__name__
            if outcome is None:
                mine.append(clock() - started)
            else:
                refused[outcome] += 1

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    all_latencies = [value for chunk in latencies for value in chunk]
    refused = sum(refusals, Counter[str]())
    if not all_latencies:
        raise RuntimeError(f"{name} at {threads} thread(s): no operation succeeded") from (
            failures[0] if failures else None
        )
    return Run(name, threads, elapsed, len(all_latencies), refused, all_latencies)


@dataclass
class Workload:
    """One throughput measurement, opened and ready: ``factory()`` gives the
    ``make_op`` of one run (a run may need fresh state, like unused booking days)."""

    name: str
    factory: Callable[[], Callable[[int, int], Op]]
    retries: Callable[[], int] | None = None
    """Conflict retries so far (the handler's counter), if the workload retries."""
    after_run: Callable[[Run], None] | None = None
    """Told each run (warm-ups too), to check what it did or to size the next one."""


@dataclass
class Totals:
    """Every run of one workload at one thread count, across rounds."""

    runs: list[Run] = field(default_factory=list)
    retries: int = 0

    def merged(self) -> Run:
        first = self.runs[0]
        return Run(
            first.name,
            first.threads,
            sum(run.elapsed_s for run in self.runs),
            sum(run.succeeded for run in self.runs),
            sum((run.refused for run in self.runs), Counter[str]()),
            [value for run in self.runs for value in run.latencies_ns],
        )


def measure_interleaved(workloads: list[Workload], plan: Plan) -> dict[tuple[str, int], Totals]:
    """Rounds of every workload at 1 then 4 threads, one after the other, so that any
    change in the machine's background load falls on every workload alike."""
    totals: dict[tuple[str, int], Totals] = {}
    for round_number in range(1, plan.rounds + 1):
        print(f"   round {round_number}/{plan.rounds}", flush=True)
        for threads in THREAD_COUNTS:
            for workload in workloads:
                warmup = run_threads(workload.name, threads, plan.warmup_s, workload.factory())
                if workload.after_run:
                    workload.after_run(warmup)
                retries_before = workload.retries() if workload.retries else 0
                run = run_threads(workload.name, threads, plan.duration_s, workload.factory())
                if workload.after_run:
                    workload.after_run(run)
                total = totals.setdefault((workload.name, threads), Totals())
                total.runs.append(run)
                if workload.retries:
                    total.retries += workload.retries() - retries_before
                print(f"     {run.summary()}", flush=True)
    return totals


# --- (a) raw psycopg ---------------------------------------------------------------


@contextmanager
def raw_insert_workload(url: str, table: str) -> Iterator[Workload]:
    location = postgres_location(url)
    pool = ConnectionPool(location.conninfo(), min_size=POOL_SIZE, max_size=POOL_SIZE, open=True)
    try:
        pool.wait()
        table_name = sql.Identifier(table)
        with pool.connection() as connection:
            connection.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, payload bytea NOT NULL)"
                ).format(table_name)
            )
        insert = sql.SQL("INSERT INTO {} (id, payload) VALUES (%s, %s)").format(table_name)

        def make_op(_: int, __: int) -> Op:
            def op() -> None:
                with pool.connection() as connection:  # commits on leaving the block
                    connection.execute(insert, (uuid4(), RAW_PAYLOAD))

            return op

        yield Workload("raw_insert", lambda: make_op)
    finally:
        pool.close()


# --- (b) bare eventsourcing ------------------------------------------------------------


class FloorAggregate(LibraryAggregate):
    """A trivial aggregate: one ``Created`` event."""


class FloorApplication(Application[UUID]):
    """eventsourcing's own application: default mapper and JSON transcoder, no
    snapshots, no cache. Configured only by the ``env`` it is given."""

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))


def floor_env(url: str) -> dict[str, str]:
    location = postgres_location(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": location.dbname,
        "POSTGRES_HOST": location.host,
        "POSTGRES_PORT": str(location.port),
        "POSTGRES_USER": location.user,
        "POSTGRES_PASSWORD": location.password,
        "POSTGRES_POOL_SIZE": str(POOL_SIZE),
        "POSTGRES_MAX_OVERFLOW": "0",
        "CREATE_TABLE": "y",
    }


@contextmanager
def es_floor_workloads(url: str, app_name: str) -> Iterator[tuple[Workload, Workload]]:
    """(b) ``es_save`` and (e) ``es_get``, on one application."""

    class NamedFloorApplication(FloorApplication):
        name = app_name  # tables {name}_events, distinct per run

    app = NamedFloorApplication(env=floor_env(url))
    try:

        def make_save_op(_: int, __: int) -> Op:
            def op() -> None:
                app.save(FloorAggregate())

            return op

        saved = [FloorAggregate() for _ in range(FLOOR_AGGREGATES_TO_GET)]
        app.save(*saved)
        saved_ids = [aggregate.id for aggregate in saved]

        def make_get_op(index: int, __: int) -> Op:
            ids = itertools.cycle(saved_ids[index:] + saved_ids[:index])

            def op() -> None:
                app.repository.get(next(ids))

            return op

        yield Workload("es_save", lambda: make_save_op), Workload("es_get", lambda: make_get_op)
    finally:
        app.close()


# --- (c) our request-booking handler ---------------------------------------------------


def fixed_clock() -> datetime:
    return NOW


@dataclass
class Marketplace:
    runtime: Runtime
    kitchen_ids: list[UUID]
    customers: list[Actor]
    next_day: int = 1
    """Days after ``NOW`` not yet used by any booking run."""


def open_booking_runtime(url: str) -> Runtime:
    """Prep ES's defaults but for the sandbox's: the tests' payment settings (limits out
    of the way of a million-dollar funding, notifications due at once, each sent once),
    delivered by the bench itself, not by a thread of the sandbox's."""
    return open_runtime(
        open_booking_runtime_settings(url),
        clock=fixed_clock,
        passwords=Argon2Passwords.cheap_for_tests(),
    )


def open_booking_runtime_settings(url: str) -> Settings:
    return Settings.model_validate(
        {
            "database_url": url,
            **master_key_settings(url),
            "aggregate_cache_size": Settings.model_fields["aggregate_cache_size"].default,
            "postgres_pool_size": POOL_SIZE,
            **TEST_PAYMENT_SETTINGS,
        }
    )


def build_marketplace(runtime: Runtime, plan: Plan, tag: str) -> Marketplace:
    """Published, compliant Los Angeles kitchens and funded customers, all made through
    the command handlers."""
    admin = create_user(runtime, "admin", f"admin-{tag}@bench.example.com")
    hosts = [create_user(runtime, "host", f"host{i}-{tag}@bench.example.com") for i in range(HOSTS)]
    kitchen_ids = [
        publish_compliant_kitchen(
            runtime,
            hosts[i % HOSTS],
            admin,
            capacity=10,
            certificates_expire_on=CERTIFICATES_EXPIRE_ON,
        )
        for i in range(plan.kitchens)
    ]
    customers = []
    for i in range(plan.customers):
        customer = create_user(runtime, "customer", f"customer{i}-{tag}@bench.example.com")
        top_up(runtime, customer, FUNDING_CENTS)
        customers.append(customer)
    return Marketplace(runtime, kitchen_ids, customers)


def slot_start(day: int, slot: int) -> datetime:
    local_day = (NOW.astimezone(LOS_ANGELES) + timedelta(days=day)).date()
    local = datetime(
        local_day.year, local_day.month, local_day.day, OPENS_AT_HOUR + slot, tzinfo=LOS_ANGELES
    )
    return local.astimezone(UTC)


def booking_op_factory(market: Marketplace) -> Callable[[int, int], Op]:
    """Each run books days no run used before; each thread walks its own kitchens and
    customers through consecutive 1-hour slots, so conflicts need a bug to happen."""
    first_day = market.next_day
    last_day = [first_day]
    lock = threading.Lock()
    bookings = market.runtime.commands.bookings

    def make_op(index: int, threads: int) -> Op:
        kitchens = market.kitchen_ids[index::threads]
        customers = market.customers[index::threads]
        assert kitchens and customers, "more threads than kitchens or customers"
        counter = itertools.count()

        def op() -> str | None:
            n = next(counter)
            slot = n // len(kitchens)
            day = first_day + slot // SLOTS_PER_DAY
            if day > last_day[0]:
                with lock:
                    last_day[0] = max(last_day[0], day)
                    market.next_day = last_day[0] + 1
            start = slot_start(day, slot % SLOTS_PER_DAY)
            customer = customers[n % len(customers)]
            try:
                bookings.request_booking(
                    RequestBooking(
                        kitchen_id=kitchens[n % len(kitchens)],
                        start_time=start,
                        end_time=start + timedelta(hours=1),
                        guests=2,
                    ),
                    as_actor(customer, f"bench-{first_day}-{index}-{n}"),
                )
            except DomainError as error:
                return f"{type(error).__name__}:{error.code}"
            return None

        return op

    market.next_day = first_day + 1
    return make_op


@contextmanager
def booking_workload(url: str, plan: Plan, tag: str) -> Iterator[Workload]:
    runtime = open_booking_runtime(url)
    try:
        started = time.perf_counter()
        market = build_marketplace(runtime, plan, tag)
        print(
            f"   booking setup: {plan.kitchens} kitchens, {plan.customers} funded customers "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        processor = runtime.commands.processor
        yield Workload(
            "booking", lambda: booking_op_factory(market), lambda: processor.conflicts_total
        )
    finally:
        runtime.close()


# --- (f), (g), (h) top-ups and the provider's notifications -----------------------------

Notification = tuple[bytes, Mapping[str, str]]
"""A sandbox notification as it is delivered: its payload and its signed headers."""


@dataclass
class PaymentDesk:
    """What (f), (g) and (h) share: a runtime of their own, its customers, and the
    sandbox's notifications taken from its outbox, not yet received (by lane) or
    received once."""

    runtime: Runtime
    customers: list[Actor]
    unreceived: list[deque[Notification]] = field(
        default_factory=lambda: [deque() for _ in range(LANES)]
    )
    received: deque[Notification] = field(
        default_factory=lambda: deque(maxlen=NOTIFICATIONS_KEPT_FOR_DUPLICATES)
    )
    notifications_per_s_max: float = NOTIFICATIONS_PER_S_FIRST_GUESS
    lane_of_top_up: dict[UUID, int] = field(default_factory=dict)

    def lane_customers(self, lane: int) -> list[Actor]:
        return self.customers[lane::LANES]

    def request_top_up(self, customer: Actor, lane: int) -> TopUpStatus:
        started = self.runtime.commands.top_ups.request_top_up(
            RequestTopUp(amount_cents=TOP_UP_CENTS, payment_method=SUCCEEDING_CARD),
            as_actor(customer, uuid4().hex),
        ).result
        self.lane_of_top_up[started.id] = lane
        return started.status

    def unreceived_count(self) -> int:
        return sum(len(lane) for lane in self.unreceived)

    def take_queued_notifications(self) -> None:
        """Move what the sandbox has queued (due at once) to ``unreceived``, as its
        delivery thread would take it, without receiving it yet."""
        sandbox = self.runtime.payment_provider.sandbox
        assert sandbox is not None, "the bench's runtime pays through the sandbox"

        def keep(payload: bytes, headers: Mapping[str, str]) -> None:
            subject_id = read_event(payload).subject_id
            lane = None if subject_id is None else self.lane_of_top_up.pop(subject_id, None)
            if lane is None:  # not ours (a shared database's): received as it comes
                self.runtime.deliver_sandbox_notification(payload, headers)
            else:
                self.unreceived[lane].append((payload, dict(headers)))

        while sandbox.deliver_due(keep):
            pass

    def prepare_notifications(self, duration_s: float) -> None:
        """Enough unreceived notifications in each lane for a run of ``duration_s`` at
        the fastest rate seen, with a margin: top-ups made through the handler, a thread
        per lane, untimed."""
        self.take_queued_notifications()
        wanted = round(
            NOTIFICATION_SUPPLY_MARGIN * self.notifications_per_s_max * duration_s / LANES
        )

        def make(lane: int) -> None:
            customers = self.lane_customers(lane)
            for turn in range(wanted - len(self.unreceived[lane])):
                self.request_top_up(customers[turn % len(customers)], lane)

        with ThreadPoolExecutor(max_workers=LANES) as pool:
            list(pool.map(make, range(LANES)))
        self.take_queued_notifications()

    def receive(self, notification: Notification) -> tuple[NotificationOutcome, bool]:
        payload, headers = notification
        receipt = self.runtime.receive_notification("sandbox", payload, headers, uuid4().hex).result
        return receipt.outcome, receipt.duplicate


def top_up_op_factory(desk: PaymentDesk) -> Callable[[int, int], Op]:
    def make_op(index: int, threads: int) -> Op:
        turns = itertools.cycle(
            [
                (customer, lane)
                for lane in range(index, LANES, threads)
                for customer in desk.lane_customers(lane)
            ]
        )

        def op() -> str | None:
            status = desk.request_top_up(*next(turns))
            return None if status == TopUpStatus.PROCESSING else f"status:{status}"

        return op

    return make_op


def notification_op_factory(desk: PaymentDesk, plan: Plan) -> Callable[[int, int], Op]:
    desk.prepare_notifications(plan.duration_s)

    def make_op(index: int, threads: int) -> Op:
        lanes = [desk.unreceived[lane] for lane in range(index, LANES, threads)]
        turns = itertools.cycle(lanes)

        def op() -> str | None:
            for _ in lanes:  # the next lane that has one
                lane = next(turns)
                if lane:
                    notification = lane.popleft()
                    break
            else:
                return "supply_exhausted"
            outcome, duplicate = desk.receive(notification)
            if duplicate or outcome != NotificationOutcome.APPLIED:
                return f"outcome:{outcome}{':duplicate' if duplicate else ''}"
            desk.received.append(notification)
            return None

        return op

    return make_op


def duplicate_op_factory(desk: PaymentDesk) -> Callable[[int, int], Op]:
    received = list(desk.received)
    assert received, "(g) runs before (h): it receives what (h) sends again"

    def make_op(index: int, __: int) -> Op:
        notifications = itertools.cycle(received[index:] + received[:index])

        def op() -> str | None:
            outcome, duplicate = desk.receive(next(notifications))
            return None if duplicate else f"outcome:{outcome}:not_duplicate"

        return op

    return make_op


@contextmanager
def payment_workloads(url: str, plan: Plan, tag: str) -> Iterator[list[Workload]]:
    runtime = open_booking_runtime(url)
    try:
        customers = [
            create_user(runtime, "customer", f"payer{i}-{tag}@bench.example.com")
            for i in range(plan.customers)
        ]
        desk = PaymentDesk(runtime, customers)
        started = time.perf_counter()
        desk.prepare_notifications(plan.warmup_s)
        print(
            f"   payments setup: {plan.customers} customers, {desk.unreceived_count()} "
            f"notifications ready in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        def learn_rate(run: Run) -> None:
            desk.notifications_per_s_max = max(desk.notifications_per_s_max, run.ops_per_s)

        position_before = [0]

        def duplicates_factory() -> Callable[[int, int], Op]:
            position_before[0] = runtime.app.position()
            return duplicate_op_factory(desk)

        def check_nothing_changed(run: Run) -> None:
            position = runtime.app.position()
            assert position == position_before[0], (
                f"{run.succeeded} duplicate notifications moved the store from "
                f"{position_before[0]} to {position}"
            )

        processor = runtime.commands.processor
        yield [
            Workload("top_up", lambda: top_up_op_factory(desk), lambda: processor.conflicts_total),
            Workload(
                "notification",
                lambda: notification_op_factory(desk, plan),
                lambda: processor.conflicts_total,
                after_run=learn_rate,
            ),
            Workload("duplicate_notification", duplicates_factory, after_run=check_nothing_changed),
        ]
    finally:
        runtime.close()


# --- (i), (j) registration and login ---------------------------------------------------

BENCH_JWT_SECRET: Final = "bench-" + "k3Q9vX2mZ7pL4sT8wR6yB1nH5cJ0fG" * 2
"""Signs the login bench's tokens (long and random-looking enough to be accepted)."""
PROJECTIONS_CATCH_UP_S: Final = 300.0


@contextmanager
def user_workloads(url: str, plan: Plan, tag: str) -> Iterator[list[Workload]]:
    """(i) and (j) on a store of their own, with the services a login goes through."""
    settings = Settings.model_validate(
        {
            **open_booking_runtime_settings(url).model_dump(),
            "jwt_secret": BENCH_JWT_SECRET,
        }
    )
    services = open_services(
        settings, clock=fixed_clock, passwords=Argon2Passwords.cheap_for_tests()
    )
    try:
        users = services.runtime.commands.users
        registered = itertools.count()

        def register(n: int) -> str:
            email = f"person{n}-{tag}@bench.example.com"
            users.register_user(
                RegisterUser(
                    email=email, password=PASSWORD, full_name=f"Person Nº{n}", role="customer"
                ),
                CommandContext(actor=None),
            )
            return email

        emails = [register(next(registered)) for _ in range(plan.customers)]

        def projections_caught_up(_: Run | None = None) -> None:
            # Registrations are projected in this process's background: waited for, so
            # that their projection is not measured as part of the next workload.
            position = services.runtime.app.position()
            for projection in services.projections:
                services.read_positions.wait_for(projection.name, position, PROJECTIONS_CATCH_UP_S)

        projections_caught_up()

        def register_factory() -> Callable[[int, int], Op]:
            def make_op(index: int, threads: int) -> Op:
                def op() -> str | None:
                    try:
                        register(next(registered))
                    except DomainError as error:
                        return f"{type(error).__name__}:{error.code}"
                    return None

                return op

            return make_op

        def login_factory() -> Callable[[int, int], Op]:
            def make_op(index: int, threads: int) -> Op:
                mine = emails[index::threads]
                turn = itertools.count()

                def op() -> str | None:
                    email = mine[next(turn) % len(mine)]
                    try:
                        services.login.log_in(email, PASSWORD, client=f"10.0.0.{index}")
                    except DomainError as error:
                        return f"{type(error).__name__}:{error.code}"
                    return None

                return op

            return make_op

        processor = services.runtime.commands.processor
        yield [
            Workload(
                "register",
                register_factory,
                lambda: processor.conflicts_total,
                after_run=projections_caught_up,
            ),
            Workload("login", login_factory),
        ]
    finally:
        services.close()


# --- (d) account load ---------------------------------------------------------------------


def bench_account_load(url: str, plan: Plan, report: Report) -> tuple[float, float, float, float]:
    """Median load time (cache disabled) of an account with 100 events and of one with
    ``plan.account_events_large`` events, then of both 99 events past their snapshots.

    The two accounts live in one store and their loads alternate, so a change in the
    machine's background load falls on both alike."""
    app = open_application(store_settings(url, aggregate_cache_size=0))
    try:
        small = Account(owner_id=uuid4())
        large = Account(owner_id=uuid4())

        def grow_to(account: Account, version: int) -> None:
            while account.version < version:
                for _ in range(min(ACCOUNT_GROW_BATCH, version - account.version)):
                    account.trigger_event(Account.FundsDeposited, entry_id=uuid4(), amount_cents=1)
                app.save(account)

        def load_ns(account: Account) -> int:
            started = time.perf_counter_ns()
            loaded: Account = app.repository.get(account.id)
            elapsed = time.perf_counter_ns() - started
            assert loaded.version == account.version, (loaded.version, account.version)
            return elapsed

        def median_loads_ms() -> tuple[float, float]:
            for _ in range(5):
                load_ns(small)
                load_ns(large)
            samples: tuple[list[int], list[int]] = ([], [])
            for _ in range(ACCOUNT_LOAD_SAMPLES):
                samples[0].append(load_ns(small))
                samples[1].append(load_ns(large))
            return statistics.median(samples[0]) / 1e6, statistics.median(samples[1]) / 1e6

        events = plan.account_events_large
        name = f"{events // 1000}k"
        grow_to(small, 100)
        started = time.perf_counter()
        grow_to(large, events)
        print(
            f"   account grown to {events} events in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        small_ms, large_ms = median_loads_ms()
        report.figure("account_load_100_ms", small_ms, "ms")
        report.figure(f"account_load_{name}_ms", large_ms, "ms")
        grow_to(small, 199)
        grow_to(large, events + 99)
        small_past_ms, large_past_ms = median_loads_ms()
        report.figure("account_load_199_ms", small_past_ms, "ms")
        report.figure(f"account_load_{name}_plus_99_ms", large_past_ms, "ms")
        return small_ms, large_ms, small_past_ms, large_past_ms
    finally:
        app.close()


# --- reporting ------------------------------------------------------------------------------


@dataclass
class Report(reporting.Report):
    """The shared report, plus the figures of one run's totals."""

    def add_totals(self, totals: Totals, *, with_retries: bool) -> Run:
        run = totals.merged()
        prefix = f"{run.name}_{run.threads}t"
        self.figure(f"{prefix}_ops_per_s", run.ops_per_s, "ops/s")
        self.figure(f"{prefix}_p50_ms", run.latency_ms(0.50), "ms")
        self.figure(f"{prefix}_p99_ms", run.latency_ms(0.99), "ms")
        if run.refused or with_retries:
            self.figure(f"{prefix}_refused", sum(run.refused.values()), "count")
        if with_retries:
            self.figure(f"{prefix}_retries", totals.retries, "count")
        for label, count in sorted(run.refused.items()):
            self.notes.append(f"{prefix}: {count} refused ({label})")
        rates = ", ".join(f"{r.ops_per_s:.0f}" for r in totals.runs)
        self.notes.append(f"{prefix}: ops/s by round {rates}")
        return run


TARGETS: Final = {
    "booking_vs_es_save_4t": ">= 1.5 (needs group commit)",
    "account_load_100k_vs_100": "<= 2",
}


# --- main ---------------------------------------------------------------------------------------


@contextmanager
def databases() -> Iterator[Databases]:
    given = os.environ.get(URL_VARIABLE) or None
    if given is not None:
        postgres_location(given)
    store = Databases(given_url=given)
    try:
        yield store
    finally:
        store.drop_all()


def run_benchmarks(plan: Plan) -> None:
    report = Report("commands", TARGETS)
    started = time.perf_counter()
    with databases() as store, ExitStack() as stack:
        where = store.given_url and postgres_location(store.given_url).dbname
        print(
            f"bench/command_handling.py ({plan.mode}): PostgreSQL "
            f"{where or 'fresh databases ' + DATABASE_PREFIX + store.token + '_*'}",
            flush=True,
        )
        prefix = store.table_prefix()
        print(
            "setup: (a) raw psycopg insert+commit, (b) bare eventsourcing save, "
            "(c) request_booking handler, (e) bare eventsourcing get, (f) request_top_up, "
            "(g) notifications received, (h) duplicate notifications, (i) register_user, "
            "(j) login",
            flush=True,
        )
        es_save, es_get = stack.enter_context(
            es_floor_workloads(store.url("es"), f"{prefix}_floor")
        )
        workloads = [
            stack.enter_context(raw_insert_workload(store.url("raw"), f"{prefix}_raw")),
            es_save,
            stack.enter_context(booking_workload(store.url("cmd"), plan, store.token)),
            es_get,
            *stack.enter_context(payment_workloads(store.url("pay"), plan, store.token)),
            *stack.enter_context(user_workloads(store.url("usr"), plan, store.token)),
        ]
        totals = measure_interleaved(workloads, plan)
        stack.close()
        rates: dict[tuple[str, int], float] = {}
        for threads in THREAD_COUNTS:
            for workload in workloads:
                run = report.add_totals(
                    totals[workload.name, threads], with_retries=workload.retries is not None
                )
                rates[workload.name, threads] = run.ops_per_s
        print("(d) account load (cache disabled)", flush=True)
        loads = bench_account_load(store.url("load"), plan, report)

    for threads in THREAD_COUNTS:
        report.ratio(
            f"booking_vs_es_save_{threads}t",
            rates["booking", threads],
            rates["es_save", threads],
        )
        report.ratio(
            f"es_save_vs_raw_insert_{threads}t",
            rates["es_save", threads],
            rates["raw_insert", threads],
        )
        report.ratio(
            f"top_up_vs_es_save_{threads}t", rates["top_up", threads], rates["es_save", threads]
        )
        report.ratio(
            f"notification_vs_es_save_{threads}t",
            rates["notification", threads],
            rates["es_save", threads],
        )
        report.ratio(
            f"duplicate_notification_vs_es_get_{threads}t",
            rates["duplicate_notification", threads],
            rates["es_get", threads],
        )
        report.ratio(
            f"register_vs_es_save_{threads}t", rates["register", threads], rates["es_save", threads]
        )
        report.ratio(
            f"login_vs_es_get_{threads}t", rates["login", threads], rates["es_get", threads]
        )
    report.ratio("account_load_100k_vs_100", loads[1], loads[0])
    report.ratio("account_load_100k_plus_99_vs_199", loads[3], loads[2])
    if plan.account_events_large != 100_000:
        report.notes.append(
            "quick mode: account_load_100k_vs_100 and _plus_99_vs_199 are measured at "
            f"{plan.account_events_large} events, not 100k"
        )
    if store.given_url is not None:
        report.notes.append(
            f"ran in the given database {where} (separate tables; (c), (d) and (f) to (h) "
            "share the prep_es and sandbox tables)"
        )
    report.print_table()
    meta = {
        "mode": plan.mode,
        "threads": list(THREAD_COUNTS),
        "rounds": plan.rounds,
        "run_s": plan.duration_s,
        "kitchens": plan.kitchens,
        "customers": plan.customers,
        "account_events_large": plan.account_events_large,
        "top_up_cents": TOP_UP_CENTS,
        "notifications_kept_for_duplicates": NOTIFICATIONS_KEPT_FOR_DUPLICATES,
        "pool_size": POOL_SIZE,
        "psycopg_impl": psycopg.pq.__impl__,
        "load_average": list(os.getloadavg()),
        **run_meta(started),
    }
    report.write(meta)


PROJECT_PACKAGES: Final = ("aggregates", "commands", "prep_es")
LIBRARY_PACKAGES: Final = ("eventsourcing", "psycopg_pool", "psycopg", "pydantic", "orjson")


def package_of(filename: str) -> str:
    parts = Path(filename).parts
    for package in (*PROJECT_PACKAGES, *LIBRARY_PACKAGES):
        if package in parts:
            return package if package not in PROJECT_PACKAGES else f"ours:{package}"
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    return "stdlib/other"


def profile_booking(plan: Plan, seconds: float) -> None:
    """cProfile of (c) at 1 thread, in the main thread."""
    with databases() as store:
        runtime = open_booking_runtime(store.url("cmd"))
        try:
            market = build_marketplace(runtime, plan, store.token)
            op = booking_op_factory(market)(0, 1)
            for _ in range(200):  # warm the cache, prepared statements, imports
                op()
            profiler = cProfile.Profile()
            count = 0
            deadline = time.perf_counter() + seconds
            profiler.enable()
            while time.perf_counter() < deadline:
                op()
                count += 1
            profiler.disable()
        finally:
            runtime.close()
    stats = pstats.Stats(profiler)
    print(f"profiled {count} bookings in {seconds:.0f} s (1 thread, under cProfile)\n")
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(40)
    print(buffer.getvalue())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_package: Counter[str] = Counter()
    for (filename, _, _), (_, _, tottime, _, _) in raw.items():
        by_package[package_of(filename)] += tottime
    total = sum(by_package.values())
    print("self time by package:")
    for package, seconds_spent in by_package.most_common():
        print(f"  {package:<20} {seconds_spent:7.2f} s  {100 * seconds_spent / total:5.1f} %")
    ours = sorted(
        (
            (cumtime, f"{Path(filename).parent.name}/{Path(filename).name}:{line} {function}")
            for (filename, line, function), (_, _, _, cumtime, _) in raw.items()
            if package_of(filename).startswith("ours:")
        ),
        reverse=True,
    )
    print("\nour code, top 10 cumulative:")
    for cumtime, where in ours[:10]:
        print(f"  {cumtime:7.2f} s  {where}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="reduced run for checks (< 3 min)")
    parser.add_argument(
        "--profile",
        type=float,
        metavar="SECONDS",
        help="instead of benchmarking, cProfile (c) at 1 thread for SECONDS",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.profile:
        profile_booking(plan, args.profile)
    else:
        run_benchmarks(plan)


if __name__ == "__main__":
    main()
