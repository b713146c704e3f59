"""The bookings read model and its queries, on both backends, fed by the real command
handlers: every status with its refund breakdown, reschedules, who sees what, pages,
and a rebuild that yields the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from commands.bookings import (
    BookingAction,
    CancelBooking,
    DeclineBooking,
    RequestBooking,
    RescheduleBooking,
)
from commands.context import Actor
from commands.payouts import RequestPayout, SetPayoutDestination
from prep_es.services.readside import ReadSide, open_read_side
from projections.accounts import AccountsProjection
from projections.base import Projection
from projections.bookings import BookingsProjection
from projections.generations import ensure_ready, request_rebuild
from projections.runners import ProjectionRunner
from queries.base import PageRequest, Viewer
from queries.bookings import BookingQueries
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    create_user,
    deliver_payment_notifications,
    open_test_runtime,
    publish_compliant_kitchen,
    store_settings,
)

READ_MODELS: tuple[type[Projection], ...] = (BookingsProjection, AccountsProjection)
PRICE_2H_CENTS = 10_000  # the default kitchen: 50.00 an hour
T0 = START_OF_TESTS


@dataclass
class World:
    """A marketplace and a read side on the same database."""

    market: Marketplace
    read_side: ReadSide

    def catch_up(self, *projections: type[Projection]) -> None:
        for projection in projections or READ_MODELS:
            ensure_ready(self.read_side.write_database, projection)
            ProjectionRunner(
                projection,
                self.market.runtime.app,
                self.read_side.write_database,
                batch_size=50,
            ).catch_up()

    def dump(self, projection: type[Projection]) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table of ``projection``, through its views."""
        with self.read_side.query_database.reading() as sql:
            return {
                table: sql.fetchall(f"SELECT * FROM {projection.view(table)} ORDER BY 1, 2, 3")
                for table in projection.tables
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
    """Bookings that ended every way there is, by name."""

    ids: dict[str, UUID]
    payout_cents: int


def live_every_ending(market: Marketplace) -> Story:
    """From ``T0``: bookings declined, cancelled by the host, cancelled by the customer
    at each fee tier, completed by the host and by the sweeper, expired, rescheduled
    (and then confirmed), and one left pending; then the host takes a payout."""
    commands = market.runtime.commands.bookings
    host, customer = as_actor(market.host), as_actor(market.customer)
    day, hour = timedelta(days=1), timedelta(hours=1)

    def request(start_offset: timedelta) -> UUID:
        return market.request_booking(T0 + start_offset).id

    ids = {
        "expired": request(day),  # 17:00–19:00 UTC, 09:00–11:00 in Los Angeles
        "completed": request(day + 3 * hour),
        "auto_completed": request(day - 3 * hour),
        "declined": request(2 * day),
        "host_cancelled": request(2 * day + 3 * hour),
        "half_fee": request(3 * day),
        "full_fee": request(3 * day + 3 * hour),
        "free_cancel": request(5 * day),
        "rescheduled": request(7 * day),
        "pending": request(20 * day),
    }
    for name in ("completed", "auto_completed"):
        commands.confirm_booking(BookingAction(booking_id=ids[name]), host)
    commands.decline_booking(DeclineBooking(booking_id=ids["declined"], reason="closed"), host)
    commands.cancel_booking(CancelBooking(booking_id=ids["host_cancelled"]), host)
    commands.cancel_booking(
        CancelBooking(booking_id=ids["free_cancel"], reason="plans changed"), customer
    )
    commands.reschedule_booking(
        RescheduleBooking(
            booking_id=ids["rescheduled"], start_time=T0 + 8 * day, end_time=T0 + 8 * day + 3 * hour
        ),
        customer,
    )
    commands.confirm_booking(BookingAction(booking_id=ids["rescheduled"]), host)

    market.clock.advance(36 * hour)  # "half_fee" starts in 36 h, "completed" has ended
    commands.cancel_booking(CancelBooking(booking_id=ids["half_fee"]), customer)
    commands.complete_booking(BookingAction(booking_id=ids["completed"]), host)

    market.clock.advance(24 * hour)  # "full_fee" starts in 15 h
    commands.cancel_booking(CancelBooking(booking_id=ids["full_fee"]), customer)
    report = market.runtime.commands.sweeper.sweep()
    assert report.expired_booking_ids == [ids["expired"]]
    assert report.completed_booking_ids == [ids["auto_completed"]]

    payout_cents = 12_345
    payouts = market.runtime.commands.payouts
    payouts.set_payout_destination(SetPayoutDestination(destination="bank-of-test"), host)
    payouts.request_payout(RequestPayout(amount_cents=payout_cents), host)
    deliver_payment_notifications(market.runtime)  # the sandbox paid it: posted
    return Story(ids=ids, payout_cents=payout_cents)


def viewer(actor: Actor) -> Viewer:
    return Viewer(user_id=actor.user_id, role=actor.role)


def test_every_status_lands_with_its_refund_breakdown(world: World) -> None:
    story = live_every_ending(world.market)
    world.catch_up(BookingsProjection)
    queries = BookingQueries(world.read_side.query_database)
    admin = viewer(world.market.admin)

    def seen(name: str) -> tuple[str, int, int, str | None, str | None, bool | None]:
        b = queries.get(admin, story.ids[name])
        return (
            b.status,
            b.captured_cents,
            b.released_cents,
            b.cancelled_by_role,
            b.reason,
            b.completed_automatically,
        )

    price = PRICE_2H_CENTS
    assert seen("pending") == ("pending", 0, 0, None, None, None)
    assert seen("rescheduled") == ("confirmed", 0, 0, None, None, None)
    assert seen("declined") == ("declined", 0, price, None, "closed", None)
    assert seen("host_cancelled") == ("cancelled", 0, price, "host", None, None)
    assert seen("free_cancel") == ("cancelled", 0, price, "customer", "plans changed", None)
    assert seen("half_fee") == ("cancelled", price // 2, price // 2, "customer", None, None)
    assert seen("full_fee") == ("cancelled", price, 0, "customer", None, None)
    assert seen("completed") == ("completed", price, 0, None, None, False)
    assert seen("auto_completed") == ("completed", price, 0, None, None, True)
    assert seen("expired") == ("expired", 0, price, None, None, None)

    # Every row equals the booking aggregate it came from.
    repository = world.market.runtime.app.repository
    for booking_id in story.ids.values():
        row = queries.get(admin, booking_id)
        booking: Any = repository.get(booking_id)
        assert (row.status, row.price_cents, row.start_time, row.end_time, row.version) == (
            booking.status,
            booking.price_cents,
            booking.start_time,
            booking.end_time,
            booking.version,
        )
        assert (row.captured_cents, row.released_cents) == (
            booking.captured_cents,
            booking.released_cents,
        )
        assert (row.kitchen_name, row.city, row.jurisdiction) == (
            "Test Kitchen",
            "Los Angeles",
            "los_angeles",
        )
        assert row.requested_at <= row.updated_at


def test_reschedule_moves_the_window_and_reprices_at_the_original_rate(world: World) -> None:
    market = world.market
    hour = timedelta(hours=1)
    booking = market.request_booking(T0 + timedelta(days=3), hours=2)
    world.catch_up(BookingsProjection)
    queries = BookingQueries(world.read_side.query_database)
    before = queries.get(viewer(market.customer), booking.id)
    assert (before.price_cents, before.hourly_rate_cents) == (PRICE_2H_CENTS, 5000)

    new_start = T0 + timedelta(days=4, hours=1)
    market.clock.advance(hour)
    market.runtime.commands.bookings.reschedule_booking(
        RescheduleBooking(
            booking_id=booking.id, start_time=new_start, end_time=new_start + 3 * hour
        ),
        as_actor(market.customer),
    )
    world.catch_up(BookingsProjection)
    after = queries.get(viewer(market.customer), booking.id)
    assert (after.start_time, after.end_time) == (new_start, new_start + 3 * hour)
    assert (after.price_cents, after.hourly_rate_cents, after.status) == (15_000, 5000, "pending")
    assert after.version == before.version + 1
    assert after.position > before.position
    assert after.updated_at > before.updated_at
    assert after.requested_at == before.requested_at


def test_who_sees_which_bookings(world: World) -> None:
    market = world.market
    runtime = market.runtime
    other_customer = market.add_customer("other@example.com", 1_000_000)
    other_host = create_user(runtime, "host", "other-host@example.com")
    analyst = create_user(runtime, "analyst", "analyst@example.com")
    other_kitchen_id = publish_compliant_kitchen(runtime, other_host, market.admin)

    mine = market.request_booking(T0 + timedelta(days=2))
    theirs = market.request_booking(T0 + timedelta(days=3), customer=other_customer)
    elsewhere = runtime.commands.bookings.request_booking(
        RequestBooking(
            kitchen_id=other_kitchen_id,
            start_time=T0 + timedelta(days=2),
            end_time=T0 + timedelta(days=2, hours=2),
            guests=2,
        ),
        as_actor(other_customer),
    ).result
    world.catch_up(BookingsProjection)
    queries = BookingQueries(world.read_side.query_database)

    def listed(actor: Actor, **filters: Any) -> list[UUID]:
        return [b.id for b in queries.list(viewer(actor), **filters).items]

    assert queries.get(viewer(market.customer), mine.id).customer_id == market.customer.user_id
    with pytest.raises(PermissionDenied):
        queries.get(viewer(other_customer), mine.id)
    assert listed(market.customer) == [mine.id]
    assert listed(other_customer) == [elsewhere.id, theirs.id]  # by start time

    assert listed(market.host) == [mine.id, theirs.id]
    assert queries.get(viewer(market.host), theirs.id).id == theirs.id
    with pytest.raises(PermissionDenied):
        queries.get(viewer(other_host), mine.id)
    assert listed(other_host) == [elsewhere.id]

    assert set(listed(market.admin)) == {mine.id, theirs.id, elsewhere.id}
    assert listed(market.admin, kitchen_id=other_kitchen_id) == [elsewhere.id]
    assert listed(other_customer, kitchen_id=market.kitchen_id) == [theirs.id]
    same_start = sorted([mine.id, elsewhere.id])  # ties go by id
    assert listed(market.admin, status="pending") == [*same_start, theirs.id]
    assert listed(market.admin, status="confirmed") == []

    with pytest.raises(PermissionDenied):
        queries.list(viewer(analyst))
    with pytest.raises(PermissionDenied):
        queries.get(viewer(analyst), mine.id)
    with pytest.raises(NotFound) as missing:
        queries.get(viewer(market.admin), uuid4())
    assert missing.value.code == "booking_not_found"
    with pytest.raises(NotFound):
        queries.get(viewer(market.customer), uuid4())
    with pytest.raises(InvalidRequest) as invalid:
        queries.list(viewer(market.admin), status="lost")
    assert invalid.value.code == "invalid_status"


def test_pages_have_totals_and_a_stable_order(world: World) -> None:
    market = world.market
    ids = [market.request_booking(T0 + timedelta(days=day)).id for day in (5, 2, 4, 1, 3)]
    world.catch_up(BookingsProjection)
    queries = BookingQueries(world.read_side.query_database)
    customer = viewer(market.customer)
    by_start = [ids[3], ids[1], ids[4], ids[2], ids[0]]

    pages = [queries.list(customer, page=PageRequest(limit=2, offset=o)) for o in (0, 2, 4, 6)]
    assert [[b.id for b in page.items] for page in pages] == [
        by_start[0:2],
        by_start[2:4],
        by_start[4:],
        [],
    ]
    assert [(page.total, page.limit, page.offset) for page in pages] == [
        (5, 2, 0),
        (5, 2, 2),
        (5, 2, 4),
        (5, 2, 6),
    ]
    host = viewer(market.host)
    assert queries.list(host, status="cancelled").total == 0
    assert queries.list(host, status="cancelled", page=PageRequest(offset=5)).total == 0


def test_a_rebuild_yields_the_same_rows_and_a_replay_changes_nothing(world: World) -> None:
    live_every_ending(world.market)
    world.catch_up()
    before = {projection.name: world.dump(projection) for projection in READ_MODELS}
    assert all(before[name][table] for name in before for table in before[name])

    # Applying every event again to the active generation changes nothing.
    app = world.market.runtime.app
    for projection_class in READ_MODELS:
        projection = projection_class(1, world.read_side.write_database.dialect)
        notifications = app.recorder.select_notifications(
            start=0, limit=10_000, topics=projection_class.topics()
        )
        with world.read_side.write_database.transaction() as sql:
            for notification in notifications:
                projection.apply(app.mapper.to_domain_event(notification), notification.id, sql)
        assert world.dump(projection_class) == before[projection_class.name]

    for projection_class in READ_MODELS:
        assert request_rebuild(world.read_side.write_database, projection_class) == 2
    world.catch_up()
    after = {projection.name: world.dump(projection) for projection in READ_MODELS}
    assert after == before
