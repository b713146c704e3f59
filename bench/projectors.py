"""Read-side throughput, lag and memory on PostgreSQL, each against its floor.

Run by ``.venv/bin/python -m bench.projectors``; ``--quick`` is a reduced run for
checks (under 3 minutes). In one run:

history  a marketplace written through the real command handlers in 4 threads, round
         after round of a moving clock: bookings requested, confirmed or declined,
         cancelled by customers (every fee tier) and hosts, completed by hosts,
         expired and auto-completed by the sweeper, customers topping up through the
         sandbox (``pm_card_visa``, each notification received at once: the top-up
         and the credit) (>= 200k events; ~20k quick)
(a) ``library_runner``  eventsourcing's own ``ProjectionRunner``: one row per event
         into one table plus the library's tracking row, one transaction per event,
         over the first ``Plan.es_runner_events`` events (it is slow)
(b) ``batched_loop``  a hand-written psycopg loop over ``select_notifications``:
         each event decoded by our mapper, 500 rows per transaction (``executemany``)
         plus a position row, into a table of the same shape, over every event
(c) ``rebuild``  first every projection is built once from position 0 (all at once,
         rebuild-sized batches; reported, not used in the ratios), so that the
         rebuilds below do rebuild work only. Then each projection of
         ``projections.PROJECTIONS`` alone
         (``request_rebuild`` then ``ProjectionRunner.catch_up``), then all together:
         in this process, one thread per projection sharing one event decoder, as the
         supervisor runs them (``rebuild_all_one_process``), and by the command
         ``prep-es projections rebuild all``, which shares them among one process per
         CPU (``rebuild_all``, the ratio's; timed as the command reports it, from its
         start after imports to the last switch, and with its start-up). Throughput is
         "store events/s": events in the store / wall time, whatever topics a
         projection follows (its own events/s is reported beside it)
(d) ``lag``  while 4 threads issue bookings and top-ups (the nearest command that
         brings money in: the top-up requested, then the sandbox's notification received,
         which credits the account; the commit measured is the credit's, or the
         request's when another thread received the notification): from a command's
         commit (its handler returned) to the bookings projection reporting a position
         at or past it. Twice: projectors in a child ``prep-es project`` (the scaled shape; heard
         through LISTEN on the channel runners notify in their batch's transaction) —
         the headline ``lag_p99_ms`` — and in-process (``start_projectors``, reported
         through ``on_position``; figures ``in_process_lag_*``)
RSS      the store grown with bulk deposits (``Account.FundsDeposited``, the event a
         store written before top-ups holds, saved in batches with the metadata a
         handler gives; nothing records one now, but every projection still reads it,
         and unlike a credited top-up it leaves the account's state small) to
         ``Plan.rss_events`` events (1M is the target; ``--rss-events`` sets it); then a
         child process builds every projection from position 0 into a fresh schema,
         one thread per projection with rebuild-sized batches, and reports its peak
         resident set (``VmHWM``)

It prints a table and writes ``bench/results/projections.json``::

    {"figures": {name: {"value": v, "unit": u}}, "ratios": {name: r}, "notes": [...],
     "meta": {...}}

PostgreSQL: ``PREP_ES_BENCH_DATABASE_URL`` names a database to run in (the history is
appended to its event store and its read models are rebuilt; (a), (b) and the RSS child
use their own tables and schema, which are dropped at the end). Unset, the bench creates
a fresh database ``prep_es_bench_<random>_projections`` on
``postgresql://postgres@127.0.0.1:5432`` and drops it at the end, also on failure.

``--profile`` adds a cProfile of the slowest projection's rebuild (its first
``Plan.profile_s`` seconds) to the run, with its hotspots.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import io
import itertools
import os
import pstats
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import singledispatchmethod
from pathlib import Path
from typing import Any, Final, TypeVar
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import orjson
import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection as LibraryProjection
from eventsourcing.projection import ProjectionRunner as LibraryProjectionRunner
from eventsourcing.utils import EnvType, get_topic
from psycopg import sql

from aggregates.account import Account, account_id_for
from aggregates.base import DomainEvent, EventMetadata, recording_metadata
from aggregates.errors import DomainError
from bench.databases import (
    SERVER_URL_DEFAULT,
    URL_VARIABLE,
    ScratchDatabases,
    postgres_location,
)
from bench.reporting import ROOT, Report, run_meta
from commands.bookings import (
    BookingAction,
    CancelBooking,
    DeclineBooking,
    RequestBooking,
)
from commands.context import Actor
from commands.top_ups import RequestTopUp
from prep_es.services.passwords import Argon2Passwords
from prep_es.services.readside import ReadSide, open_read_side, start_projectors
from prep_es.services.runtime import Runtime, open_runtime, tune_garbage_collection
from prep_es.store.eventstore import (
    PrepApplication,
    application_env,
    master_key_ring,
    open_application,
)
from prep_es.store.settings import Settings
from projections import PROJECTIONS, Projection
from projections.announcements import POSITIONS_CHANNEL
from projections.database import PostgresReadDatabase, ReadDatabase
from projections.decoding import EventDecoder
from projections.generations import ensure_ready, generations, request_rebuild
from projections.runners import BATCH_SIZE, REBUILD_BATCH_SIZE, ProjectionRunner
from queries.consistency import read_position
from tests.support import (
    TEST_PAYMENT_SETTINGS,
    MutableClock,
    as_actor,
    create_user,
    master_key_environment,
    master_key_settings,
    publish_compliant_kitchen,
    top_up,
)

WRITER_THREADS: Final = 4
"""Threads writing the history and issuing commands during (d)."""
HOSTS: Final = 12
"""A multiple of ``WRITER_THREADS``: each host's kitchens all belong to one thread, so
writers never race for a host's account."""
LOOP_BATCH_SIZE: Final = 500
"""Events per transaction of (b)."""
POOL_SIZE: Final = 10

LOS_ANGELES: Final = ZoneInfo("America/Los_Angeles")
START_DAY: Final = date(2030, 1, 7)
"""The first round's local date (a Monday); the clock starts at 09:00 that day."""
CLOCK_HOUR: Final = 9
SLOT_HOURS: Final = 2
CERTIFICATES_EXPIRE_ON: Final = date(2035, 12, 31)
FUNDING_CENTS: Final = 100_000_000  # a million dollars: holds never run out
ROUND_TOP_UP_CENTS: Final = 25_000
LAG_TOP_UP_CENTS: Final = 10_000
OPENING_HOURS: Final = {"los_angeles": (5, 23), "san_francisco": (6, 22)}
BULK_DEPOSITS_PER_SAVE: Final = 1000
LAG_SETTLE_TIMEOUT_S: Final = 120.0


@dataclass(frozen=True)
class Plan:
    """How long and how big: the full run, or the reduced ``--quick`` one."""

    mode: str
    history_events: int
    """Write rounds until the store holds at least this many events."""
    kitchens: int
    customers: int
    days_per_round: int
    es_runner_events: int
    lag_s: float
    lag_warmup_s: float
    rss_events: int
    profile_s: float


FULL = Plan("full", 200_000, 60, 400, 4, 20_000, 15.0, 8.0, 300_000, 20.0)
"""The RSS build runs at about 1.2k store events/s on a 2-CPU machine, so 1M events take
~15 minutes on their own: the full run measures 300k by default (``--rss-events``).

The lag warm-up (8 s) outlasts the projector worker's start: its sweeper first reads
every booking and certificate event of the store (200k events here), which is start-up,
not the steady state (d) measures; with a 2 s warm-up it fell inside the window."""
QUICK = Plan("quick", 20_000, 12, 40, 4, 2_000, 5.0, 1.0, 30_000, 5.0)


# --- databases -------------------------------------------------------------------------


@dataclass
class Database:
    """Where the run happens: a fresh database, or the one ``PREP_ES_BENCH_DATABASE_URL``
    names. Tables and schemas of the bench's own (not Prep ES's) carry ``token``."""

    given_url: str | None
    scratch: ScratchDatabases = field(
        default_factory=lambda: ScratchDatabases(server_url=SERVER_URL_DEFAULT)
    )

    @property
    def token(self) -> str:
        return self.scratch.token

    def open(self) -> str:
        if self.given_url is not None:
            return self.given_url
        return self.scratch.create("projections")

    def prefix(self) -> str:
        return f"bench_{self.token}"

    def drop(self, url: str) -> None:
        if self.given_url is None:
            self.scratch.drop_all()
        else:
            self._drop_own_objects(url)

    def _drop_own_objects(self, url: str) -> None:
        """In a given database, drop what the bench made beside Prep ES's own tables."""
        prefix = self.prefix()
        try:
            with psycopg.connect(postgres_location(url).conninfo(), autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(f"{prefix}_rss")
                    )
                )
                for suffix in (
                    "runner_rows",
                    "runner_tracking",
                    "loop_rows",
                    "loop_position",
                    "raw_rows",
                    "raw_position",
                ):
                    conn.execute(
                        sql.SQL("DROP TABLE IF EXISTS {}").format(
                            sql.Identifier(f"{prefix}_{suffix}")
                        )
                    )
        except psycopg.Error as error:
            print(f"warning: could not drop the bench's tables: {error}", file=sys.stderr)


def store_settings(url: str, *, aggregate_cache_size: int | None = None) -> Settings:
    """With the tests' payment settings: top-up limits out of the way of a million-dollar
    funding, and the sandbox's notifications due at once, each sent once (the bench
    receives them itself: nothing here starts the sandbox's delivery thread)."""
    default_cache = Settings.model_fields["aggregate_cache_size"].default
    return Settings.model_validate(
        {
            "database_url": url,
            **master_key_settings(url),
            "postgres_pool_size": POOL_SIZE,
            "aggregate_cache_size": (
                default_cache if aggregate_cache_size is None else aggregate_cache_size
            ),
            **TEST_PAYMENT_SETTINGS,
        }
    )


def topic_counts(url: str, app: PrepApplication) -> Counter[str]:
    table = getattr(app.recorder, "events_table_name", "prep_es_events")
    with psycopg.connect(postgres_location(url).conninfo()) as connection:
        rows = connection.execute(
            sql.SQL("SELECT topic, count(*) FROM {} GROUP BY topic").format(sql.Identifier(table))
        ).fetchall()
    return Counter({str(topic): int(count) for topic, count in rows})


T = TypeVar("T")


def in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(0..count-1)`` in ``count`` threads; the first error is raised."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(work, range(count)))


# --- the history ------------------------------------------------------------------------


def local_time(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=LOS_ANGELES).astimezone(UTC)


@dataclass(frozen=True)
class ListedKitchen:
    id: UUID
    host: Actor
    jurisdiction: str
    instant_book: bool

    def slots(self, day: date) -> list[tuple[datetime, datetime]]:
        opens, closes = OPENING_HOURS[self.jurisdiction]
        return [
            (local_time(day, hour), local_time(day, hour + SLOT_HOURS))
            for hour in range(opens, closes - SLOT_HOURS + 1, SLOT_HOURS)
        ]


@dataclass
class Writer:
    """One writer thread's share of the marketplace: its hosts' kitchens, its customers."""

    index: int
    kitchens: list[ListedKitchen]
    customers: list[Actor]
    outcomes: Counter[str] = field(default_factory=Counter)
    to_complete: list[tuple[UUID, Actor]] = field(default_factory=list)
    customer_turn: Iterator[int] = field(default_factory=itertools.count)

    def next_customer(self) -> Actor:
        return self.customers[next(self.customer_turn) % len(self.customers)]


@dataclass
class Market:
    runtime: Runtime
    clock: MutableClock
    writers: list[Writer]
    next_day: date
    """The first local day no round has used."""

    def outcomes(self) -> Counter[str]:
        return sum((writer.outcomes for writer in self.writers), Counter[str]())


def build_market(runtime: Runtime, clock: MutableClock, plan: Plan, tag: str) -> Market:
    admin = create_user(runtime, "admin", f"admin-{tag}@bench.example.com")

    def build_writer(index: int) -> Writer:
        hosts = [
            create_user(runtime, "host", f"host{h}-{tag}@bench.example.com")
            for h in range(index, HOSTS, WRITER_THREADS)
        ]
        kitchens = []
        for number in range(index, plan.kitchens, WRITER_THREADS):
            host = hosts[(number // WRITER_THREADS) % len(hosts)]
            jurisdiction = "san_francisco" if number % 3 == 2 else "los_angeles"
            instant_book = number % 2 == 0
            kitchen_id = publish_compliant_kitchen(
                runtime,
                host,
                admin,
                jurisdiction=jurisdiction,
                hourly_rate_cents=4000 + 500 * (number % 7),
                capacity=10,
                instant_book=instant_book,
                certificates_expire_on=CERTIFICATES_EXPIRE_ON,
            )
            kitchens.append(ListedKitchen(kitchen_id, host, jurisdiction, instant_book))
        customers = []
        for number in range(index, plan.customers, WRITER_THREADS):
            customer = create_user(runtime, "customer", f"customer{number}-{tag}@bench.example.com")
            top_up(runtime, customer, FUNDING_CENTS)
            customers.append(customer)
        return Writer(index, kitchens, customers)

    writers = in_threads(WRITER_THREADS, build_writer)
    return Market(runtime, clock, writers, START_DAY)


def settle_round_bookings(market: Market, writer: Writer, days: list[date], seed: str) -> None:
    """Request every slot of ``days`` at each of the writer's kitchens, then decide each
    booking's fate at once (confirm, decline, cancel, or leave it to finish later)."""
    bookings = market.runtime.commands.bookings
    rng = random.Random(seed)
    for day in days:
        for kitchen in writer.kitchens:
            for start, end in kitchen.slots(day):
                customer = writer.next_customer()
                try:
                    requested = bookings.request_booking(
                        RequestBooking(
                            kitchen_id=kitchen.id, start_time=start, end_time=end, guests=2
                        ),
                        as_actor(customer, uuid4().hex if rng.random() < 0.2 else None),
                    ).result
                except DomainError as error:
                    writer.outcomes[f"refused:{error.code}"] += 1
                    continue
                writer.outcomes["requested"] += 1
                host = as_actor(kitchen.host)
                action = BookingAction(booking_id=requested.id)
                if requested.status == "pending":
                    draw = rng.random()
                    if draw < 0.05:
                        bookings.decline_booking(
                            DeclineBooking(booking_id=requested.id, reason="kitchen closed"), host
                        )
                        writer.outcomes["declined"] += 1
                        continue
                    if draw < 0.15:
                        writer.outcomes["left_pending"] += 1  # the sweeper expires it
                        continue
                    bookings.confirm_booking(action, host)
                    writer.outcomes["confirmed"] += 1
                draw = rng.random()
                if draw < 0.12:
                    cancelled = bookings.cancel_booking(
                        CancelBooking(booking_id=requested.id, reason="plans changed"),
                        as_actor(customer),
                    ).result
                    assert cancelled.refund is not None
                    captured = cancelled.refund.captured_cents
                    tier = "free" if not captured else "fee"
                    if captured == cancelled.price_cents:
                        tier = "full"
                    writer.outcomes[f"cancelled_by_customer_{tier}"] += 1
                elif draw < 0.15:
                    bookings.cancel_booking(
                        CancelBooking(booking_id=requested.id, reason="maintenance"), host
                    )
                    writer.outcomes["cancelled_by_host"] += 1
                elif draw < 0.75:
                    writer.to_complete.append((requested.id, kitchen.host))
                else:
                    writer.outcomes["left_confirmed"] += 1  # the sweeper completes it


def complete_bookings(market: Market, writer: Writer) -> None:
    bookings = market.runtime.commands.bookings
    for booking_id, host in writer.to_complete:
        bookings.complete_booking(BookingAction(booking_id=booking_id), as_actor(host))
        writer.outcomes["completed_by_host"] += 1
    writer.to_complete.clear()


def top_up_round(market: Market, writer: Writer) -> None:
    for customer in writer.customers:
        top_up(market.runtime, customer, ROUND_TOP_UP_CENTS)
        writer.outcomes["topped_up"] += 1


def write_round(market: Market, plan: Plan, round_number: int) -> None:
    """One round: book the coming days at 09:00 of the first, complete what ended, let
    the sweeper expire and auto-complete the rest a day later, and top up accounts."""
    first = market.next_day
    days = [first + timedelta(days=offset) for offset in range(1, plan.days_per_round + 1)]
    market.clock.now = local_time(first, CLOCK_HOUR)
    in_threads(
        WRITER_THREADS,
        lambda i: settle_round_bookings(market, market.writers[i], days, f"{round_number}-{i}"),
    )
    market.clock.now = local_time(days[-1], 23) + timedelta(minutes=30)
    in_threads(WRITER_THREADS, lambda i: complete_bookings(market, market.writers[i]))
    market.clock.now = local_time(days[-1] + timedelta(days=1), 23) + timedelta(minutes=45)
    report = market.runtime.commands.sweeper.sweep()
    outcomes = market.writers[0].outcomes
    outcomes["expired_by_sweeper"] += len(report.expired_booking_ids)
    outcomes["completed_by_sweeper"] += len(report.completed_booking_ids)
    in_threads(WRITER_THREADS, lambda i: top_up_round(market, market.writers[i]))
    market.next_day = days[-1] + timedelta(days=2)


def write_history(market: Market, plan: Plan) -> int:
    app = market.runtime.app
    started = time.perf_counter()
    for round_number in itertools.count(1):
        if app.position() >= plan.history_events:
            break
        write_round(market, plan, round_number)
        elapsed = time.perf_counter() - started
        head = app.position()
        print(
            f"   round {round_number}: {head} events, {elapsed:.0f} s "
            f"({head / elapsed:.0f} events/s)",
            flush=True,
        )
    return app.position()


# --- (a) eventsourcing's ProjectionRunner ----------------------------------------------------


def rows_table_statement(table: sql.Composable) -> sql.Composed:
    """The one table (a) and (b) write: one row per event."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (position bigint PRIMARY KEY, originator_id uuid NOT NULL, "
        "originator_version bigint NOT NULL, topic text NOT NULL, recorded_at timestamptz)"
    ).format(table)


def insert_row_statement(table: sql.Composable) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (position, originator_id, originator_version, topic, recorded_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (position) DO NOTHING"
    ).format(table)


def event_row(position: int, event: DomainEvent) -> tuple[int, UUID, int, str, datetime]:
    return (
        position,
        event.originator_id,
        event.originator_version,
        get_topic(type(event)),
        event.timestamp,
    )


class RowPerEventView(PostgresTrackingRecorder):
    """The library's tracking recorder plus one table; each event's row and tracking
    are written in one transaction, as the library's examples do. Notes when the
    ``target``-th event was processed."""

    target: int = 0

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        tracking_table_name: str = "notification_tracking",
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        rows = sql.Identifier(
            datastore.schema, tracking_table_name.removesuffix("_tracking") + "_rows"
        )
        self.sql_create_statements.append(rows_table_statement(rows))
        self._insert_row = insert_row_statement(rows)
        self.processed = 0
        self.first_processed_ns: int | None = None
        self.target_processed_ns: int | None = None
        self.reached = threading.Event()

    def insert_row(self, event: DomainEvent, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            self._insert_tracking(cursor, tracking)
            cursor.execute(self._insert_row, event_row(tracking.notification_id, event))
        self.processed += 1
        if self.first_processed_ns is None:
            self.first_processed_ns = time.perf_counter_ns()
        if self.processed == self.target:
            self.target_processed_ns = time.perf_counter_ns()
            self.reached.set()


class RowPerEventProjection(LibraryProjection[RowPerEventView]):
    """Every topic; one row per event."""

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_row(domain_event, tracking)


def bench_library_runner(url: str, table_prefix: str, events: int) -> float:
    """Events/s of eventsourcing's ``ProjectionRunner`` over the first ``events`` events,
    from the first event processed to the ``events``-th."""

    class NamedProjection(RowPerEventProjection):
        name = f"{table_prefix}_runner"  # tables {name}_tracking and {name}_rows

    class TargetedView(RowPerEventView):
        target = events

    key_ring = master_key_ring(store_settings(url))

    class KeyedApplication(PrepApplication):
        """The store as the library's runner opens it (from its environment), opening
        personal fields as Prep ES's own runners do."""

        name = PrepApplication.name  # else the library names it after the class

        def __init__(self, env: EnvType | None = None) -> None:
            super().__init__(env, key_ring=key_ring)

    runner: LibraryProjectionRunner[PrepApplication, RowPerEventView] = LibraryProjectionRunner(
        application_class=KeyedApplication,
        projection_class=NamedProjection,
        view_class=TargetedView,
        env=application_env(store_settings(url)),
    )
    with runner:
        view = runner.view
        while not view.reached.wait(timeout=0.5):
            if runner.is_interrupted.is_set():
                runner.run_forever(timeout=0)  # raises the processing thread's error
                raise RuntimeError("eventsourcing's runner stopped before the target")
    assert view.first_processed_ns is not None and view.target_processed_ns is not None
    elapsed_s = (view.target_processed_ns - view.first_processed_ns) / 1e9
    return (events - 1) / elapsed_s


# --- (b) the hand-written batched loop ---------------------------------------------------------


def bench_batched_loop(
    url: str, app: PrepApplication, table_prefix: str, head: int, *, decode: bool
) -> float:
    """Events/s of a loop that reads notifications in order and writes one row per
    event, ``LOOP_BATCH_SIZE`` per transaction with the position. ``decode=False`` skips
    the mapper (rows from the notification's own fields, no timestamp): the cost of
    reading and writing alone."""
    name = f"{table_prefix}_{'loop' if decode else 'raw'}"
    rows_table = sql.Identifier(f"{name}_rows")
    position_table = sql.Identifier(f"{name}_position")
    insert = insert_row_statement(rows_table)
    save_position = sql.SQL(
        "INSERT INTO {} (name, position) VALUES (%s, %s) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position"
    ).format(position_table)
    with psycopg.connect(postgres_location(url).conninfo(), autocommit=True) as connection:
        connection.execute(rows_table_statement(rows_table))
        connection.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL)"
            ).format(position_table)
        )
        recorder, mapper = app.recorder, app.mapper
        position = 0
        started = time.perf_counter()
        with connection.cursor() as cursor:
            while position < head:
                notifications = recorder.select_notifications(
                    start=position, limit=LOOP_BATCH_SIZE, stop=head, inclusive_of_start=False
                )
                if not notifications:
                    break
                if decode:
                    rows: list[tuple[Any, ...]] = []
                    for notification in notifications:
                        event = mapper.to_domain_event(notification)
                        assert isinstance(event, DomainEvent), event
                        rows.append(event_row(notification.id, event))
                else:
                    rows = [
                        (n.id, n.originator_id, n.originator_version, n.topic, None)
                        for n in notifications
                    ]
                position = notifications[-1].id
                with connection.transaction():
                    cursor.executemany(insert, rows)
                    cursor.execute(save_position, (name, position))
        elapsed = time.perf_counter() - started
    return head / elapsed


# --- (c) our rebuilds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rebuild:
    name: str
    elapsed_s: float
    events_applied: int


def rebuild(database: ReadDatabase, app: PrepApplication, projection: type[Projection]) -> Rebuild:
    """Rebuild one projection from position 0 and wait until its new generation serves."""
    generation = request_rebuild(database, projection)
    started = time.perf_counter()
    ProjectionRunner(projection, app, database).catch_up()
    elapsed = time.perf_counter() - started
    with database.reading() as sql_reading:
        known = generations(sql_reading, projection.name)
    [state] = [g for g in known if g.generation == generation]
    assert state.active, f"{projection.name}: generation {generation} did not switch"
    return Rebuild(projection.name, elapsed, state.events_applied)


def catch_up_all(
    database: ReadDatabase,
    app: PrepApplication,
    projections: Sequence[type[Projection]],
    *,
    batch_size: int = BATCH_SIZE,
) -> float:
    """Every projection caught up, one thread each sharing one event decoder (as the
    supervisor runs them)."""
    decoder = EventDecoder(app)
    started = time.perf_counter()
    in_threads(
        len(projections),
        lambda i: ProjectionRunner(
            projections[i], app, database, batch_size=batch_size, decoder=decoder
        ).catch_up(),
    )
    return time.perf_counter() - started


def rebuild_all(
    database: ReadDatabase, app: PrepApplication, projections: Sequence[type[Projection]]
) -> float:
    for projection in projections:
        request_rebuild(database, projection)
    return catch_up_all(database, app, projections)


def child_environment(url: str) -> dict[str, str]:
    """This process's environment with Prep ES's settings replaced by the bench's store."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREP_ES_")},
        "PREP_ES_DATABASE_URL": url,
        **master_key_environment(url),
    }


@dataclass(frozen=True)
class CommandRebuild:
    elapsed_s: float
    """As the command reports it: from its start, after imports, to the last switch."""
    wall_s: float
    """From starting the process to its exit."""


def rebuild_all_command(url: str) -> CommandRebuild:
    """``prep-es projections rebuild all`` (its default processes: one per CPU)."""
    started = time.perf_counter()
    ran = subprocess.run(
        [sys.executable, "-m", "prep_es.cli", "projections", "rebuild", "all", "--json"],
        env=child_environment(url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall_s = time.perf_counter() - started
    if ran.returncode != 0:
        raise RuntimeError(f"prep-es projections rebuild all failed: {ran.stderr}")
    return CommandRebuild(float(orjson.loads(ran.stdout)["elapsed_s"]), wall_s)


def profile_rebuild(
    database: ReadDatabase, app: PrepApplication, projection: type[Projection], seconds: float
) -> str:
    """cProfile of the first ``seconds`` of a rebuild (then finished unprofiled)."""
    request_rebuild(database, projection)
    runner = ProjectionRunner(projection, app, database)
    profiler = cProfile.Profile()
    profiler.enable()
    runner.catch_up(timeout_s=seconds)
    profiler.disable()
    runner.catch_up()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(25)
    return buffer.getvalue()


# --- (d) lag ----------------------------------------------------------------------------------


@dataclass
class Commit:
    position: int
    committed_ns: int
    kind: str


@dataclass
class LagRun:
    commits: list[Commit]
    sightings: dict[str, list[tuple[int, int]]]
    """Per projection, (position, when reported) in report order."""
    elapsed_s: float
    refused: Counter[str]

    def lags_ms(self, name: str, kinds: frozenset[str] | None = None) -> tuple[list[float], int]:
        """Each measured commit's lag to ``name``, and how many were never seen."""
        seen = self.sightings.get(name, [])
        positions = [position for position, _ in seen]
        lags: list[float] = []
        missing = 0
        for commit in self.commits:
            if kinds is not None and commit.kind not in kinds:
                continue
            index = bisect.bisect_left(positions, commit.position)
            if index == len(positions):
                missing += 1
                continue
            lags.append(max(0, seen[index][1] - commit.committed_ns) / 1e6)
        return lags, missing


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def projectors_in_process(
    runtime: Runtime, read_side: ReadSide, on_position: Callable[[str, int], None]
) -> Iterator[None]:
    """The supervisor in this process, reporting through its ``on_position`` callback."""
    supervisor, signal = start_projectors(
        runtime.settings, runtime.app, read_side, on_position=on_position
    )
    try:
        yield
    finally:
        supervisor.stop()
        signal.stop()


@contextmanager
def projectors_in_child(url: str, on_position: Callable[[str, int], None]) -> Iterator[None]:
    """``prep-es project`` in its own process, the scaled deployment's shape; its
    positions heard through ``LISTEN``, which delivers a notification only after the
    runner's transaction committed (so after its rows became visible)."""
    listening = threading.Event()
    stopping = threading.Event()

    def listen() -> None:
        with psycopg.connect(postgres_location(url).conninfo(), autocommit=True) as connection:
            connection.execute(f'LISTEN "{POSITIONS_CHANNEL}"')
            listening.set()
            while not stopping.is_set():
                for notification in connection.notifies(timeout=0.1):
                    name, _, position = notification.payload.rpartition(":")
                    on_position(name, int(position))

    listener = threading.Thread(target=listen, name="bench-positions", daemon=True)
    listener.start()
    listening.wait(10)
    child = subprocess.Popen(
        [sys.executable, "-m", "prep_es.cli", "project"],
        env=child_environment(url),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        child.terminate()
        child.wait(30)
        stopping.set()
        listener.join(5)


def wait_until_caught_up(read_side: ReadSide, head: int) -> None:
    """Until every projection's active generation reached ``head`` (bounded)."""
    deadline = time.perf_counter() + LAG_SETTLE_TIMEOUT_S
    for projection in PROJECTIONS:
        while time.perf_counter() < deadline:
            with read_side.write_database.reading() as statement:
                if read_position(statement, projection.name) >= head:
                    break
            time.sleep(0.05)


def receive_due_notifications(runtime: Runtime) -> int:
    """Receive what the sandbox has due, as its delivery thread would (another thread
    may have taken it first); the last position that wrote, 0 if none."""
    sandbox = runtime.payment_provider.sandbox
    assert sandbox is not None, "the bench's customers top up through the sandbox"
    positions = [0]

    def receive(payload: bytes, headers: Mapping[str, str]) -> None:
        received = runtime.receive_notification("sandbox", payload, headers, uuid4().hex)
        positions.append(received.position)

    sandbox.deliver_due(receive)
    return max(positions)


def bench_lag(market: Market, read_side: ReadSide, plan: Plan, *, url: str, child: bool) -> LagRun:
    """4 threads issue bookings (3 in 4) and top-ups, each with its notification received,
    at full speed while the projectors run in a child process (``child``) or in this one;
    commits before the warm-up ends are not measured."""
    runtime = market.runtime
    first = market.next_day
    market.clock.now = local_time(first, CLOCK_HOUR)
    market.next_day = first + timedelta(days=400)  # far more days than (d) can fill
    sightings: dict[str, list[tuple[int, int]]] = {p.name: [] for p in PROJECTIONS}
    sightings_lock = threading.Lock()

    def on_position(name: str, position: int) -> None:
        with sightings_lock:
            sightings[name].append((position, time.perf_counter_ns()))

    projectors = (
        projectors_in_child(url, on_position)
        if child
        else projectors_in_process(runtime, read_side, on_position)
    )

    def issue(index: int) -> tuple[list[Commit], Counter[str]]:
        writer = market.writers[index]
        bookings = runtime.commands.bookings
        top_ups = runtime.commands.top_ups
        commits: list[Commit] = []
        refused: Counter[str] = Counter()
        slots = (
            (first + timedelta(days=offset), kitchen, slot)
            for offset in itertools.count(1)
            for kitchen in writer.kitchens
            for slot in kitchen.slots(first + timedelta(days=offset))
        )
        for n in itertools.count():
            if time.perf_counter() >= deadline:
                break
            customer = writer.next_customer()
            try:
                if n % 4 == 3:
                    kind = "top_up"
                    position = top_ups.request_top_up(
                        RequestTopUp(amount_cents=LAG_TOP_UP_CENTS, payment_method="pm_card_visa"),
                        as_actor(customer),
                    ).position
                    position = max(position, receive_due_notifications(runtime))
                else:
                    kind = "booking"
                    _, kitchen, (start, end) = next(slots)
                    position = bookings.request_booking(
                        RequestBooking(
                            kitchen_id=kitchen.id, start_time=start, end_time=end, guests=2
                        ),
                        as_actor(customer),
                    ).position
            except DomainError as error:
                refused[error.code] += 1
                continue
            committed = time.perf_counter_ns()
            if committed >= measured_from_ns:
                commits.append(Commit(position, committed, kind))
        return commits, refused

    head_before = runtime.app.position()
    with projectors:
        wait_until_caught_up(read_side, head_before)
        measured_from_ns = time.perf_counter_ns() + int(plan.lag_warmup_s * 1e9)
        deadline = time.perf_counter() + plan.lag_warmup_s + plan.lag_s
        started = time.perf_counter()
        results = in_threads(WRITER_THREADS, issue)
        elapsed = time.perf_counter() - started
        head = runtime.app.position()
        settle_by = time.perf_counter() + LAG_SETTLE_TIMEOUT_S
        while time.perf_counter() < settle_by and any(
            not seen or seen[-1][0] < head for seen in sightings.values()
        ):
            time.sleep(0.05)
    commits = [commit for result in results for commit in result[0]]
    refused = sum((result[1] for result in results), Counter[str]())
    return LagRun(commits, sightings, elapsed - plan.lag_warmup_s, refused)


# --- RSS of a projector building 1M events ---------------------------------------------------


def grow_store(url: str, market: Market, events_total: int) -> float:
    """Append deposits (``Account.FundsDeposited``, as a store written before top-ups
    holds them) to the customers' accounts in batches until the store holds
    ``events_total`` events; events/s written."""
    app = open_application(store_settings(url, aggregate_cache_size=0))
    try:
        start = app.position()
        remaining = [events_total - start]
        lock = threading.Lock()

        def take(count: int) -> int:
            with lock:
                granted = max(0, min(count, remaining[0]))
                remaining[0] -= granted
                return granted

        def grow(index: int) -> None:
            writer = market.writers[index]
            for customer in itertools.cycle(writer.customers):
                count = take(BULK_DEPOSITS_PER_SAVE)
                if count == 0:
                    return
                account: Account = app.repository.get(account_id_for(customer.user_id))
                for _ in range(count):
                    request_id = uuid4().hex
                    metadata = EventMetadata(
                        actor_id=customer.user_id,
                        actor_role=customer.role,
                        request_id=request_id,
                        correlation_id=request_id,
                    )
                    with recording_metadata(metadata):
                        account.trigger_event(
                            Account.FundsDeposited, entry_id=uuid4(), amount_cents=100
                        )
                app.save(account)

        started = time.perf_counter()
        in_threads(WRITER_THREADS, grow)
        return (app.position() - start) / (time.perf_counter() - started)
    finally:
        app.close()


def schema_conninfo(url: str, schema: str) -> str:
    return f"{postgres_location(url).conninfo()} options='-c search_path={schema}'"


def rebuild_child(url: str, schema: str) -> None:
    """In the child process: build every projection from position 0 into ``schema``,
    one thread each with rebuild-sized batches, then print what it took as JSON."""
    app = open_application(store_settings(url, aggregate_cache_size=0))
    database = PostgresReadDatabase(schema_conninfo(url, schema), pool_size=len(PROJECTIONS) + 2)
    try:
        head = app.position()
        for projection in PROJECTIONS:
            ensure_ready(database, projection)
        started = time.perf_counter()
        in_threads(
            len(PROJECTIONS),
            lambda i: ProjectionRunner(
                PROJECTIONS[i], app, database, batch_size=REBUILD_BATCH_SIZE
            ).catch_up(),
        )
        elapsed = time.perf_counter() - started
    finally:
        database.close()
        app.close()
    status = Path("/proc/self/status").read_text()
    peaks = {
        key: int(value.split()[0])
        for line in status.splitlines()
        for key, _, value in [line.partition(":")]
        if key in ("VmHWM", "VmRSS")
    }
    print(
        orjson.dumps(
            {
                "events": head,
                "elapsed_s": elapsed,
                "vm_hwm_kb": peaks["VmHWM"],
                "vm_rss_kb": peaks["VmRSS"],
            }
        ).decode()
    )


@dataclass(frozen=True)
class RssRun:
    events: int
    elapsed_s: float
    peak_mb: float


def bench_rebuild_rss(url: str, schema: str) -> RssRun:
    with psycopg.connect(postgres_location(url).conninfo(), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    completed = subprocess.run(
        [sys.executable, "-m", "bench.projectors", "--rebuild-child", schema],
        cwd=ROOT,
        env={**os.environ, URL_VARIABLE: url},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise RuntimeError(f"the rebuild child failed with exit code {completed.returncode}")
    result = orjson.loads(completed.stdout.strip().splitlines()[-1])
    return RssRun(int(result["events"]), float(result["elapsed_s"]), result["vm_hwm_kb"] / 1024)


# --- reporting ----------------------------------------------------------------------------------


TARGETS: Final = {
    "rebuild_one_vs_batched_loop": ">= 0.8",
    "rebuild_all_vs_runner": ">= 15",
    "lag_p99_ms": "<= 50",
    "rebuild_rss_mb": "<= 300",
}


# --- main ---------------------------------------------------------------------------------------


@contextmanager
def database_for_run() -> Iterator[tuple[Database, str]]:
    given = os.environ.get(URL_VARIABLE) or None
    if given is not None:
        postgres_location(given)
    database = Database(given_url=given)
    url = database.open()
    try:
        yield database, url
    finally:
        database.drop(url)


@dataclass
class Session:
    """One run's open store, read side and results so far."""

    plan: Plan
    url: str
    prefix: str
    runtime: Runtime
    read_side: ReadSide
    market: Market
    report: Report = field(
        default_factory=lambda: Report("projections", TARGETS, value_format=",.2f")
    )
    head: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    runner_rate: float = 0.0
    loop_rate: float = 0.0
    rebuilds: dict[str, Rebuild] = field(default_factory=dict)
    rebuild_all_s: float = 0.0


def stage_history(session: Session, started: float) -> None:
    plan, report = session.plan, session.report
    head = write_history(session.market, plan)
    report.figure("history_events", head, "events")
    report.figure("history_write_events_per_s", head / (time.perf_counter() - started), "events/s")
    outcomes = session.market.outcomes()
    report.notes.append(
        "history outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    )
    session.head = head
    session.counts = topic_counts(session.url, session.runtime.app)


def stage_floors(session: Session) -> None:
    """(a) and (b)."""
    report, head = session.report, session.head
    # From here on this process runs projections, floors and ours alike, under the
    # collector policy of Prep ES's projector processes: the ratios compare code, not
    # collector settings.
    tune_garbage_collection()
    events = min(session.plan.es_runner_events, head)
    print(f"(a) eventsourcing's ProjectionRunner over the first {events} events", flush=True)
    session.runner_rate = bench_library_runner(session.url, session.prefix, events)
    report.figure("es_runner_events_per_s", session.runner_rate, "events/s")
    print(f"   {session.runner_rate:.0f} events/s", flush=True)

    print(f"(b) batched psycopg loop over {head} events", flush=True)
    app = session.runtime.app
    session.loop_rate = bench_batched_loop(session.url, app, session.prefix, head, decode=True)
    raw_rate = bench_batched_loop(session.url, app, session.prefix, head, decode=False)
    report.figure("batched_loop_events_per_s", session.loop_rate, "events/s")
    report.figure("batched_loop_undecoded_events_per_s", raw_rate, "events/s")
    print(f"   {session.loop_rate:.0f} events/s ({raw_rate:.0f} without decoding)", flush=True)


def stage_rebuilds(session: Session) -> None:
    """(c): a first build of every projection (untimed for the ratios: it fills the
    active generations so that rebuilds do only rebuild work), each alone, all at once."""
    report, head, app = session.report, session.head, session.runtime.app
    database = session.read_side.write_database
    print("(c) rebuilds: first build of every projection", flush=True)
    for projection in PROJECTIONS:
        ensure_ready(database, projection)
    first_build_s = catch_up_all(database, app, PROJECTIONS, batch_size=REBUILD_BATCH_SIZE)
    report.figure("first_build_all_events_per_s", head / first_build_s, "events/s")
    print(f"   all together from 0: {first_build_s:.1f} s", flush=True)
    for projection in PROJECTIONS:
        result = rebuild(database, app, projection)
        session.rebuilds[projection.name] = result
        own = sum(session.counts[topic] for topic in projection.topics())
        report.figure(
            f"rebuild_{projection.name}_events_per_s", head / result.elapsed_s, "events/s"
        )
        report.figure(
            f"rebuild_{projection.name}_own_events_per_s",
            result.events_applied / result.elapsed_s,
            "events/s",
        )
        print(
            f"   {projection.name}: {result.elapsed_s:.1f} s, "
            f"{head / result.elapsed_s:.0f} store events/s, {result.events_applied} "
            f"of its own ({own} in the store)",
            flush=True,
        )
    one_process_s = rebuild_all(database, app, PROJECTIONS)
    report.figure("rebuild_all_one_process_events_per_s", head / one_process_s, "events/s")
    report.figure(
        "rebuild_all_sequential_events_per_s",
        head / sum(r.elapsed_s for r in session.rebuilds.values()),
        "events/s",
    )
    print(f"   all together in this process, one thread each: {one_process_s:.1f} s", flush=True)
    command = rebuild_all_command(session.url)
    session.rebuild_all_s = command.elapsed_s
    report.figure("rebuild_all_events_per_s", head / command.elapsed_s, "events/s")
    report.figure("rebuild_all_command_wall_events_per_s", head / command.wall_s, "events/s")
    report.figure(
        "rebuild_all_sum_events_per_s", head * len(PROJECTIONS) / command.elapsed_s, "events/s"
    )
    print(
        f"   prep-es projections rebuild all ({os.cpu_count()} processes): "
        f"{command.elapsed_s:.1f} s ({command.wall_s:.1f} s with its start-up)",
        flush=True,
    )


LAG_SHAPES: Final = {"": "in a child process (prep-es project)", "in_process_": "in-process"}
"""Figure prefix → where the projectors run. The child is the scaled shape (API replicas
with ``--no-projector`` and one projector worker) and the headline ``lag_p99_ms``; the
in-process run is ``prep-es serve``'s default shape, where writers and projectors share
one interpreter lock."""


def stage_lag(session: Session) -> None:
    report = session.report
    lag_name = "bookings"
    # What the earlier stages left in this process (the market, the history's
    # bookkeeping) stays out of the collector's passes, as a server's startup objects
    # do: a full pass over it stalls the writer threads and the position listener, which
    # timestamp the commits and sightings.
    tune_garbage_collection()
    for prefix, shape in LAG_SHAPES.items():
        print(
            f"(d) lag to the {lag_name} projection, projectors {shape}, "
            f"{WRITER_THREADS} writer threads",
            flush=True,
        )
        lag = bench_lag(
            session.market, session.read_side, session.plan, url=session.url, child=not prefix
        )
        lags, missing = lag.lags_ms(lag_name)
        booking_lags, _ = lag.lags_ms(lag_name, frozenset({"booking"}))
        report.figure(f"{prefix}lag_commands_per_s", len(lag.commits) / lag.elapsed_s, "ops/s")
        report.figure(f"{prefix}lag_p50_ms", quantile(lags, 0.5), "ms")
        report.figure(f"{prefix}lag_p99_ms", quantile(lags, 0.99), "ms")
        report.figure(f"{prefix}lag_max_ms", max(lags), "ms")
        report.figure(f"{prefix}lag_bookings_only_p99_ms", quantile(booking_lags, 0.99), "ms")
        for projection in PROJECTIONS:
            lags_of = lag.lags_ms(projection.name)[0]
            if lags_of:
                report.figure(
                    f"{prefix}lag_{projection.name}_p99_ms", quantile(lags_of, 0.99), "ms"
                )
        if missing:
            report.notes.append(
                f"{prefix}lag: {missing} commits not seen by {lag_name} within "
                f"{LAG_SETTLE_TIMEOUT_S:.0f} s of the end"
            )
        if lag.refused:
            report.notes.append(f"{prefix}lag: refused commands {dict(lag.refused)}")
        print(
            f"   {len(lag.commits)} commands measured, p50 {quantile(lags, 0.5):.1f} ms, "
            f"p99 {quantile(lags, 0.99):.1f} ms",
            flush=True,
        )


def stage_profile(session: Session) -> None:
    head, rebuilds = session.head, session.rebuilds
    slowest = min(rebuilds, key=lambda name: head / rebuilds[name].elapsed_s)
    projection = next(p for p in PROJECTIONS if p.name == slowest)
    seconds = session.plan.profile_s
    print(f"profile: the first {seconds:.0f} s of rebuilding {slowest}", flush=True)
    print(
        profile_rebuild(session.read_side.write_database, session.runtime.app, projection, seconds)
    )


def stage_rss(session: Session) -> None:
    report, plan = session.report, session.plan
    print(f"RSS: growing the store to {plan.rss_events} events", flush=True)
    grow_rate = grow_store(session.url, session.market, plan.rss_events)
    print(f"   {grow_rate:.0f} events/s; building every projection in a child", flush=True)
    rss = bench_rebuild_rss(session.url, f"{session.prefix}_rss")
    report.figure("rebuild_rss_mb", rss.peak_mb, "MB")
    report.figure("rebuild_rss_events", rss.events, "events")
    report.figure("rebuild_rss_all_events_per_s", rss.events / rss.elapsed_s, "events/s")
    if rss.events < 1_000_000:
        report.notes.append(f"rebuild_rss_mb measured at {rss.events} events, not 1M")
    print(
        f"   peak {rss.peak_mb:.0f} MB over {rss.events} events in {rss.elapsed_s:.0f} s",
        flush=True,
    )


def finish_report(session: Session) -> None:
    report, head = session.report, session.head
    report.ratio(
        "rebuild_one_vs_batched_loop",
        head / session.rebuilds["audit"].elapsed_s,
        session.loop_rate,
    )
    report.ratio("rebuild_all_vs_runner", head / session.rebuild_all_s, session.runner_rate)
    report.ratio(
        "rebuild_all_one_process_vs_runner",
        report.figures["rebuild_all_one_process_events_per_s"]["value"],
        session.runner_rate,
    )
    for name, result in session.rebuilds.items():
        if name != "audit":
            report.ratio(
                f"rebuild_{name}_vs_batched_loop", head / result.elapsed_s, session.loop_rate
            )
    report.ratio("batched_loop_vs_runner", session.loop_rate, session.runner_rate)
    report.notes.append(
        "rebuild_one_vs_batched_loop uses audit (one row per event, as (b)); its rows are "
        "wider (payload jsonb) and carry 4 secondary indexes"
    )
    report.notes.append(
        "rebuild_all: `prep-es projections rebuild all` (the projections shared among one "
        "process per CPU, one thread each within a process), its time as it reports it "
        "(from its start, after imports, to the last switch; with its start-up: "
        "rebuild_all_command_wall_events_per_s); rebuild_all_one_process: every projection "
        "in one process, one thread each, as the supervisor runs them; events/s = store "
        "events / wall time"
    )


def run_benchmarks(plan: Plan, *, profile: bool) -> None:
    started = time.perf_counter()
    load_average_at_start = list(os.getloadavg())
    with database_for_run() as (database, url):
        where = postgres_location(url).dbname
        print(
            f"bench/projectors.py ({plan.mode}): PostgreSQL database {where}; "
            f"projections: {', '.join(p.name for p in PROJECTIONS)}",
            flush=True,
        )
        clock = MutableClock(local_time(START_DAY, CLOCK_HOUR))
        runtime = open_runtime(
            store_settings(url), clock=clock, passwords=Argon2Passwords.cheap_for_tests()
        )
        read_side = open_read_side(store_settings(url))
        try:
            print(f"history: writing >= {plan.history_events} events", flush=True)
            setup_started = time.perf_counter()
            market = build_market(runtime, clock, plan, database.token)
            print(
                f"   setup: {plan.kitchens} kitchens, {HOSTS} hosts, {plan.customers} funded "
                f"customers in {time.perf_counter() - setup_started:.1f} s",
                flush=True,
            )
            session = Session(plan, url, database.prefix(), runtime, read_side, market)
            stage_history(session, setup_started)
            stage_floors(session)
            stage_rebuilds(session)
            stage_lag(session)
            if profile:
                stage_profile(session)
            stage_rss(session)
        finally:
            read_side.close()
            runtime.close()
    finish_report(session)
    report = session.report
    if database.given_url is not None:
        report.notes.append(f"ran in the given database {where}")
    report.print_table()
    by_aggregate: Counter[str] = Counter()
    for topic, count in session.counts.items():
        by_aggregate[topic.partition(".")[0]] += count
    meta = {
        "mode": plan.mode,
        "projections": {p.name: p.version for p in PROJECTIONS},
        "history_events": session.head,
        "events_by_aggregate": dict(sorted(by_aggregate.items())),
        "kitchens": plan.kitchens,
        "customers": plan.customers,
        "writer_threads": WRITER_THREADS,
        "es_runner_events": min(plan.es_runner_events, session.head),
        "loop_batch_size": LOOP_BATCH_SIZE,
        "rebuild_batch_size": REBUILD_BATCH_SIZE,
        "lag_s": plan.lag_s,
        "psycopg_impl": psycopg.pq.__impl__,
        "load_average_at_start": load_average_at_start,
        "load_average_at_end": list(os.getloadavg()),
        **run_meta(started),
    }
    report.write(meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="reduced run for checks (< 3 min)")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the slowest projection's rebuild"
    )
    parser.add_argument(
        "--rss-events", type=int, metavar="N", help="grow the store to N events for the RSS build"
    )
    parser.add_argument("--rebuild-child", metavar="SCHEMA", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rebuild_child:
        rebuild_child(os.environ[URL_VARIABLE], args.rebuild_child)
        return
    plan = QUICK if args.quick else FULL
    if args.rss_events is not None:
        plan = replace(plan, rss_events=args.rss_events)
    run_benchmarks(plan, profile=args.profile)


if __name__ == "__main__":
    main()
