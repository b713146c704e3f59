"""Audit queries over the audit projection, and admin time travel over the event
store, on both backends, fed by the real command handlers: filters, keyset pages with
no gaps and no repeats, secrets redacted, state at a version or a moment equal to the
replay, and who may ask."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from commands.bookings import BookingAction, CancelBooking, RescheduleBooking
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.store.personal_cipher import PersonalDataCipher
from prep_es.store.redaction import REDACTED
from prep_es.store.replay import aggregate_state, replay_aggregate, replay_with_previous
from projections.audit import AuditProjection
from projections.generations import ensure_ready
from projections.runners import ProjectionRunner
from queries.audit import AuditEntry, AuditQueries
from queries.base import PageRequest, Viewer
from queries.timetravel import TimeTravelQueries
from tests.support import (
    START_OF_TESTS,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    open_test_runtime,
    store_settings,
)

T0 = START_OF_TESTS
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@dataclass
class World:
    market: Marketplace
    read_side: ReadSide
    booking_id: UUID

    @property
    def admin(self) -> Viewer:
        return Viewer(self.market.admin.user_id, "admin")

    @property
    def audit(self) -> AuditQueries:
        return AuditQueries(
            self.read_side.query_database, PersonalDataCipher(self.market.runtime.app.data_keys)
        )

    @property
    def time_travel(self) -> TimeTravelQueries:
        return TimeTravelQueries(self.market.runtime.app)

    def all_entries(self, **filters: object) -> list[AuditEntry]:
        """Every matching entry, page by page (limit 7), checking each page's link."""
        entries: list[AuditEntry] = []
        after: int | None = None
        for _ in range(10_000):
            page = self.audit.entries(self.admin, after_position=after, limit=7, **filters)  # type: ignore[arg-type]
            assert len(page.items) <= 7
            entries += page.items
            if page.next_after_position is None:
                return entries
            assert len(page.items) == 7
            assert page.next_after_position == page.items[-1].position
            after = page.next_after_position
        raise AssertionError("paging did not end")


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    """A marketplace where one booking was requested, rescheduled, confirmed and
    cancelled by its customer (a 100 % fee), and another left pending."""
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    read_side = open_read_side(store_settings(database_url))
    market = build_marketplace(runtime, clock)
    commands = runtime.commands.bookings
    booking = market.request_booking(T0 + DAY)
    commands.reschedule_booking(
        RescheduleBooking(booking_id=booking.id, start_time=T0 + DAY, end_time=T0 + DAY + 3 * HOUR),
        as_actor(market.customer),
    )
    commands.confirm_booking(BookingAction(booking_id=booking.id), as_actor(market.host))
    clock.advance(12 * HOUR)
    commands.cancel_booking(
        CancelBooking(booking_id=booking.id, reason="sick"), as_actor(market.customer, "key-1")
    )
    market.request_booking(T0 + 2 * DAY)
    ensure_ready(read_side.write_database, AuditProjection)
    ProjectionRunner(AuditProjection, runtime.app, read_side.write_database).catch_up()
    yield World(market, read_side, booking.id)
    read_side.close()
    runtime.close()


def test_pages_cover_every_entry_once_oldest_first(world: World) -> None:
    head = world.market.runtime.app.position()
    entries = world.all_entries()
    assert [e.position for e in entries] == list(range(1, head + 1))

    short = world.audit.entries(world.admin, limit=min(head - 1, 100))
    assert short.next_after_position == short.items[-1].position
    last = world.audit.entries(world.admin, after_position=head - 3, limit=3)
    assert ([e.position for e in last.items], last.next_after_position) == (
        [head - 2, head - 1, head],
        None,
    )
    assert world.audit.entries(world.admin, after_position=head).items == []


def test_filters_by_aggregate_actor_type_and_time(world: World) -> None:
    market = world.market
    booking_entries = world.all_entries(aggregate_id=world.booking_id)
    assert [e.event_type for e in booking_entries] == [
        "Booking.BookingRequested",
        "Booking.BookingRescheduled",
        "Booking.BookingConfirmed",
        "Booking.BookingCancelled",
    ]
    assert [e.aggregate_version for e in booking_entries] == [1, 2, 3, 4]
    assert {e.aggregate_type for e in booking_entries} == {"Booking"}
    cancelled = booking_entries[-1]
    assert (cancelled.actor_id, cancelled.actor_role) == (market.customer.user_id, "customer")
    assert cancelled.payload["reason"] == "sick" and cancelled.payload["captured_cents"] == 15_000
    assert booking_entries[2].actor_id == market.host.user_id

    by_customer = world.all_entries(actor_id=market.customer.user_id)
    assert by_customer and {e.actor_id for e in by_customer} == {market.customer.user_id}
    requested = world.all_entries(event_type="Booking.BookingRequested")
    assert len(requested) == 2
    both = world.all_entries(actor_id=market.host.user_id, aggregate_id=world.booking_id)
    assert [e.event_type for e in both] == ["Booking.BookingConfirmed"]
    assert world.all_entries(event_type="Booking.NoSuchThing") == []

    everything = world.all_entries()
    middle = everything[len(everything) // 2].recorded_at
    since = world.all_entries(since=middle)
    until = world.all_entries(until=middle)
    assert all(e.recorded_at >= middle for e in since)
    assert all(e.recorded_at <= middle for e in until)
    assert {e.position for e in since} | {e.position for e in until} == {
        e.position for e in everything
    }
    one_moment = world.all_entries(since=middle, until=middle)
    assert one_moment and all(e.recorded_at == middle for e in one_moment)
    later = middle + timedelta(days=365)
    assert world.all_entries(since=later) == []


def test_secrets_are_redacted_in_the_trail_and_the_stream(world: World) -> None:
    created = world.all_entries(event_type="User.UserRegistered")
    assert created, "users were created"
    for entry in created:
        assert entry.payload["password_hash"] == REDACTED
    for entry in world.all_entries():
        assert "argon2" not in repr(entry.payload)

    admin_id = world.market.admin.user_id
    stream = world.time_travel.events(world.admin, admin_id, PageRequest()).items
    assert stream[0].payload["password_hash"] == REDACTED
    state = world.time_travel.state(world.admin, admin_id)
    assert "argon2" not in repr(state.state)


def test_audit_is_for_admins_and_checks_its_arguments(world: World) -> None:
    market = world.market
    for role, actor in (("customer", market.customer), ("host", market.host)):
        with pytest.raises(PermissionDenied):
            world.audit.entries(Viewer(actor.user_id, role))
    with pytest.raises(PermissionDenied):
        world.audit.entries(Viewer(uuid4(), "analyst"))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for arguments, code in (
        ({"limit": 0}, "invalid_limit"),
        ({"limit": 101}, "invalid_limit"),
        ({"after_position": -1}, "invalid_after_position"),
        ({"since": now, "until": now - timedelta(seconds=1)}, "invalid_range"),
        ({"since": datetime(2030, 1, 1)}, "naive_datetime"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            world.audit.entries(world.admin, **arguments)
        assert refused.value.code == code


def test_stream_matches_the_store_and_the_audit_trail(world: World) -> None:
    market = world.market
    page = world.time_travel.events(world.admin, world.booking_id, PageRequest())
    stream = page.items
    assert [e.version for e in stream] == [1, 2, 3, 4]
    assert (page.total, page.limit, page.offset) == (4, 20, 0)
    pages = [
        world.time_travel.events(world.admin, world.booking_id, PageRequest(limit=3, offset=n))
        for n in (0, 3, 4)
    ]
    assert [[e.version for e in p.items] for p in pages] == [[1, 2, 3], [4], []]
    assert {p.total for p in pages} == {4}
    assert [e for p in pages for e in p.items] == stream
    assert [e.type for e in stream][-1] == "Booking.BookingCancelled"
    assert [(e.actor_id, e.actor_role) for e in stream] == [
        (market.customer.user_id, "customer"),
        (market.customer.user_id, "customer"),
        (market.host.user_id, "host"),
        (market.customer.user_id, "customer"),
    ]
    trail = world.all_entries(aggregate_id=world.booking_id)
    assert [(e.type, e.payload, e.timestamp) for e in stream] == [
        (t.event_type, t.payload, t.recorded_at) for t in trail
    ]
    assert [(e.request_id, e.correlation_id) for e in stream] == [
        (t.request_id, t.correlation_id) for t in trail
    ]


def test_state_at_a_version_or_a_moment_equals_the_replay(world: World) -> None:
    app = world.market.runtime.app
    travel = world.time_travel
    stream = travel.events(world.admin, world.booking_id, PageRequest()).items

    for version in range(1, 5):
        state = travel.state(world.admin, world.booking_id, version=version)
        replay = replay_aggregate(app, world.booking_id, version=version)
        assert (state.version, state.latest_version, state.state) == (version, 4, replay.state)
    assert travel.state(world.admin, world.booking_id, version=1).state["status"] == "pending"
    assert travel.state(world.admin, world.booking_id, version=3).state["status"] == "confirmed"
    latest = travel.state(world.admin, world.booking_id)
    assert (latest.version, latest.state["status"], latest.aggregate_type) == (
        4,
        "cancelled",
        "Booking",
    )

    moment = stream[1].timestamp
    as_of = travel.state(world.admin, world.booking_id, as_of=moment)
    replay = replay_aggregate(app, world.booking_id, as_of=moment)
    assert (as_of.version, as_of.as_of, as_of.state) == (2, moment, replay.state)
    assert as_of.state["end_time"] == (T0 + DAY + 3 * HOUR).isoformat().replace("+00:00", "Z")
    with pytest.raises(NotFound):
        travel.state(world.admin, world.booking_id, as_of=stream[0].timestamp - HOUR)


def test_time_travel_errors_and_access(world: World) -> None:
    travel = world.time_travel
    admin = world.admin
    with pytest.raises(NotFound):
        travel.events(admin, uuid4(), PageRequest())
    with pytest.raises(NotFound):
        travel.state(admin, uuid4())
    for version in (0, 5):
        with pytest.raises(InvalidRequest) as refused:
            travel.state(admin, world.booking_id, version=version)
        assert refused.value.code == "version_out_of_range"
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidRequest) as both:
        travel.state(admin, world.booking_id, version=1, as_of=moment)
    assert both.value.code == "version_and_as_of"
    with pytest.raises(InvalidRequest) as naive:
        travel.state(admin, world.booking_id, as_of=datetime(2030, 1, 1))
    assert naive.value.code == "naive_datetime"
    customer = Viewer(world.market.customer.user_id, "customer")
    for viewer in (customer, Viewer(uuid4(), "analyst")):
        with pytest.raises(PermissionDenied):
            travel.events(viewer, world.booking_id, PageRequest())
        with pytest.raises(PermissionDenied):
            travel.state(viewer, world.booking_id)


def test_a_replay_and_the_one_before_it_equal_what_the_repository_loads(world: World) -> None:
    app = world.market.runtime.app
    for version in range(1, 5):
        replay, previous = replay_with_previous(app, world.booking_id, version=version)
        loaded = app.repository.get(world.booking_id, version=version)
        assert replay.state == aggregate_state(loaded)
        assert [event.version for event in replay.events] == list(range(1, version + 1))
        if version == 1:
            assert previous is None
            continue
        assert previous is not None
        before = app.repository.get(world.booking_id, version=version - 1)
        assert (previous.version, previous.state) == (version - 1, aggregate_state(before))
        assert [event.version for event in previous.events] == list(range(1, version))
