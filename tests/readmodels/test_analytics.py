"""The analytics read model and its queries, on both backends: kitchen statistics
equal a brute-force fold of the aggregates and events, revenue series add up to the
captures at every granularity, per city and per jurisdiction, rankings (filtered by
place too), occupancy over a range, access rules, validation, a rebuild that yields the
same rows, and CSV a CSV parser reads back."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID, uuid4

import pytest

from aggregates.account import Account
from aggregates.booking import Booking
from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from aggregates.kitchen import Kitchen
from commands.bookings import BookingAction, CancelBooking, DeclineBooking, RescheduleBooking
from commands.context import Actor
from commands.kitchens import UpdateKitchen
from prep_es.services.readside import ReadSide, open_read_side
from projections.analytics import AnalyticsProjection, as_date
from projections.database import Sql
from projections.generations import ensure_ready, generations, request_rebuild
from projections.runners import ProjectionRunner
from queries.analytics import AnalyticsQueries, RevenueSeries
from queries.base import PageRequest, Viewer
from queries.csv_format import to_csv
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    create_user,
    open_test_runtime,
    publish_compliant_kitchen,
    store_settings,
)

T0 = START_OF_TESTS  # Monday 2030-01-07 17:00 UTC, 09:00 in Los Angeles
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
LA_OPERATING_MINUTES = 18 * 60  # 05:00–23:00
ANALYST = Viewer(user_id=uuid4(), role="analyst")


@dataclass
class World:
    market: Marketplace
    read_side: ReadSide
    changes: list[str] = field(default_factory=list)

    def catch_up(self) -> None:
        ensure_ready(self.read_side.write_database, AnalyticsProjection)
        ProjectionRunner(
            AnalyticsProjection,
            self.market.runtime.app,
            self.read_side.write_database,
            batch_size=17,
            on_changes=lambda changed, _: self.changes.extend(changed),
        ).catch_up()

    @property
    def queries(self) -> AnalyticsQueries:
        return AnalyticsQueries(self.read_side.query_database)

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        with self.read_side.query_database.reading() as sql:
            return {
                table: sql.fetchall(f"SELECT * FROM {AnalyticsProjection.view(table)}")
                for table in AnalyticsProjection.tables
            }


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    read_side = open_read_side(store_settings(database_url))
    yield World(build_marketplace(runtime, clock), read_side)
    read_side.close()
    runtime.close()


@dataclass(frozen=True)
class Story:
    la_kitchen: UUID
    sf_kitchen: UUID
    idle_kitchen: UUID
    sf_host: Actor
    booking_ids: list[UUID]


def live_a_fortnight(market: Marketplace) -> Story:
    """A Los Angeles kitchen (50.00/h, host confirms) and a San Francisco one
    (80.00/h, instant book, another host), with bookings ending every way: completed
    (one after a reschedule), declined, cancelled free, with a 50 % and a 100 % fee,
    expired, and left pending or confirmed. A third kitchen is never booked."""
    runtime = market.runtime
    commands = runtime.commands.bookings
    host, customer = as_actor(market.host), as_actor(market.customer)
    sf_host = create_user(runtime, "host", "sf-host@example.com")
    sf_kitchen = publish_compliant_kitchen(
        runtime,
        sf_host,
        market.admin,
        jurisdiction="san_francisco",
        hourly_rate_cents=8000,
        instant_book=True,
    )
    idle_kitchen = publish_compliant_kitchen(runtime, market.host, market.admin)
    sf = Marketplace(
        runtime=runtime,
        clock=market.clock,
        admin=market.admin,
        host=sf_host,
        customer=market.customer,
        kitchen_id=sf_kitchen,
    )
    ids = {
        "completed": market.request_booking(T0 + DAY),
        "rescheduled_completed": market.request_booking(T0 + 2 * DAY, hours=3),
        "declined": market.request_booking(T0 + 5 * DAY),
        "free_cancel": market.request_booking(T0 + 6 * DAY),
        "half_fee": market.request_booking(T0 + 3 * DAY),
        "pending": market.request_booking(T0 + 10 * DAY),
        "expired": market.request_booking(T0 + DAY + 3 * HOUR),
        "confirmed": market.request_booking(T0 + 12 * DAY, hours=5),
        "sf_completed": sf.request_booking(T0 + DAY, hours=4),
        "sf_full_fee": sf.request_booking(T0 + 4 * DAY),
    }
    booking_ids = {name: state.id for name, state in ids.items()}
    for name in ("completed", "rescheduled_completed", "half_fee", "confirmed"):
        commands.confirm_booking(BookingAction(booking_id=booking_ids[name]), host)
    commands.reschedule_booking(
        RescheduleBooking(
            booking_id=booking_ids["rescheduled_completed"],
            start_time=T0 + 2 * DAY,
            end_time=T0 + 2 * DAY + 4 * HOUR,
        ),
        customer,
    )
    commands.cancel_booking(CancelBooking(booking_id=booking_ids["free_cancel"]), customer)
    commands.decline_booking(DeclineBooking(booking_id=booking_ids["declined"]), host)
    runtime.commands.kitchens.update_kitchen(
        UpdateKitchen(kitchen_id=market.kitchen_id, name='Chef\'s "Best", Kitchen'), host
    )

    market.clock.advance(DAY + 5 * HOUR)  # day 1, 22:00 UTC: day 1's bookings are over
    assert runtime.commands.sweeper.sweep().expired_booking_ids == [booking_ids["expired"]]
    commands.complete_booking(BookingAction(booking_id=booking_ids["completed"]), host)
    commands.complete_booking(
        BookingAction(booking_id=booking_ids["sf_completed"]), as_actor(sf_host)
    )
    market.clock.advance(6 * HOUR)  # "half_fee" starts in 37 h: a 50 % fee
    commands.cancel_booking(CancelBooking(booking_id=booking_ids["half_fee"]), customer)
    market.clock.advance(18 * HOUR)  # day 2, 22:00 UTC
    commands.complete_booking(BookingAction(booking_id=booking_ids["rescheduled_completed"]), host)
    market.clock.advance(DAY + 9 * HOUR)  # "sf_full_fee" starts in 10 h
    commands.cancel_booking(CancelBooking(booking_id=booking_ids["sf_full_fee"]), customer)
    return Story(
        la_kitchen=market.kitchen_id,
        sf_kitchen=sf_kitchen,
        idle_kitchen=idle_kitchen,
        sf_host=sf_host,
        booking_ids=list(booking_ids.values()),
    )


def all_events(market: Marketplace) -> list[Any]:
    app = market.runtime.app
    notifications = app.recorder.select_notifications(start=1, limit=1_000_000)
    return [app.mapper.to_domain_event(notification) for notification in notifications]


def expected_stats(market: Marketplace, story: Story, kitchen_id: UUID) -> dict[str, Any]:
    """The statistics folded by hand: booking aggregates for statuses and windows,
    HoldCaptured events for money."""
    repository = market.runtime.app.repository
    bookings: list[Any] = [repository.get(booking_id) for booking_id in story.booking_ids]
    mine = [b for b in bookings if b.kitchen_id == kitchen_id]
    completed = [b for b in mine if b.status == "completed"]
    booking_ids = {b.id for b in mine}
    captures = [
        e
        for e in all_events(market)
        if isinstance(e, Account.HoldCaptured) and e.hold_id in booking_ids
    ]
    minutes = sum(int((b.end_time - b.start_time).total_seconds()) // 60 for b in completed)
    counts = {
        f"{status}_bookings": sum(1 for b in mine if b.status == status)
        for status in ("pending", "confirmed", "completed", "cancelled", "declined", "expired")
    }
    total_price = sum(b.price_cents for b in completed)
    return {
        "total_bookings": len(mine),
        **counts,
        "booked_minutes": minutes,
        "gmv_cents": sum(e.captured_cents for e in captures),
        "host_revenue_cents": sum(e.payee_cents for e in captures),
        "platform_revenue_cents": sum(e.commission_cents for e in captures),
        "average_price_cents": (
            None if not completed else (2 * total_price + len(completed)) // (2 * len(completed))
        ),
    }


def test_kitchen_stats_equal_a_fold_of_the_aggregates_and_events(world: World) -> None:
    story = live_a_fortnight(world.market)
    world.catch_up()
    assert set(world.changes) == {"analytics"}  # the query cache's dependency
    queries = world.queries

    for kitchen_id in (story.la_kitchen, story.sf_kitchen, story.idle_kitchen):
        stats = queries.kitchen_stats(ANALYST, kitchen_id)
        expected = expected_stats(world.market, story, kitchen_id)
        assert {name: getattr(stats, name) for name in expected} == expected

    la = queries.kitchen_stats(ANALYST, story.la_kitchen)
    assert (la.total_bookings, la.completed_bookings, la.cancelled_bookings) == (8, 2, 2)
    assert (la.pending_bookings, la.confirmed_bookings) == (1, 1)
    assert (la.declined_bookings, la.expired_bookings) == (1, 1)
    assert la.booked_hours == 6.0  # 2 h, then 4 h after the reschedule
    assert la.gmv_cents == 10_000 + 20_000 + 5_000  # two completions, one 50 % fee
    assert la.platform_revenue_cents == 1_000 + 2_000 + 500
    assert la.average_price_cents == 15_000
    assert la.name == 'Chef\'s "Best", Kitchen'
    # Completed bookings on Jan 8 and Jan 9 (Los Angeles days): two operating days.
    assert (la.occupancy_first_day, la.occupancy_last_day) == (date(2030, 1, 8), date(2030, 1, 9))
    assert la.available_minutes == 2 * LA_OPERATING_MINUTES
    assert la.occupancy == round(360 / (2 * LA_OPERATING_MINUTES), 4)

    sf = queries.kitchen_stats(ANALYST, story.sf_kitchen)
    assert (sf.gmv_cents, sf.platform_revenue_cents) == (32_000 + 16_000, 3_200 + 1_600)
    assert sf.available_minutes == 16 * 60 and sf.occupancy == 0.25
    assert sf.city == "San Francisco"

    idle = queries.kitchen_stats(ANALYST, story.idle_kitchen)
    assert (idle.total_bookings, idle.gmv_cents, idle.average_price_cents) == (0, 0, None)
    assert (idle.occupancy, idle.available_minutes) == (None, None)


def test_revenue_series_add_up_to_the_captures(world: World) -> None:
    story = live_a_fortnight(world.market)
    world.catch_up()
    captures = [e for e in all_events(world.market) if isinstance(e, Account.HoldCaptured)]
    gmv = sum(e.captured_cents for e in captures)
    commission = sum(e.commission_cents for e in captures)
    assert (gmv, commission) == (83_000, 8_300)
    assert story.booking_ids

    # Events are stamped with the wall clock: the range is around the days they fell on.
    days = sorted({e.timestamp.astimezone(UTC).date() for e in captures})
    from_, to = days[0] - timedelta(days=40), days[-1] + timedelta(days=40)
    queries = world.queries
    for granularity in ("day", "week", "month"):
        series = queries.revenue(ANALYST, from_, to, granularity)
        assert (series.gmv_cents, series.platform_revenue_cents) == (gmv, commission)
        assert sum(p.gmv_cents for p in series.points) == gmv
        assert sum(p.platform_revenue_cents for p in series.points) == commission
        starts = [p.period_start for p in series.points]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert len(queries.revenue(ANALYST, from_, to, "day").points) == (to - from_).days + 1

    per_city = {
        city: queries.revenue(ANALYST, from_, to, "week", city=city)
        for city in ("Los Angeles", "san francisco", "Nowhere")
    }
    assert per_city["Los Angeles"].gmv_cents == 35_000
    assert per_city["san francisco"].gmv_cents == 48_000
    assert per_city["san francisco"].platform_revenue_cents == 4_800
    assert per_city["Nowhere"].gmv_cents == 0
    assert all(p.gmv_cents == 0 for p in per_city["Nowhere"].points)

    # A range that holds no capture day is all zeros, every period present.
    empty = queries.revenue(ANALYST, date(2001, 1, 1), date(2001, 3, 31), "month")
    assert [(p.period_start, p.gmv_cents) for p in empty.points] == [
        (date(2001, 1, 1), 0),
        (date(2001, 2, 1), 0),
        (date(2001, 3, 1), 0),
    ]


def test_series_group_by_utc_day_monday_week_and_month(world: World) -> None:
    """Events built here with chosen timestamps (the store stamps the wall clock),
    applied by the projection in a transaction as the runner applies them."""
    world.catch_up()
    database = world.read_side.write_database
    with database.reading() as sql:
        [active] = [g for g in generations(sql, "analytics") if g.active]
    projection = AnalyticsProjection(active.generation, database.dialect)
    la, sf, host = uuid4(), uuid4(), uuid4()

    def kitchen(kitchen_id: UUID, city: str, jurisdiction: str) -> Kitchen.KitchenCreated:
        return Kitchen.KitchenCreated(
            originator_id=kitchen_id,
            originator_version=1,
            originator_topic="Kitchen",
            timestamp=datetime(2030, 1, 1, tzinfo=UTC),
            host_id=host,
            name="K",
            description="",
            city=city,
            jurisdiction=jurisdiction,
            address="1 Main St",
            hourly_rate_cents=5000,
            capacity=10,
            amenities=[],
            instant_book=True,
        )

    def booking(kitchen_id: UUID, start: datetime) -> tuple[UUID, list[Any]]:
        booking_id = uuid4()
        return booking_id, [
            Booking.BookingRequested(
                originator_id=booking_id,
                originator_version=1,
                originator_topic="Booking",
                timestamp=start - DAY,
                kitchen_id=kitchen_id,
                host_id=host,
                customer_id=uuid4(),
                start_time=start,
                end_time=start + 2 * HOUR,
                guests=1,
                notes="",
                hourly_rate_cents=5000,
                price_cents=10_000,
                status="confirmed",
            ),
            Booking.BookingCompleted(
                originator_id=booking_id,
                originator_version=2,
                timestamp=start + 3 * HOUR,
                automatically=False,
            ),
        ]

    def captured(booking_id: UUID, at: datetime) -> Account.HoldCaptured:
        return Account.HoldCaptured(
            originator_id=uuid4(),
            originator_version=2,
            timestamp=at,
            hold_id=booking_id,
            captured_cents=10_000,
            released_cents=0,
            payee_account_id=uuid4(),
            payee_cents=9_000,
            commission_cents=1_000,
        )

    events: list[Any] = [
        kitchen(la, "Los Angeles", "los_angeles"),
        kitchen(sf, "San Francisco", "san_francisco"),
    ]
    capture_times = [
        (la, datetime(2030, 1, 30, 23, 59, 59, tzinfo=UTC)),  # Wednesday
        (la, datetime(2030, 2, 1, 0, 0, tzinfo=UTC)),  # Friday, same week, next month
        (la, datetime(2030, 2, 4, 8, 0, tzinfo=UTC)),  # the next Monday
        (sf, datetime(2030, 2, 4, 9, 0, tzinfo=UTC)),
    ]
    for kitchen_id, at in capture_times:
        booking_id, booking_events = booking(kitchen_id, at - 4 * HOUR)
        events += [*booking_events, captured(booking_id, at)]
    with database.transaction() as sql:
        for position, event in enumerate(events, start=1_000_000):
            projection.apply(event, position, sql)
        projection.after_batch(sql)

    queries = world.queries
    start, end = date(2030, 1, 29), date(2030, 2, 5)

    def points(series: RevenueSeries) -> list[tuple[date, int]]:
        return [(p.period_start, p.gmv_cents) for p in series.points if p.gmv_cents]

    assert points(queries.revenue(ANALYST, start, end, "day")) == [
        (date(2030, 1, 30), 10_000),
        (date(2030, 2, 1), 10_000),
        (date(2030, 2, 4), 20_000),
    ]
    weeks = queries.revenue(ANALYST, start, end, "week")
    assert [p.period_start for p in weeks.points] == [date(2030, 1, 28), date(2030, 2, 4)]
    assert points(weeks) == [(date(2030, 1, 28), 20_000), (date(2030, 2, 4), 20_000)]
    assert points(queries.revenue(ANALYST, start, end, "month")) == [
        (date(2030, 1, 1), 10_000),
        (date(2030, 2, 1), 30_000),
    ]
    assert points(queries.revenue(ANALYST, start, end, "week", city="San Francisco")) == [
        (date(2030, 2, 4), 10_000)
    ]
    # A period partly outside the range counts only its days inside it.
    partial = queries.revenue(ANALYST, date(2030, 1, 31), end, "month")
    assert [(p.period_start, p.gmv_cents) for p in partial.points] == [
        (date(2030, 1, 1), 0),
        (date(2030, 2, 1), 30_000),
    ]
    # By jurisdiction (summed from the bookings' captures), the same periods.
    la_weeks = queries.revenue(ANALYST, start, end, "week", jurisdiction="los_angeles")
    assert [p.period_start for p in la_weeks.points] == [p.period_start for p in weeks.points]
    assert points(la_weeks) == [(date(2030, 1, 28), 20_000), (date(2030, 2, 4), 10_000)]
    assert points(queries.revenue(ANALYST, start, end, "month", jurisdiction="los_angeles")) == [
        (date(2030, 1, 1), 10_000),
        (date(2030, 2, 1), 20_000),
    ]
    assert points(queries.revenue(ANALYST, start, end, "day", jurisdiction="san_francisco")) == [
        (date(2030, 2, 4), 10_000)
    ]
    la_partial = queries.revenue(
        ANALYST, date(2030, 1, 31), end, "month", jurisdiction="los_angeles"
    )
    assert [(p.period_start, p.gmv_cents) for p in la_partial.points] == [
        (date(2030, 1, 1), 0),
        (date(2030, 2, 1), 20_000),
    ]
    assert la_partial.jurisdiction == "los_angeles"
    # A datetime counts as its UTC day.
    late = datetime(2030, 1, 30, 20, 0, tzinfo=UTC)
    assert queries.revenue(ANALYST, late, late).gmv_cents == 10_000
    assert queries.revenue(ANALYST, end, end).platform_revenue_cents == 0


def test_rankings_by_revenue_bookings_and_hours(world: World) -> None:
    story = live_a_fortnight(world.market)
    world.catch_up()
    queries = world.queries

    def order(metric: str, limit: int = 10) -> list[tuple[UUID, float]]:
        ranked = queries.top_kitchens(ANALYST, metric, limit)
        assert [r.rank for r in ranked] == list(range(1, len(ranked) + 1))
        return [(r.kitchen_id, r.value) for r in ranked]

    idle_last = (story.idle_kitchen, 0.0)
    assert order("revenue") == [(story.sf_kitchen, 48_000), (story.la_kitchen, 35_000), idle_last]
    assert order("bookings") == [(story.la_kitchen, 8), (story.sf_kitchen, 2), idle_last]
    assert order("hours") == [(story.la_kitchen, 6.0), (story.sf_kitchen, 4.0), idle_last]
    assert order("revenue", limit=1) == [(story.sf_kitchen, 48_000)]
    for metric, limit in (("rating", 10), ("revenue", 0), ("revenue", 101)):
        with pytest.raises(InvalidRequest):
            queries.top_kitchens(ANALYST, metric, limit)


def test_revenue_and_rankings_by_jurisdiction(world: World) -> None:
    story = live_a_fortnight(world.market)
    world.catch_up()
    captures = [e for e in all_events(world.market) if isinstance(e, Account.HoldCaptured)]
    days = sorted({e.timestamp.astimezone(UTC).date() for e in captures})
    from_, to = days[0] - timedelta(days=40), days[-1] + timedelta(days=40)
    queries = world.queries
    for granularity in ("day", "week", "month"):
        every = queries.revenue(ANALYST, from_, to, granularity)
        la = queries.revenue(ANALYST, from_, to, granularity, jurisdiction="los_angeles")
        sf = queries.revenue(ANALYST, from_, to, granularity, jurisdiction="san_francisco")
        assert (la.gmv_cents, la.platform_revenue_cents) == (35_000, 3_500)
        assert (sf.gmv_cents, sf.platform_revenue_cents) == (48_000, 4_800)
        # Each city here is in one jurisdiction: the series of one equals the other's.
        assert la.points == queries.revenue(ANALYST, from_, to, granularity, "Los Angeles").points
        assert [a.gmv_cents + b.gmv_cents for a, b in zip(la.points, sf.points, strict=True)] == [
            p.gmv_cents for p in every.points
        ]
    both = queries.revenue(ANALYST, from_, to, "week", " san francisco ", " san_francisco ")
    assert both.gmv_cents == 48_000
    assert (both.city, both.jurisdiction) == ("san francisco", "san_francisco")  # as matched
    assert (
        queries.revenue(ANALYST, from_, to, "week", "Los Angeles", "san_francisco").gmv_cents == 0
    )
    assert queries.revenue(ANALYST, from_, to, "week", jurisdiction="nowhere").gmv_cents == 0

    def ranked(metric: str, **places: str) -> list[UUID]:
        return [r.kitchen_id for r in queries.top_kitchens(ANALYST, metric, 10, **places)]

    assert ranked("revenue", jurisdiction="los_angeles") == [story.la_kitchen, story.idle_kitchen]
    assert ranked("hours", city="SAN FRANCISCO") == [story.sf_kitchen]
    assert ranked("bookings", city="Los Angeles", jurisdiction="san_francisco") == []
    assert queries.cities(ANALYST) == ["Los Angeles", "San Francisco"]


def test_occupancy_by_kitchen_over_a_range(world: World) -> None:
    story = live_a_fortnight(world.market)
    world.catch_up()
    queries = world.queries

    def shares(from_: date, to: date, **filters: Any) -> list[tuple[UUID, int, float | None]]:
        page = queries.occupancy(ANALYST, from_, to, **filters)
        return [(item.kitchen_id, item.booked_minutes, item.occupancy) for item in page.items]

    # Completed: Los Angeles 2 h on Jan 8 and 4 h on Jan 9; San Francisco 4 h on Jan 8.
    jan_8, jan_9 = date(2030, 1, 8), date(2030, 1, 9)
    assert shares(jan_8, jan_9) == [
        (story.la_kitchen, 360, round(360 / (2 * LA_OPERATING_MINUTES), 4)),
        (story.sf_kitchen, 240, round(240 / (2 * 16 * 60), 4)),
        (story.idle_kitchen, 0, 0.0),
    ]
    # Over the kitchens' whole occupancy period, the same as their all-time statistics.
    for kitchen_id in (story.la_kitchen, story.sf_kitchen):
        stats = queries.kitchen_stats(ANALYST, kitchen_id)
        assert stats.occupancy_first_day is not None and stats.occupancy_last_day is not None
        [item] = [
            item
            for item in queries.occupancy(
                ANALYST, stats.occupancy_first_day, stats.occupancy_last_day
            ).items
            if item.kitchen_id == kitchen_id
        ]
        assert (item.occupancy, item.available_minutes, item.booked_minutes) == (
            stats.occupancy,
            stats.available_minutes,
            stats.booked_minutes,
        )
    assert shares(jan_9, jan_9)[0] == (story.la_kitchen, 240, round(240 / 1080, 4))
    assert shares(date(2030, 2, 1), date(2030, 2, 28))[0][1:] == (0, 0.0)
    assert [kitchen for kitchen, _, _ in shares(jan_8, jan_9, jurisdiction="san_francisco")] == [
        story.sf_kitchen
    ]
    assert [kitchen for kitchen, _, _ in shares(jan_8, jan_9, city="los angeles")] == [
        story.la_kitchen,
        story.idle_kitchen,
    ]
    second = queries.occupancy(ANALYST, jan_8, jan_9, page=PageRequest(limit=1, offset=1))
    assert ([item.kitchen_id for item in second.items], second.total) == ([story.sf_kitchen], 3)
    [la] = queries.occupancy(ANALYST, jan_8, jan_9, page=PageRequest(limit=1)).items
    assert (la.completed_bookings, la.booked_hours, la.city) == (2, 6.0, "Los Angeles")

    for from_, to in ((jan_9, jan_8), (jan_8, jan_8 + timedelta(days=3 * 365 + 2))):
        with pytest.raises(InvalidRequest) as refused:
            queries.occupancy(ANALYST, from_, to)
        assert refused.value.code == "invalid_range"
    with pytest.raises(PermissionDenied):
        queries.occupancy(Viewer(world.market.host.user_id, "host"), jan_8, jan_9)


def test_a_kitchen_in_a_jurisdiction_without_rules_has_no_occupancy(world: World) -> None:
    """A kitchen whose jurisdiction the packaged rules do not know (a deployment's own
    rules file) has no operating hours: its occupancy is unknown, listed last."""
    world.catch_up()
    database = world.read_side.write_database
    with database.reading() as sql:
        [active] = [g for g in generations(sql, "analytics") if g.active]
    projection = AnalyticsProjection(active.generation, database.dialect)
    known, unknown, host = uuid4(), uuid4(), uuid4()
    events: list[Any] = []
    for kitchen_id, jurisdiction in ((unknown, "atlantis"), (known, "los_angeles")):
        events.append(
            Kitchen.KitchenCreated(
                originator_id=kitchen_id,
                originator_version=1,
                originator_topic="Kitchen",
                timestamp=datetime(2030, 1, 1, tzinfo=UTC),
                host_id=host,
                name="A" if kitchen_id == unknown else "B",
                description="",
                city="Elsewhere",
                jurisdiction=jurisdiction,
                address="1 Main St",
                hourly_rate_cents=5000,
                capacity=10,
                amenities=[],
                instant_book=True,
            )
        )
        booking_id, start = uuid4(), datetime(2030, 1, 8, 17, tzinfo=UTC)
        events += [
            Booking.BookingRequested(
                originator_id=booking_id,
                originator_version=1,
                originator_topic="Booking",
                timestamp=start - DAY,
                kitchen_id=kitchen_id,
                host_id=host,
                customer_id=uuid4(),
                start_time=start,
                end_time=start + 2 * HOUR,
                guests=1,
                notes="",
                hourly_rate_cents=5000,
                price_cents=10_000,
                status="confirmed",
            ),
            Booking.BookingCompleted(
                originator_id=booking_id,
                originator_version=2,
                timestamp=start + 3 * HOUR,
                automatically=False,
            ),
        ]
    with database.transaction() as sql:
        for position, event in enumerate(events, start=1_000_000):
            projection.apply(event, position, sql)
        projection.after_batch(sql)

    page = world.queries.occupancy(ANALYST, date(2030, 1, 8), date(2030, 1, 8), city="elsewhere")
    assert [
        (i.kitchen_id, i.booked_minutes, i.available_minutes, i.occupancy) for i in page.items
    ] == [
        (known, 120, LA_OPERATING_MINUTES, round(120 / LA_OPERATING_MINUTES, 4)),
        (unknown, 120, None, None),
    ]


def test_who_may_see_analytics(world: World) -> None:
    story = live_a_fortnight(world.market)
    world.catch_up()
    queries = world.queries
    market = world.market
    admin = Viewer(market.admin.user_id, "admin")
    host = Viewer(market.host.user_id, "host")
    sf_host = Viewer(story.sf_host.user_id, "host")
    customer = Viewer(market.customer.user_id, "customer")
    today = date(2030, 1, 7)

    assert queries.kitchen_stats(host, story.la_kitchen).kitchen_id == story.la_kitchen
    assert queries.kitchen_stats(sf_host, story.sf_kitchen).kitchen_id == story.sf_kitchen
    assert queries.kitchen_stats(admin, story.sf_kitchen).kitchen_id == story.sf_kitchen
    with pytest.raises(PermissionDenied):
        queries.kitchen_stats(sf_host, story.la_kitchen)
    with pytest.raises(PermissionDenied):
        queries.kitchen_stats(customer, story.la_kitchen)
    for viewer in (ANALYST, host):
        with pytest.raises(NotFound):
            queries.kitchen_stats(viewer, uuid4())
    for viewer in (host, customer):
        with pytest.raises(PermissionDenied):
            queries.revenue(viewer, today, today)
        with pytest.raises(PermissionDenied):
            queries.revenue(viewer, today, today, jurisdiction="los_angeles")
        with pytest.raises(PermissionDenied):
            queries.top_kitchens(viewer)
        with pytest.raises(PermissionDenied):
            queries.cities(viewer)
    assert queries.revenue(admin, today, today).gmv_cents == 0
    assert queries.top_kitchens(admin, "bookings", 1)[0].kitchen_id == story.la_kitchen


def test_revenue_validates_its_range_and_granularity(world: World) -> None:
    world.catch_up()
    queries = world.queries
    start = date(2030, 1, 1)
    cases = [
        (start, start - timedelta(days=1), "day", "invalid_range"),
        (start, start + timedelta(days=3 * 365 + 2), "day", "invalid_range"),
        (start, start, "year", "invalid_granularity"),
    ]
    for from_, to, granularity, code in cases:
        with pytest.raises(InvalidRequest) as refused:
            queries.revenue(ANALYST, from_, to, granularity)
        assert refused.value.code == code
    longest = queries.revenue(ANALYST, start, start + timedelta(days=3 * 365 + 1), "month")
    assert len(longest.points) == 37
    with pytest.raises(InvalidRequest) as naive:
        queries.revenue(ANALYST, datetime(2030, 1, 1), datetime(2030, 1, 2))
    assert naive.value.code == "naive_datetime"


def test_a_rebuild_yields_identical_rows(world: World) -> None:
    live_a_fortnight(world.market)
    world.catch_up()
    before = world.dump()
    assert len(before["bookings"]) == 10 and len(before["kitchens"]) == 3
    request_rebuild(world.read_side.write_database, AnalyticsProjection)
    world.catch_up()
    with world.read_side.write_database.reading() as sql:
        [active] = [g for g in generations(sql, "analytics") if g.active]
    assert active.generation == 2
    assert rows(world.dump()) == rows(before)


def rows(dump: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
    """A dump's rows in an order of their own, to compare two generations'."""
    return {
        table: sorted((tuple(sorted(row.items())) for row in table_rows), key=repr)
        for table, table_rows in dump.items()
    }


class AnalyticsVersionOne(AnalyticsProjection):
    """The analytics as version 1 of the code built them: no index of the captures."""

    version: ClassVar[int] = 1

    def create_indexes(self, sql: Sql) -> None:
        pass


def index_names(world: World, table: str) -> set[str]:
    with world.read_side.write_database.reading() as sql:
        if sql.dialect == "postgresql":
            found = sql.fetchall(
                "SELECT indexname AS name FROM pg_indexes WHERE tablename = %s", (table,)
            )
        else:
            found = sql.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s", (table,)
            )
    return {str(row["name"]) for row in found}


def test_a_generation_of_version_one_is_rebuilt_with_the_captures_index(world: World) -> None:
    live_a_fortnight(world.market)
    database = world.read_side.write_database
    ensure_ready(database, AnalyticsVersionOne)
    ProjectionRunner(AnalyticsVersionOne, world.market.runtime.app, database).catch_up()
    before = world.dump()
    captured = sorted(
        as_date(row["captured_on"]) for row in before["bookings"] if row["captured_on"]
    )
    first, last = captured[0], captured[-1]
    la_revenue = world.queries.revenue(ANALYST, first, last, "week", jurisdiction="los_angeles")
    assert la_revenue.gmv_cents > 0
    assert "analytics_g1_bookings_captured_on" not in index_names(world, "analytics_g1_bookings")

    world.catch_up()  # today's code: a generation of its version, built, then switched to
    with database.reading() as sql:
        [active] = [g for g in generations(sql, "analytics") if g.active]
    assert (active.generation, active.version) == (2, AnalyticsProjection.version)
    assert "analytics_g2_bookings_captured_on" in index_names(world, "analytics_g2_bookings")
    assert rows(world.dump()) == rows(before)
    assert world.queries.revenue(ANALYST, first, last, "week", jurisdiction="los_angeles") == (
        la_revenue
    )


def test_csv_reads_back_with_a_csv_parser(world: World) -> None:
    story = live_a_fortnight(world.market)
    world.catch_up()
    queries = world.queries

    ranked = queries.top_kitchens(ANALYST, "bookings")
    parsed = list(csv.DictReader(io.StringIO(to_csv(ranked), newline="")))
    assert [row["kitchen_id"] for row in parsed] == [str(r.kitchen_id) for r in ranked]
    assert parsed[0]["name"] == 'Chef\'s "Best", Kitchen'
    assert [int(row["total_bookings"]) for row in parsed] == [8, 2, 0]

    stats = queries.kitchen_stats(ANALYST, story.idle_kitchen)
    [row] = list(csv.DictReader(io.StringIO(to_csv([stats]), newline="")))
    assert row["average_price_cents"] == "" and row["occupancy"] == ""
    assert list(row) == list(type(stats).model_fields)

    series = queries.revenue(ANALYST, date(2030, 1, 1), date(2030, 3, 31), "month")
    lines = list(csv.reader(io.StringIO(to_csv(series.points), newline="")))
    assert lines[0] == ["period_start", "gmv_cents", "platform_revenue_cents"]
    assert [line[0] for line in lines[1:]] == ["2030-01-01", "2030-02-01", "2030-03-01"]
    assert to_csv([]) == ""
