"""HTTP throughput and latency on PostgreSQL, each against its floor.

Run by ``make bench`` (``.venv/bin/python -m bench.http_api``); ``--quick`` is a reduced run
for checks (under 3 minutes). Servers run as in production — uvicorn, 2 worker
processes, no access log — and ``wrk`` (from Debian; ``make bench`` installs it when it
can) loads them over loopback with 32 connections for a bounded time, after a warm-up:

(a) ``naive_save``   a bare FastAPI route doing one eventsourcing ``save`` of a new
                     aggregate (a ``def`` route, the library's PostgreSQL recorder): the
                     naive floor of a write (``bench/servers/floor.py``)
(b) ``constant``     a bare FastAPI route returning a constant (same server)
(c) ``booking``      our ``POST /api/v1/bookings`` (``prep-es serve --workers 2``,
                     projectors and sweeper in-process, Redis cache on), real tokens,
                     distinct customers and slots so that conflicts are rare
(d) ``search``       our ``GET /api/v1/kitchens`` over >= 10k kitchens and >= 100k
                     bookings, each request a different city, availability window and
                     capacity (so the query cache rarely answers; each API worker's
                     search index does, built at its first search, in the warm-up)
(e) ``detail``       our ``GET /api/v1/kitchens/{id}`` with the Redis cache on, warmed
                     (a longer warm-up: each worker also makes its own published pages;
                     it goes on until the throughput stops rising)

(c), (d) and (e) are measured twice, in two shapes of our server: ``in_process`` (as
above: the figures without a suffix, which the targets are set against) and ``scaled``,
the documented production shape (``prep-es serve --workers 2 --no-projector`` and one
``prep-es project`` process running the projectors and the sweeper, on the same
machine): the figures suffixed ``_scaled``. ``--in-process-only`` skips the second.

Data is seeded through the command handlers in this process (4 threads), then every
projection catches up, then the database is VACUUMed (ANALYZE), as autovacuum would
have done to a database holding this much (it is off on some test servers; the JSON
meta says how the server is set), before the server starts. Figures: requests/s
(successful only),
p50 / p99 latency (wrk's, over all requests), the load generator's share of the CPUs
(it must not be the bottleneck), and the API workers' peak resident set (``VmHWM``).
While (c) runs, a probe asks ``GET /healthz`` (the one ``async`` route, answered on the
workers' event loops) one request at a time: ``healthz_during_booking_p50/p99_ms`` far
below the bookings' own latency shows that no route blocks an event loop on I/O.
It prints a table and writes ``bench/results/http.json``::

    {"figures": {name: {"value": v, "unit": u}}, "ratios": {name: r}, "notes": [...],
     "meta": {...}}

PostgreSQL: ``PREP_ES_BENCH_DATABASE_URL`` names a database for our server (seeded
there; nothing is dropped); the floor always gets a fresh database. Unset, the bench
creates fresh databases ``prep_es_bench_<random>_{http,floor}`` on
``postgresql://postgres@127.0.0.1:5432`` and drops them at the end, also on failure.
Redis: ``PREP_ES_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/14``), a database
the bench empties first (cache entries of an earlier run would be refused anyway).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import orjson
import psycopg
import redis

from aggregates.errors import DomainError
from bench import reporting
from bench.databases import (
    SERVER_URL_DEFAULT,
    URL_VARIABLE,
    ScratchDatabases,
    postgres_location,
)
from bench.load import LOAD_THREADS, Load, line, require_wrk, run_wrk
from bench.processes import (
    Server,
    clean_environment,
    free_port,
    memory_kb,
    server,
    wait_for_projections,
)
from bench.reporting import ROOT, run_meta
from commands.bookings import RequestBooking
from commands.context import Actor, CommandContext
from commands.kitchens import (
    AttachCertificate,
    CertificateAction,
    CreateKitchen,
    KitchenAction,
)
from commands.top_ups import RequestTopUp
from commands.users import CreateUser
from prep_es.services.auth import TokenService
from prep_es.services.passwords import Argon2Passwords
from prep_es.services.readside import open_read_side, start_projectors
from prep_es.services.runtime import Runtime, open_runtime, system_clock
from prep_es.store.settings import Settings
from projections.status import projection_statuses
from tests.support import (
    TEST_PAYMENT_SETTINGS,
    deliver_payment_notifications,
    master_key_environment,
    master_key_settings,
)

REDIS_VARIABLE: Final = "PREP_ES_BENCH_REDIS_URL"
REDIS_URL_DEFAULT: Final = "redis://127.0.0.1:6379/14"
FLOOR_APP_DIR: Final = ROOT / "bench" / "servers"

WORKERS: Final = 2
CONNECTIONS: Final = 32
POOL_SIZE: Final = 10
"""Event store connections per worker process, the same for the floor and for us."""
JWT_SECRET: Final = "bench-http-secret-" + secrets.token_hex(16)
SEED_THREADS: Final = 4
CATCH_UP_TIMEOUT_S: Final = 1800.0

LOS_ANGELES: Final = ZoneInfo("America/Los_Angeles")
CITIES: Final = (("los_angeles", "Los Angeles"), ("san_francisco", "San Francisco"))
AMENITIES: Final = (
    "walk-in fridge", "walk-in freezer", "convection oven", "deck oven", "mixer",
    "dishwasher", "hood", "prep tables", "storage", "parking", "loading dock", "fryer",
)  # fmt: skip
NAME_WORDS: Final = (
    "Sunset", "Harbor", "Mission", "Golden", "Valley", "Market", "Union", "Bay",
    "Cedar", "Olive", "Canyon", "Pier", "Echo", "Silver", "Oak", "Maple",
)  # fmt: skip
SEED_BOOKING_DAYS: Final = 60
"""Seeded bookings fall on the next 60 days; searches ask about those days."""
BOOKING_BENCH_FIRST_DAY: Final = 70
"""(c) books days from here on, where nothing was seeded."""
FUNDING_CENTS: Final = 100_000_000
"""A million dollars per customer, topped up through the sandbox: holds never run out."""

TARGETS: Final = {
    "booking_vs_naive_save": ">= 4",
    "search_vs_constant": ">= 0.3",
    "detail_cached_vs_constant": ">= 0.6",
    "booking_p99_ms": "<= 50",
    "search_p99_ms": "<= 20",
    "worker_rss_mb": "<= 200",
}


@dataclass(frozen=True)
class Plan:
    """How long and how big: the full run, or the reduced ``--quick`` one."""

    mode: str
    warmup_s: int
    duration_s: int
    kitchens: int
    hosts: int
    customers: int
    bookings: int
    booking_requests: int
    """Distinct booking requests prepared for (c) (warm-up included)."""
    search_requests: int
    detail_warmup_s: int
    """(e) measures the cache warmed: Redis, and each API worker's own published pages
    (see README), which a worker makes once per kitchen through the route — 20k route
    answers for 10k kitchens and 2 workers, ~10 s at the route's pace on a quiet
    machine. On a busy one that is not enough: the warm-up then goes on in rounds of
    ``WARM_ROUND_S`` until a round is no longer ``WARM_GAIN_MIN`` faster than the last
    (at most ``WARM_ROUNDS_MAX``)."""


WARM_ROUND_S: Final = 5
WARM_GAIN_MIN: Final = 1.1
WARM_ROUNDS_MAX: Final = 8

FULL = Plan("full", 5, 20, 10_000, 200, 1_000, 100_000, 120_000, 60_000, 20)
QUICK = Plan("quick", 2, 5, 500, 20, 100, 5_000, 30_000, 20_000, 3)

T = TypeVar("T")


# --- databases -------------------------------------------------------------------------


@contextmanager
def databases() -> Iterator[ScratchDatabases]:
    store = ScratchDatabases(server_url=SERVER_URL_DEFAULT)
    try:
        yield store
    finally:
        store.drop_all()


# --- seeding through the command handlers ----------------------------------------------


def in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = work(index)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def context(actor: Actor | None) -> CommandContext:
    return CommandContext(actor=actor, request_id=f"bench-{secrets.token_hex(6)}")


def create_user(runtime: Runtime, role: str, email: str) -> Actor:
    created = runtime.commands.users.create_user(
        CreateUser(email=email, password="bench password 12", full_name=email, role=role),
        context(None),
    )
    return Actor(user_id=created.result.id, role=role)


def local_start(day: date, hour: int) -> datetime:
    """``hour`` o'clock in Los Angeles (and San Francisco) on ``day``, in UTC."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=LOS_ANGELES).astimezone(UTC)


@dataclass
class Seeded:
    kitchen_ids: list[UUID]
    customers: list[Actor]
    today: date
    bookings: int
    events: int
    seconds: float


def seed(runtime: Runtime, plan: Plan) -> Seeded:
    """Published, compliant kitchens in both cities, funded customers, and bookings
    spread over the next 60 days (each kitchen's never overlapping)."""
    started = time.perf_counter()
    today = datetime.now(UTC).date()
    randomness = random.Random(7)
    admin = create_user(runtime, "admin", "admin@bench.example.com")
    hosts = in_threads(
        SEED_THREADS,
        lambda t: [
            create_user(runtime, "host", f"host{i}@bench.example.com")
            for i in range(t, plan.hosts, SEED_THREADS)
        ],
    )
    all_hosts = [host for chunk in hosts for host in chunk]
    kitchen_specs = [
        (
            all_hosts[i % len(all_hosts)],
            CITIES[0] if randomness.random() < 0.7 else CITIES[1],
            randomness.randrange(25, 151) * 100,
            randomness.randrange(2, 31),
            sorted(randomness.sample(AMENITIES, randomness.randrange(1, 6))),
            f"{randomness.choice(NAME_WORDS)} {randomness.choice(NAME_WORDS)} Kitchen {i}",
        )
        for i in range(plan.kitchens)
    ]
    kitchens = runtime.commands.kitchens
    issued_on = today - timedelta(days=365)
    expires_on = date(today.year + 5, 12, 31)

    def publish(index: int) -> UUID:
        host, (jurisdiction, city), rate, capacity, amenities, name = kitchen_specs[index]
        kitchen = kitchens.create_kitchen(
            CreateKitchen(
                name=name,
                description=f"A commercial kitchen in {city} with {', '.join(amenities)}",
                city=city,
                jurisdiction=jurisdiction,
                address=f"{index} Market St",
                hourly_rate_cents=rate,
                capacity=capacity,
                amenities=amenities,
                instant_book=index % 3 == 0,
            ),
            context(host),
        ).result
        for kind in sorted(runtime.jurisdictions.get(jurisdiction).required_certificates):
            certificate = kitchens.attach_certificate(
                AttachCertificate(
                    kitchen_id=kitchen.id,
                    kind=kind,
                    number=f"{kind}-{index}",
                    issued_on=issued_on,
                    expires_on=expires_on,
                    document_sha256="ab" * 32,
                ),
                context(host),
            ).result
            kitchens.verify_certificate(
                CertificateAction(kitchen_id=kitchen.id, certificate_id=certificate.id),
                context(admin),
            )
        kitchens.submit_kitchen(KitchenAction(kitchen_id=kitchen.id), context(host))
        kitchens.approve_kitchen(KitchenAction(kitchen_id=kitchen.id), context(admin))
        return kitchen.id

    kitchen_ids = [
        kitchen_id
        for chunk in in_threads(
            SEED_THREADS,
            lambda t: [publish(i) for i in range(t, plan.kitchens, SEED_THREADS)],
        )
        for kitchen_id in chunk
    ]
    print(f"   {len(kitchen_ids)} kitchens published", flush=True)

    def fund(index: int) -> Actor:
        customer = create_user(runtime, "customer", f"customer{index}@bench.example.com")
        runtime.commands.top_ups.request_top_up(
            RequestTopUp(amount_cents=FUNDING_CENTS, payment_method="pm_card_visa"),
            context(customer),
        )
        deliver_payment_notifications(runtime)  # the credit, as the sandbox would send it
        return customer

    customers = [
        customer
        for chunk in in_threads(
            SEED_THREADS,
            lambda t: [fund(i) for i in range(t, plan.customers, SEED_THREADS)],
        )
        for customer in chunk
    ]
    refused: list[str] = []

    def book(index: int) -> None:
        kitchen_number = index % len(kitchen_ids)
        round_number = index // len(kitchen_ids)
        day = today + timedelta(days=1 + (round_number * 6 + kitchen_number % 6) % 60)
        start = local_start(day, 8 + (kitchen_number + round_number) % 8)
        try:
            runtime.commands.bookings.request_booking(
                RequestBooking(
                    kitchen_id=kitchen_ids[kitchen_number],
                    start_time=start,
                    end_time=start + timedelta(hours=2),
                    guests=2,
                ),
                context(customers[index % len(customers)]),
            )
        except DomainError as error:
            refused.append(error.code)

    def book_slice(thread: int) -> None:
        for index in range(thread, plan.bookings, SEED_THREADS):
            book(index)
            if thread == 0 and index % 10_000 == 0 and index:
                print(f"   {index} bookings requested", flush=True)

    in_threads(SEED_THREADS, book_slice)
    if refused:
        print(f"   {len(refused)} seeded booking(s) refused: {sorted(set(refused))}")
    return Seeded(
        kitchen_ids=kitchen_ids,
        customers=customers,
        today=today,
        bookings=plan.bookings - len(refused),
        events=runtime.app.position(),
        seconds=time.perf_counter() - started,
    )


def catch_up_projections(settings: Settings, runtime: Runtime) -> float:
    """Every projection built to the head, in this process; the seconds it took."""
    started = time.perf_counter()
    read_side = open_read_side(settings)
    supervisor, append_signal = start_projectors(settings, runtime.app, read_side)
    try:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while True:
            statuses = projection_statuses(runtime.app, read_side.write_database)
            if all(status.lag_events == 0 for status in statuses):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"projections did not catch up: {statuses}")
            time.sleep(0.5)
    finally:
        supervisor.stop()
        append_signal.stop()
        read_side.close()
    return time.perf_counter() - started


def create_floor_tables(url: str) -> None:
    """Before the workers start: two creating the tables at once may collide."""
    spec = importlib.util.spec_from_file_location("floor", FLOOR_APP_DIR / "floor.py")
    assert spec is not None and spec.loader is not None
    floor = importlib.util.module_from_spec(spec)
    sys.modules["floor"] = floor  # eventsourcing imports an aggregate's module by name
    spec.loader.exec_module(floor)
    floor.FloorApplication(env=floor.floor_env(url, POOL_SIZE)).close()


def floor_server(url: str, logs: Path) -> AbstractContextManager[Server]:
    create_floor_tables(url)
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(FLOOR_APP_DIR), "--factory",
        "floor:create_app", "--host", "127.0.0.1", "--port", str(port), "--workers",
        str(WORKERS), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    environment = clean_environment(
        BENCH_FLOOR_DATABASE_URL=url, BENCH_FLOOR_POOL_SIZE=str(POOL_SIZE)
    )
    return server("floor", command, environment, logs)


@dataclass(frozen=True)
class Shape:
    """How our server runs: ``in_process`` (``prep-es serve``: each worker runs its share
    of the projectors and the sweeper) or ``scaled`` (the documented production shape:
    ``prep-es serve --no-projector`` and one ``prep-es project`` process beside it)."""

    name: str
    suffix: str
    """Appended to the figures' names (``booking_scaled_req_per_s``)."""
    booking_first_day: int
    """Each shape books its own days: a booking sent again would be refused."""

    @property
    def scaled(self) -> bool:
        return self.name == "scaled"


IN_PROCESS: Final = Shape("in_process", "", BOOKING_BENCH_FIRST_DAY)
SCALED: Final = Shape("scaled", "_scaled", BOOKING_BENCH_FIRST_DAY + 20)


def our_environment(url: str, redis_url: str) -> dict[str, str]:
    return clean_environment(
        PREP_ES_DATABASE_URL=url,
        PREP_ES_REDIS_URL=redis_url,
        PREP_ES_JWT_SECRET=JWT_SECRET,
        PREP_ES_POSTGRES_POOL_SIZE=str(POOL_SIZE),
        **master_key_environment(url),
    )


@contextmanager
def our_server(url: str, redis_url: str, logs: Path, shape: Shape) -> Iterator[Server]:
    port = free_port()
    command = [
        sys.executable, "-m", "prep_es.cli", "serve", "--host", "127.0.0.1", "--port",
        str(port), "--workers", str(WORKERS), "--no-access-log",
        *(["--no-projector"] if shape.scaled else []),
    ]  # fmt: skip
    environment = our_environment(url, redis_url)
    if not shape.scaled:
        with server("prep-es", command, environment, logs) as running:
            yield running
        return
    projector_log = logs / "prep-es-project.log"
    with projector_log.open("wb") as log:
        projector = subprocess.Popen(
            [sys.executable, "-m", "prep_es.cli", "project"],
            cwd=logs,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with server("prep-es", command, environment, logs) as running:
            running.projector = projector
            yield running
    finally:
        if projector.poll() is None:
            projector.send_signal(signal.SIGTERM)
            try:
                projector.wait(timeout=60)
            except subprocess.TimeoutExpired:
                projector.kill()
                projector.wait()


# --- load generation -------------------------------------------------------------------


def measure(
    name: str,
    target: Server,
    lines: Sequence[str],
    plan: Plan,
    scratch: Path,
    *,
    split: bool = False,
    warmup_s: int | None = None,
    warm_until_steady: bool = False,
) -> Load:
    """A warm-up run (``plan.warmup_s`` unless ``warmup_s``; ``warm_until_steady``: then
    rounds until one is no faster than the last, see ``Plan.detail_warmup_s``), then the
    measured one; ``split``: the warm-up and the measured run send different halves of
    ``lines`` (a booking sent twice would be refused; a search the warm-up sent could be
    answered from the cache)."""
    half = len(lines) // 2
    warmup_lines, measured_lines = (lines[:half], lines[half:]) if split else (lines, lines)
    try:
        run_wrk(
            f"{name}_warmup",
            target.url,
            warmup_lines,
            warmup_s or plan.warmup_s,
            scratch,
            connections=CONNECTIONS,
        )
        previous_per_s = 0.0
        for _ in range(WARM_ROUNDS_MAX if warm_until_steady else 0):
            round_load = run_wrk(
                f"{name}_warmup",
                target.url,
                warmup_lines,
                WARM_ROUND_S,
                scratch,
                connections=CONNECTIONS,
            )
            if round_load.ok_per_s < previous_per_s * WARM_GAIN_MIN:
                break
            previous_per_s = round_load.ok_per_s
        load = run_wrk(
            name, target.url, measured_lines, plan.duration_s, scratch, connections=CONNECTIONS
        )
    finally:
        if target.process.poll() is not None:
            print(f"{target.name} exited:\n{target.log_tail()}", file=sys.stderr)
    print(f"   {load.summary()}", flush=True)
    return load


@contextmanager
def event_loop_probe(url: str, interval_s: float = 0.02) -> Iterator[list[float]]:
    """``GET /healthz`` one at a time while a load runs: the only ``async`` route, answered
    on the workers' event loops. Were a route to block a loop on the database, these would
    wait as long as that route's calls; ms per probe."""
    latencies_ms: list[float] = []
    stopping = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stopping.is_set():
                started = time.perf_counter()
                client.get("/healthz").raise_for_status()
                latencies_ms.append((time.perf_counter() - started) * 1000)
                stopping.wait(interval_s)

    thread = threading.Thread(target=probe, name="bench-event-loop-probe", daemon=True)
    thread.start()
    try:
        yield latencies_ms
    finally:
        stopping.set()
        thread.join(15)


# --- the requests of (c), (d), (e) -----------------------------------------------------


def booking_lines(
    seeded: Seeded, tokens: list[str], count: int, first_day: int = BOOKING_BENCH_FIRST_DAY
) -> list[str]:
    """Distinct (customer, kitchen, hour) requests, one hour each, from ``first_day`` on,
    in an order that keeps concurrent requests on different kitchens and customers."""
    kitchens = seeded.kitchen_ids
    lines = []
    for index in range(count):
        slot = index // len(kitchens)
        day = seeded.today + timedelta(days=first_day + slot // 14)
        start = local_start(day, 7 + slot % 14)
        body = orjson.dumps(
            {
                "kitchen_id": str(kitchens[index % len(kitchens)]),
                "start_time": start.isoformat(),
                "end_time": (start + timedelta(hours=1)).isoformat(),
                "guests": 2,
            }
        )
        lines.append(line("POST", "/api/v1/bookings", tokens[index % len(tokens)], body))
    return lines


def search_lines(seeded: Seeded, count: int) -> list[str]:
    """Searches as a customer makes them: a city, a window on one of the seeded days,
    sometimes a capacity or a maximum rate; no two alike (or nearly none)."""
    randomness = random.Random(11)
    lines = []
    for _ in range(count):
        day = seeded.today + timedelta(days=randomness.randrange(1, SEED_BOOKING_DAYS + 1))
        start = local_start(day, randomness.randrange(6, 18))
        end = start + timedelta(hours=randomness.randrange(1, 5))
        query: dict[str, Any] = {
            "city": randomness.choice(CITIES)[1],
            "available_from": start.isoformat(),
            "available_to": end.isoformat(),
            "limit": 20,
        }
        if randomness.random() < 0.5:
            query["capacity"] = randomness.randrange(1, 21)
        if randomness.random() < 0.3:
            query["max_rate"] = f"{randomness.randrange(40, 151)}.00"
        lines.append(line("GET", "/api/v1/kitchens?" + urlencode(query)))
    return lines


def detail_lines(seeded: Seeded) -> list[str]:
    ids = list(seeded.kitchen_ids)
    random.Random(13).shuffle(ids)
    return [line("GET", f"/api/v1/kitchens/{kitchen_id}") for kitchen_id in ids]


# --- report ----------------------------------------------------------------------------


@dataclass
class Report(reporting.Report):
    """The shared report, plus one load's figures."""

    def add_load(self, load: Load) -> None:
        self.figure(f"{load.name}_req_per_s", load.ok_per_s, "req/s")
        self.figure(f"{load.name}_p50_ms", load.p50_ms, "ms")
        self.figure(f"{load.name}_p99_ms", load.p99_ms, "ms")
        self.figure(f"{load.name}_not_ok", load.requests - load.ok, "count")
        self.figure(f"{load.name}_loadgen_cpu_share", load.generator_cpu_share, "fraction")
        if load.requests != load.ok:
            self.notes.append(
                f"{load.name}: {load.conflicts} x 409, {load.client_errors} other 4xx, "
                f"{load.server_errors} 5xx, {load.socket_errors} socket errors of "
                f"{load.requests} requests"
            )


# --- main ------------------------------------------------------------------------------


def bench_floors(url: str, plan: Plan, scratch: Path, report: Report) -> tuple[Load, Load]:
    print("(a) naive save and (b) constant: bare FastAPI under uvicorn", flush=True)
    with floor_server(url, scratch) as floor:
        floor.wait_until("/constant")
        constant = measure("constant", floor, [line("GET", "/constant")], plan, scratch)
        naive = measure("naive_save", floor, [line("POST", "/save")], plan, scratch)
    report.add_load(constant)
    report.add_load(naive)
    return naive, constant


def bench_ours(
    url: str,
    redis_url: str,
    seeded: Seeded,
    plan: Plan,
    scratch: Path,
    report: Report,
    shape: Shape,
) -> tuple[Load, Load, Load]:
    tokens_service = TokenService(
        JWT_SECRET,
        issuer=Settings.model_fields["jwt_issuer"].default,
        audience=Settings.model_fields["jwt_audience"].default,
        # The server refuses a token whose lifetime exceeds its own setting.
        ttl_s=Settings.model_fields["access_token_ttl"].default,
        clock=system_clock,
    )
    tokens = [
        tokens_service.issue(customer.user_id, customer.role).access_token
        for customer in seeded.customers
    ]
    described = (
        "prep-es serve --no-projector, and one prep-es project beside it"
        if shape.scaled
        else "prep-es serve, projectors and sweeper in its workers"
    )
    print(f"(c) booking, (d) search, (e) detail [{shape.name}]: {described}", flush=True)
    redis.Redis.from_url(redis_url).flushdb()  # no answer cached by the other shape
    suffix = shape.suffix
    with our_server(url, redis_url, scratch, shape) as ours:
        ours.wait_until("/readyz")
        with event_loop_probe(ours.url) as probe_ms:
            booking = measure(
                f"booking{suffix}",
                ours,
                booking_lines(seeded, tokens, plan.booking_requests, shape.booking_first_day),
                plan,
                scratch,
                split=True,
            )
        if probe_ms:
            ordered = sorted(probe_ms)
            probe_p50 = ordered[len(ordered) // 2]
            probe_p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
            report.figure(f"healthz_during_booking_p50_ms{suffix}", probe_p50, "ms")
            report.figure(f"healthz_during_booking_p99_ms{suffix}", probe_p99, "ms")
            print(
                f"   /healthz during (c): p50 {probe_p50:.1f} ms, p99 {probe_p99:.1f} ms "
                f"over {len(ordered)} probes (the event loop is not blocked by sync routes)",
                flush=True,
            )
        caught_up_s = wait_for_projections(ours.url, CATCH_UP_TIMEOUT_S)
        report.notes.append(
            f"[{shape.name}] projectors caught up {caught_up_s:.1f} s after (c) ended"
        )
        search = measure(
            f"search{suffix}",
            ours,
            search_lines(seeded, plan.search_requests),
            plan,
            scratch,
            split=True,
        )
        detail = measure(
            f"detail{suffix}",
            ours,
            detail_lines(seeded),
            plan,
            scratch,
            warmup_s=plan.detail_warmup_s,
            warm_until_steady=True,
        )
        pids = ours.worker_pids()
        peaks = [memory_kb(pid, "VmHWM") / 1024 for pid in pids]
        current = [memory_kb(pid, "VmRSS") / 1024 for pid in pids]
        projector_peak = (
            None if ours.projector is None else memory_kb(ours.projector.pid, "VmHWM") / 1024
        )
    for load in (booking, search, detail):
        report.add_load(load)
    report.figure(f"worker_rss_mb{suffix}", max(peaks, default=0.0), "MB")
    report.notes.append(
        f"[{shape.name}] API workers {len(pids)}: peak RSS "
        f"{', '.join(f'{p:.0f}' for p in peaks)} MB, at the end "
        f"{', '.join(f'{c:.0f}' for c in current)} MB"
    )
    if projector_peak is not None:
        report.figure("projector_rss_mb", projector_peak, "MB")
    return booking, search, detail


def vacuum_analyze(url: str) -> tuple[float, str]:
    """VACUUM (ANALYZE) the seeded database, as autovacuum would have by the time a real
    one holds this much (the planner's statistics, and the visibility map that lets
    index-only scans skip the table); the seconds it took, and the server's
    ``autovacuum`` setting (off on some test servers: then nothing else would)."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
        row = connection.execute("SHOW autovacuum").fetchone()
    return time.perf_counter() - started, "unknown" if row is None else str(row[0])


def run_benchmarks(plan: Plan, *, in_process_only: bool = False) -> None:
    require_wrk()
    report = Report("http", TARGETS)
    started = time.perf_counter()
    redis_url = os.environ.get(REDIS_VARIABLE) or REDIS_URL_DEFAULT
    redis.Redis.from_url(redis_url).flushdb()
    given = os.environ.get(URL_VARIABLE) or None
    with databases() as store, tempfile.TemporaryDirectory(prefix="prep-es-bench-http-") as tmp:
        scratch = Path(tmp)
        url = given or store.create("http")
        where = postgres_location(url).dbname
        print(f"bench/http_api.py ({plan.mode}): PostgreSQL {where}, Redis {redis_url}", flush=True)
        naive, constant = bench_floors(store.create("floor"), plan, scratch, report)

        print(
            f"seeding {plan.kitchens} kitchens, {plan.customers} customers, {plan.bookings} "
            "bookings through the command handlers",
            flush=True,
        )
        # The tests' payment settings: top-up limits out of the way of the funding, and
        # the sandbox's notifications due at once, received by the seeding itself.
        settings = Settings.model_validate(
            {
                "database_url": url,
                **master_key_settings(url),
                "postgres_pool_size": POOL_SIZE,
                "jwt_secret": JWT_SECRET,
                **TEST_PAYMENT_SETTINGS,
            }
        )
        runtime = open_runtime(settings, passwords=Argon2Passwords.cheap_for_tests())
        try:
            seeded = seed(runtime, plan)
            print(f"   seeded {seeded.events} events in {seeded.seconds:.0f} s", flush=True)
            catch_up_s = catch_up_projections(settings, runtime)
            print(f"   projections built in {catch_up_s:.0f} s", flush=True)
        finally:
            runtime.close()
        vacuum_s, autovacuum = vacuum_analyze(url)
        print(
            f"   VACUUM (ANALYZE) in {vacuum_s:.0f} s (the server's autovacuum is {autovacuum})",
            flush=True,
        )
        booking, search, detail = bench_ours(
            url, redis_url, seeded, plan, scratch, report, IN_PROCESS
        )
        scaled = (
            None
            if in_process_only
            else bench_ours(url, redis_url, seeded, plan, scratch, report, SCALED)
        )

    report.figure("kitchens", len(seeded.kitchen_ids), "count")
    report.figure("seeded_bookings", seeded.bookings, "count")
    report.figure("seeded_events", seeded.events, "count")
    report.figure("booking_p99_ms", booking.p99_ms, "ms")
    report.figure("search_p99_ms", search.p99_ms, "ms")
    report.ratio("booking_vs_naive_save", booking.ok_per_s, naive.ok_per_s)
    report.ratio("search_vs_constant", search.ok_per_s, constant.ok_per_s)
    report.ratio("detail_cached_vs_constant", detail.ok_per_s, constant.ok_per_s)
    if scaled is not None:
        booking_scaled, search_scaled, detail_scaled = scaled
        report.figure("booking_scaled_p99_ms", booking_scaled.p99_ms, "ms")
        report.figure("search_scaled_p99_ms", search_scaled.p99_ms, "ms")
        report.ratio("booking_scaled_vs_naive_save", booking_scaled.ok_per_s, naive.ok_per_s)
        report.ratio("search_scaled_vs_constant", search_scaled.ok_per_s, constant.ok_per_s)
        report.ratio("detail_cached_scaled_vs_constant", detail_scaled.ok_per_s, constant.ok_per_s)
    if given is not None:
        report.notes.append(f"our server ran in the given database {where}")
    report.print_table()
    meta = {
        "mode": plan.mode,
        "workers": WORKERS,
        "connections": CONNECTIONS,
        "load_generator": f"wrk -t{LOAD_THREADS} -c{CONNECTIONS}",
        "warmup_s": plan.warmup_s,
        "detail_warmup_s": plan.detail_warmup_s,
        "run_s": plan.duration_s,
        "kitchens": plan.kitchens,
        "customers": plan.customers,
        "bookings": plan.bookings,
        "pool_size": POOL_SIZE,
        "shapes": {
            IN_PROCESS.name: "the figures without a suffix: prep-es serve --workers 2, "
            "projectors and sweeper in its workers",
            **(
                {}
                if in_process_only
                else {
                    SCALED.name: "the figures suffixed _scaled: prep-es serve --workers 2 "
                    "--no-projector, and one prep-es project process (projectors and "
                    "sweeper) on the same machine"
                }
            ),
        },
        "vacuum_analyze_after_seeding": True,
        "server_autovacuum": autovacuum,
        "load_average": list(os.getloadavg()),
        **run_meta(started),
    }
    report.write(meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="reduced run for checks (< 3 min)")
    parser.add_argument(
        "--in-process-only",
        action="store_true",
        help="measure (c)-(e) with projectors in the API workers only, not also in the "
        "scaled shape (--no-projector workers and a prep-es project process)",
    )
    args = parser.parse_args(argv)
    run_benchmarks(QUICK if args.quick else FULL, in_process_only=args.in_process_only)


if __name__ == "__main__":
    main()
