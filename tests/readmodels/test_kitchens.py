"""Kitchen search, detail and moderation over the ``kitchens`` read model, on both
backends: one marketplace built through the command handlers, projected, and searched;
every search answer is compared with a brute-force filter over the aggregates."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates.booking import ACTIVE_STATUSES, Booking
from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from aggregates.jurisdictions import JurisdictionCatalog
from aggregates.kitchen import Kitchen
from commands.bookings import (
    BookingAction,
    CancelBooking,
    DeclineBooking,
    RequestBooking,
    RescheduleBooking,
)
from commands.context import Actor
from commands.kitchens import (
    AttachCertificate,
    CertificateAction,
    CreateKitchen,
    KitchenAction,
    KitchenActionWithReason,
    UpdateKitchen,
)
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.services.runtime import Runtime
from projections.compliance import ComplianceProjection
from projections.database import ReadDatabase, Sql
from projections.generations import ensure_ready, request_rebuild
from projections.kitchens import KitchensProjection, floor_minute
from projections.runners import ProjectionRunner
from queries.base import PageRequest, Viewer
from queries.compliance import ComplianceQueries
from queries.kitchen_index import load_search_index
from queries.kitchens import KitchenFilters, KitchenQueries, KitchenSummary
from tests.support import (
    DOCUMENT_SHA256,
    MutableClock,
    as_actor,
    create_user,
    listing_matches,
    open_test_runtime,
    publish_compliant_kitchen,
    search_filters,
    store_settings,
    top_up,
)

FAR_EXPIRY = date(2031, 12, 31)
QUERY_NOW = datetime(2030, 1, 23, 17, 0, tzinfo=UTC)


@dataclass(frozen=True)
class KitchenSpec:
    name: str
    jurisdiction: str = "los_angeles"
    city: str = "Los Angeles"
    hourly_rate_cents: int = 5000
    capacity: int = 10
    amenities: tuple[str, ...] = ("oven",)
    description: str = "A commercial kitchen"
    instant_book: bool = False
    status: str = "published"
    expiries: dict[str, tuple[date, ...]] = field(default_factory=dict)
    """Verified certificates per kind (default: one, far in the future)."""
    missing: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()


SPECS = (
    KitchenSpec(
        "Sunset Bakery",
        amenities=("Oven", "walk-in fridge", "proofing cabinet"),
        description="Convection ovens for artisan bread",
        instant_book=True,
    ),
    KitchenSpec(
        "Echo Park Commissary",
        city="los angeles",
        hourly_rate_cents=8000,
        capacity=20,
        amenities=("oven", "dishwasher"),
        description="Large prep space with a hood",
    ),
    KitchenSpec(
        "Mission Smokehouse",
        jurisdiction="san_francisco",
        city="San Francisco",
        hourly_rate_cents=6000,
        capacity=5,
        amenities=("smoker", "oven"),
        description="Barbecue smokers and a blast chiller",
    ),
    KitchenSpec(
        "Short Permit Kitchen",
        hourly_rate_cents=4000,
        capacity=8,
        expiries={
            kind: (date(2030, 2, 10),)
            for kind in ("health_permit", "business_license", "fire_inspection")
        },
    ),
    KitchenSpec("Missing Insurance Kitchen", missing=("liability_insurance",)),
    KitchenSpec("Suspended Kitchen", status="suspended"),
    KitchenSpec("Draft Kitchen", status="draft"),
    KitchenSpec("Pending Kitchen", status="pending_review"),
    KitchenSpec("Rejected Kitchen", status="rejected"),
    KitchenSpec(
        "Rejected Cert Kitchen",
        jurisdiction="san_francisco",
        city="San Francisco",
        rejected=("food_handler",),
    ),
    KitchenSpec("Lapsing Kitchen", expiries={"health_permit": (date(2030, 1, 20),)}),
    KitchenSpec(
        "pasadena pastry",
        city="Pasadena",
        hourly_rate_cents=3000,
        capacity=50,
        amenities=("oven", "mixer"),
        expiries={"health_permit": (date(2030, 2, 20), FAR_EXPIRY)},
    ),
    KitchenSpec(
        "Oakland Kitchen",
        jurisdiction="san_francisco",
        city="Oakland",
        hourly_rate_cents=9000,
        capacity=15,
        amenities=(),
        expiries={"health_permit": (date(2030, 2, 5),)},
    ),
)


@dataclass
class World:
    runtime: Runtime
    read_side: ReadSide
    clock: MutableClock
    admin: Actor
    hosts: list[Actor]
    customer: Actor
    kitchen_ids: dict[str, UUID]
    booking_ids: list[UUID]
    changes: set[str] = field(default_factory=set)
    """Query-cache dependencies the runner reported changed."""

    @property
    def admin_viewer(self) -> Viewer:
        return Viewer(self.admin.user_id, "admin")

    @property
    def database(self) -> ReadDatabase:
        return self.read_side.query_database

    def queries(self, now: datetime = QUERY_NOW) -> KitchenQueries:
        return KitchenQueries(
            self.database, jurisdictions=self.runtime.jurisdictions, clock=lambda: now
        )

    def host_of(self, name: str) -> Actor:
        return self.hosts[[s.name for s in SPECS].index(name) % len(self.hosts)]

    def catch_up(self) -> None:
        ensure_ready(self.read_side.write_database, KitchensProjection)
        ProjectionRunner(
            KitchensProjection,
            self.runtime.app,
            self.read_side.write_database,
            batch_size=50,
            on_changes=lambda changed, _: self.changes.update(changed),
        ).catch_up()

    def kitchens(self) -> list[Kitchen]:
        return [self.runtime.app.repository.get(i) for i in self.kitchen_ids.values()]

    def bookings(self) -> list[Booking]:
        return [self.runtime.app.repository.get(i) for i in self.booking_ids]


def make_kitchen(runtime: Runtime, host: Actor, admin: Actor, spec: KitchenSpec) -> UUID:
    kitchens = runtime.commands.kitchens
    kitchen_id = kitchens.create_kitchen(
        CreateKitchen(
            name=spec.name,
            description=spec.description,
            city=spec.city,
            jurisdiction=spec.jurisdiction,
            address="1 Main St",
            hourly_rate_cents=spec.hourly_rate_cents,
            capacity=spec.capacity,
            amenities=list(spec.amenities),
            instant_book=spec.instant_book,
        ),
        as_actor(host),
    ).result.id
    for kind in sorted(runtime.jurisdictions.get(spec.jurisdiction).required_certificates):
        if kind in spec.missing:
            continue
        for expires_on in spec.expiries.get(kind, (FAR_EXPIRY,)):
            certificate_id = kitchens.attach_certificate(
                AttachCertificate(
                    kitchen_id=kitchen_id,
                    kind=kind,
                    number=f"{kind}-{expires_on}",
                    issued_on=date(2029, 1, 1),
                    expires_on=expires_on,
                    document_sha256=DOCUMENT_SHA256,
                ),
                as_actor(host),
            ).result.id
            review = CertificateAction(
                kitchen_id=kitchen_id, certificate_id=certificate_id, reason="illegible scan"
            )
            if kind in spec.rejected:
                kitchens.reject_certificate(review, as_actor(admin))
            else:
                kitchens.verify_certificate(review, as_actor(admin))
    action = KitchenAction(kitchen_id=kitchen_id)
    with_reason = KitchenActionWithReason(kitchen_id=kitchen_id, reason="Not up to code")
    if spec.status != "draft":
        kitchens.submit_kitchen(action, as_actor(host))
    if spec.status in ("published", "suspended"):
        kitchens.approve_kitchen(action, as_actor(admin))
    if spec.status == "suspended":
        kitchens.suspend_kitchen(with_reason, as_actor(admin))
    if spec.status == "rejected":
        kitchens.reject_kitchen(with_reason, as_actor(admin))
    return kitchen_id


def at(day: int, hour: int, minute: int = 0, month: int = 2) -> datetime:
    return datetime(2030, month, day, hour, minute, tzinfo=UTC)


def build_world(url: str) -> World:
    clock = MutableClock()
    runtime = open_test_runtime(url, clock)
    admin = create_user(runtime, "admin", "admin@example.com")
    hosts = [create_user(runtime, "host", f"host{n}@example.com") for n in range(2)]
    customer = create_user(runtime, "customer", "customer@example.com")
    top_up(runtime, customer, 10_000_000)
    kitchen_ids = {
        spec.name: make_kitchen(runtime, hosts[n % len(hosts)], admin, spec)
        for n, spec in enumerate(SPECS)
    }
    kitchens = runtime.commands.kitchens
    kitchens.update_kitchen(
        UpdateKitchen(
            kitchen_id=kitchen_ids["Echo Park Commissary"],
            hourly_rate_cents=7500,
            amenities=["oven", "dishwasher", "Blast Chiller"],
        ),
        as_actor(hosts[1]),
    )
    bookings = runtime.commands.bookings

    def book(name: str, start: datetime, hours: int) -> UUID:
        return bookings.request_booking(
            RequestBooking(
                kitchen_id=kitchen_ids[name],
                start_time=start,
                end_time=start + timedelta(hours=hours),
                guests=2,
            ),
            as_actor(customer),
        ).result.id

    booking_ids = [
        book("Sunset Bakery", at(4, 17), 2),  # instant: confirmed
        book("Echo Park Commissary", at(4, 18), 3),  # pending
        cancelled := book("Echo Park Commissary", at(5, 17), 2),
        declined := book("Mission Smokehouse", at(4, 17), 3),
        moved := book("Mission Smokehouse", at(6, 17), 2),
        completed := book("pasadena pastry", at(21, 17, month=1), 1),
        expired := book("pasadena pastry", at(22, 17, month=1), 2),
        book("Short Permit Kitchen", at(4, 20, 15), 2),
        book("Oakland Kitchen", at(4, 16), 4),
    ]
    bookings.cancel_booking(CancelBooking(booking_id=cancelled), as_actor(customer))
    host = hosts[0]
    bookings.decline_booking(DeclineBooking(booking_id=declined), as_actor(host))
    bookings.reschedule_booking(
        RescheduleBooking(booking_id=moved, start_time=at(4, 20), end_time=at(4, 22)),
        as_actor(customer),
    )
    bookings.confirm_booking(BookingAction(booking_id=completed), as_actor(hosts[1]))
    clock.now = QUERY_NOW
    report = runtime.commands.sweeper.sweep()
    assert report.completed_booking_ids == [completed]
    assert report.expired_booking_ids == [expired]
    assert len(report.lapsed_certificate_ids) == 1
    read_side = open_read_side(store_settings(url))
    world = World(
        runtime=runtime,
        read_side=read_side,
        clock=clock,
        admin=admin,
        hosts=hosts,
        customer=customer,
        kitchen_ids=kitchen_ids,
        booking_ids=booking_ids,
    )
    world.catch_up()
    return world


@pytest.fixture(scope="module")
def world(module_database_url: str) -> Iterator[World]:
    built = build_world(module_database_url)
    yield built
    built.read_side.close()
    built.runtime.close()


# --- the brute force ---------------------------------------------------------------


def brute_force(world: World, filters: KitchenFilters, now: datetime) -> list[UUID]:
    """The bookable kitchens matching ``filters`` (all but ``q``), in the asked order,
    straight from the aggregates."""
    catalog = world.runtime.jurisdictions
    window = filters.window
    active = [b for b in world.bookings() if b.status in ACTIVE_STATUSES]
    creation_order = list(world.kitchen_ids.values())
    matches: list[Kitchen] = []
    for kitchen in world.kitchens():
        rules = catalog.get(kitchen.jurisdiction)
        if kitchen.status != "published":
            continue
        if filters.jurisdiction is not None and kitchen.jurisdiction != filters.jurisdiction:
            continue
        if window is None:
            if kitchen.compliance_problem(rules, now) is not None:
                continue
        else:
            start, end = window
            if not rules.is_within_operating_hours(start, end):
                continue
            if kitchen.compliance_problem(rules, end) is not None:
                continue
            if any(
                b.kitchen_id == kitchen.id and b.start_time < end and start < b.end_time
                for b in active
            ):
                continue
        if not listing_matches(
            filters,
            city=kitchen.city,
            rate_cents=kitchen.hourly_rate_cents,
            capacity=kitchen.capacity,
            amenities=kitchen.amenities,
        ):
            continue
        matches.append(kitchen)

    def by_name(k: Kitchen) -> tuple[str, str]:
        return k.name.casefold(), str(k.id)

    if filters.sort == "name":
        matches.sort(key=by_name)
    elif filters.sort == "rate_asc":
        matches.sort(key=lambda k: (k.hourly_rate_cents, *by_name(k)))
    elif filters.sort == "rate_desc":
        matches.sort(key=lambda k: (-k.hourly_rate_cents, *by_name(k)))
    else:
        matches.sort(key=lambda k: creation_order.index(k.id), reverse=True)
    return [k.id for k in matches]


def search_ids(
    world: World, filters: KitchenFilters, now: datetime = QUERY_NOW, **page: int
) -> tuple[list[UUID], int]:
    """What the SQL search finds; on PostgreSQL, checked equal to what the in-memory
    search index (``queries.kitchen_index``) built from the same read model finds."""
    result = world.queries(now).search(filters, PageRequest(**page) if page else None)
    found = [k.id for k in result.items], result.total
    if world.database.dialect == "postgresql" and not filters.words():
        index = load_search_index(world.database, lambda kitchen: str(kitchen.id).encode())
        indexed = index.search(filters, PageRequest(**page), world.runtime.jurisdictions, now)
        assert indexed is not None
        documents, total = indexed
        assert ([UUID(d.decode()) for d in documents], total) == found, filters
    return found


def assert_matches_brute_force(
    world: World, filters: KitchenFilters, now: datetime = QUERY_NOW
) -> list[UUID]:
    expected = brute_force(world, filters, now)
    ids, total = search_ids(world, filters, now, limit=100)
    assert (ids, total) == (expected, len(expected)), filters
    return ids


# --- search --------------------------------------------------------------------------


def names(world: World, ids: list[UUID]) -> list[str]:
    by_id = {v: k for k, v in world.kitchen_ids.items()}
    return [by_id[i] for i in ids]


def test_without_a_window_search_lists_published_kitchens_compliant_now(world: World) -> None:
    ids = assert_matches_brute_force(world, KitchenFilters())
    assert names(world, ids) == [
        "Echo Park Commissary",
        "Mission Smokehouse",
        "Oakland Kitchen",
        "pasadena pastry",
        "Short Permit Kitchen",
        "Sunset Bakery",
    ]
    first = world.queries().search(KitchenFilters(), PageRequest(limit=1)).items[0]
    assert first == KitchenSummary(
        id=world.kitchen_ids["Echo Park Commissary"],
        host_id=world.hosts[1].user_id,
        name="Echo Park Commissary",
        city="los angeles",
        jurisdiction="los_angeles",
        hourly_rate_cents=7500,
        capacity=20,
        amenities=["blast chiller", "dishwasher", "oven"],
        instant_book=False,
        status="published",
        status_reason=None,
        compliant_through=FAR_EXPIRY,
        created_at=first.created_at,
    )


@pytest.mark.parametrize(
    "filters",
    [
        KitchenFilters(city="LOS ANGELES"),
        KitchenFilters(city=" pasadena "),
        KitchenFilters(city="Nowhere"),
        KitchenFilters(jurisdiction="san_francisco"),
        KitchenFilters(min_rate_cents=5000, max_rate_cents=7500),
        KitchenFilters(max_rate_cents=3000),
        KitchenFilters(capacity=15),
        KitchenFilters(amenities=("OVEN ", "Dishwasher")),
        KitchenFilters(amenities=("smoker",)),
        KitchenFilters(amenities=("oven", "nope")),
        KitchenFilters(sort="rate_asc"),
        KitchenFilters(sort="rate_desc", jurisdiction="los_angeles"),
        KitchenFilters(sort="newest"),
        KitchenFilters(available_from=at(4, 17), available_to=at(4, 19)),
        KitchenFilters(available_from=at(4, 19), available_to=at(4, 20)),  # adjacent
        KitchenFilters(available_from=at(4, 16), available_to=at(4, 17)),  # adjacent
        KitchenFilters(available_from=at(4, 18, 45), available_to=at(4, 19, 15)),
        KitchenFilters(available_from=at(5, 17), available_to=at(5, 19)),  # cancelled slot
        KitchenFilters(available_from=at(6, 17), available_to=at(6, 19)),  # moved away
        KitchenFilters(available_from=at(4, 21), available_to=at(4, 22)),  # moved here
        KitchenFilters(available_from=at(11, 17), available_to=at(11, 19)),  # after expiry
        KitchenFilters(available_from=at(4, 13, 30), available_to=at(4, 14, 30)),  # LA only
        KitchenFilters(available_from=at(4, 12), available_to=at(4, 14)),  # before hours
        KitchenFilters(
            available_from=at(21, 17, month=1), available_to=at(21, 18, month=1)
        ),  # completed booking's slot, before the lapse date: bookable then
        KitchenFilters(
            available_from=datetime.fromisoformat("2030-02-04T09:00:00-08:00"),
            available_to=datetime.fromisoformat("2030-02-04T11:00:00-08:00"),
        ),
    ],
    ids=lambda filters: repr(filters)[15:90],
)
def test_search_equals_the_brute_force(world: World, filters: KitchenFilters) -> None:
    assert_matches_brute_force(world, filters)


def test_compliance_today_is_the_jurisdictions_day(world: World) -> None:
    """Oakland's health permit expires on 2030-02-05: valid through midnight in
    Los Angeles time (08:00 UTC), not a microsecond more."""
    midnight = datetime(2030, 2, 6, 8, 0, tzinfo=UTC)
    oakland = world.kitchen_ids["Oakland Kitchen"]
    assert oakland in assert_matches_brute_force(world, KitchenFilters(), midnight)
    after = midnight + timedelta(microseconds=1)
    assert oakland not in assert_matches_brute_force(world, KitchenFilters(), after)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("smokehouse", ["Mission Smokehouse"]),
        ("SMOKERS", ["Mission Smokehouse"]),
        ("chiller", ["Echo Park Commissary", "Mission Smokehouse"]),
        ("artisan bread", ["Sunset Bakery"]),
        ("artisan smoker", []),
        ("pasadena", ["pasadena pastry"]),
        ("walk-in", ["Sunset Bakery"]),
        ("proofing", ["Sunset Bakery"]),
        (
            "ovens",
            [
                "Echo Park Commissary",
                "Mission Smokehouse",
                "pasadena pastry",
                "Short Permit Kitchen",
                "Sunset Bakery",
            ],
        ),
        ("suspended", []),
        ("'; DROP TABLE kitchens; --", []),
        ('"smoker" -oven*', ["Mission Smokehouse"]),
        (
            "  ",
            [
                "Echo Park Commissary",
                "Mission Smokehouse",
                "Oakland Kitchen",
                "pasadena pastry",
                "Short Permit Kitchen",
                "Sunset Bakery",
            ],
        ),
    ],
)
def test_full_text_search_on_name_description_city_and_amenities(
    world: World, q: str, expected: list[str]
) -> None:
    ids, total = search_ids(world, KitchenFilters(q=q))
    assert names(world, ids) == expected
    assert total == len(expected)


def test_full_text_combines_with_other_filters(world: World) -> None:
    filters = KitchenFilters(
        q="oven", city="los angeles", available_from=at(4, 17), available_to=at(4, 19)
    )
    ids, _ = search_ids(world, filters)
    assert names(world, ids) == ["Short Permit Kitchen"]


def test_pages_and_totals(world: World) -> None:
    everything = brute_force(world, KitchenFilters(sort="rate_asc"), QUERY_NOW)
    seen: list[UUID] = []
    for offset in range(0, len(everything) + 2, 2):
        ids, total = search_ids(world, KitchenFilters(sort="rate_asc"), limit=2, offset=offset)
        assert total == len(everything)
        seen += ids
    assert seen == everything


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"available_from": at(4, 17)}, "invalid_window"),
        ({"available_to": at(4, 17)}, "invalid_window"),
        ({"available_from": at(4, 17), "available_to": at(4, 17)}, "invalid_window"),
        (
            {"available_from": datetime(2030, 2, 4, 17), "available_to": datetime(2030, 2, 4, 18)},
            "invalid_window",
        ),
        ({"sort": "cheapest"}, "invalid_sort"),
        ({"min_rate_cents": 500, "max_rate_cents": 400}, "invalid_rate_range"),
        ({"min_rate_cents": -1}, "invalid_rate_range"),
        ({"capacity": 0}, "invalid_capacity"),
        ({"q": "x" * 201}, "invalid_query"),
        ({"amenities": ("a",) * 51}, "invalid_amenities"),
    ],
)
def test_invalid_filters_are_refused(arguments: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        KitchenFilters(**arguments)
    assert raised.value.code == code


def test_an_unknown_jurisdiction_is_refused(world: World) -> None:
    with pytest.raises(InvalidRequest) as raised:
        world.queries().search(KitchenFilters(jurisdiction="atlantis"))
    assert raised.value.code == "unknown_jurisdiction"


WINDOW_STARTS = [at(4, hour, minute) for hour in (12, 13, 16, 17, 18, 20, 21) for minute in (0, 45)]
WINDOW_STARTS += [at(5, 17), at(6, 17), at(11, 18), at(21, 17, month=1), at(5, 5)]


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    filters=search_filters(
        city=st.sampled_from([None, "los angeles", "SAN FRANCISCO", "Pasadena", "Oakland"]),
        jurisdiction=st.sampled_from([None, "los_angeles", "san_francisco"]),
        min_rate=st.sampled_from([None, 3000, 5000, 6000]),
        max_rate=st.sampled_from([None, 4000, 7500, 9000]),
        capacity=st.sampled_from([None, 1, 8, 20]),
        amenities=st.lists(st.sampled_from(["oven", "smoker", "Mixer", "dishwasher"]), max_size=2),
        start=st.one_of(st.none(), st.sampled_from(WINDOW_STARTS)),
        minutes=st.sampled_from([15, 60, 120, 180, 600]),
    ),
    now=st.sampled_from([QUERY_NOW, datetime(2030, 2, 15, 12, tzinfo=UTC)]),
)
def test_search_equals_the_brute_force_for_any_filters(
    world: World, filters: KitchenFilters, now: datetime
) -> None:
    assert_matches_brute_force(world, filters, now)


# --- one kitchen -------------------------------------------------------------------


def test_published_kitchens_are_public_with_their_compliance(world: World) -> None:
    detail = world.queries().get(None, world.kitchen_ids["Sunset Bakery"])
    assert detail.description == "Convection ovens for artisan bread"
    assert detail.amenities == ["oven", "proofing cabinet", "walk-in fridge"]
    assert detail.compliance.compliant
    assert detail.compliance.compliant_through == FAR_EXPIRY
    assert detail.compliance.required_kinds == [
        "business_license",
        "fire_inspection",
        "health_permit",
        "liability_insurance",
    ]
    assert [c.kind for c in detail.compliance.certificates] == detail.compliance.required_kinds
    assert {c.status for c in detail.compliance.certificates} == {"verified"}


@pytest.mark.parametrize(
    ("name", "missing", "expired", "compliant_through"),
    [
        ("Missing Insurance Kitchen", ["liability_insurance"], [], None),
        ("Rejected Cert Kitchen", ["food_handler"], [], None),
        ("Lapsing Kitchen", [], ["health_permit"], None),
        ("Short Permit Kitchen", [], [], date(2030, 2, 10)),
        ("pasadena pastry", [], [], FAR_EXPIRY),
    ],
)
def test_compliance_names_missing_and_expired_kinds(
    world: World,
    name: str,
    missing: list[str],
    expired: list[str],
    compliant_through: date | None,
) -> None:
    compliance = world.queries().get(world.admin_viewer, world.kitchen_ids[name]).compliance
    assert (compliance.missing_kinds, compliance.expired_kinds) == (missing, expired)
    assert compliance.compliant == (not missing and not expired)
    assert compliance.compliant_through == compliant_through


def test_compliance_expires_with_the_clock(world: World) -> None:
    later = world.queries(datetime(2030, 2, 11, 8, 0, 1, tzinfo=UTC))
    compliance = later.get(None, world.kitchen_ids["Short Permit Kitchen"]).compliance
    assert not compliance.compliant
    assert compliance.expired_kinds == ["business_license", "fire_inspection", "health_permit"]


@pytest.mark.parametrize(
    "name", ["Draft Kitchen", "Pending Kitchen", "Rejected Kitchen", "Suspended Kitchen"]
)
def test_unpublished_kitchens_are_visible_to_their_host_and_admins_only(
    world: World, name: str
) -> None:
    queries = world.queries()
    kitchen_id = world.kitchen_ids[name]
    host = world.host_of(name)
    other_host = next(h for h in world.hosts if h != host)
    for viewer in (
        None,
        Viewer(other_host.user_id, "host"),
        Viewer(world.customer.user_id, "customer"),
        Viewer(uuid4(), "analyst"),
    ):
        with pytest.raises(NotFound) as raised:
            queries.get(viewer, kitchen_id)
        assert raised.value.code == "kitchen_not_found"
    as_host = queries.get(Viewer(host.user_id, "host"), kitchen_id)
    as_admin = queries.get(world.admin_viewer, kitchen_id)
    assert as_host == as_admin
    assert as_host.status == SPECS[[s.name for s in SPECS].index(name)].status
    if name in ("Rejected Kitchen", "Suspended Kitchen"):
        assert as_host.status_reason == "Not up to code"


def test_an_unknown_kitchen_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        world.queries().get(world.admin_viewer, uuid4())


# --- moderation ----------------------------------------------------------------------


def test_moderation_lists_kitchens_by_status_for_admins(world: World) -> None:
    queries = world.queries()
    everything = queries.moderation(world.admin_viewer, page=PageRequest(limit=100))
    assert everything.total == len(SPECS)
    by_id = {k.id: k for k in world.kitchens()}
    for summary in everything.items:
        kitchen = by_id[summary.id]
        assert summary.status == kitchen.status
        assert summary.hourly_rate_cents == kitchen.hourly_rate_cents
        assert summary.compliant_through == expected_compliant_through(world, kitchen)
    pending = queries.moderation(world.admin_viewer, status="pending_review")
    assert [k.name for k in pending.items] == ["Pending Kitchen"]
    assert pending.total == 1
    published = queries.moderation(world.admin_viewer, status="published", page=PageRequest(2, 1))
    assert (published.total, len(published.items)) == (9, 2)


def expected_compliant_through(world: World, kitchen: Kitchen) -> date | None:
    required = world.runtime.jurisdictions.get(kitchen.jurisdiction).required_certificates
    latest: dict[str, date] = {}
    for certificate in kitchen.certificates.values():
        if certificate.status == "verified":
            latest[certificate.kind] = max(
                latest.get(certificate.kind, certificate.expires_on), certificate.expires_on
            )
    if not required <= latest.keys():
        return None
    return min(latest[kind] for kind in required)


def test_moderation_is_for_admins(world: World) -> None:
    for role in ("host", "customer", "analyst"):
        with pytest.raises(PermissionDenied):
            world.queries().moderation(Viewer(world.hosts[0].user_id, role))
    with pytest.raises(InvalidRequest) as raised:
        world.queries().moderation(world.admin_viewer, status="archived")
    assert raised.value.code == "invalid_status"


def test_moderation_lists_published_kitchens_edited_since_approval(world: World) -> None:
    """Echo Park Commissary's rate and amenities were edited after its approval: it
    stays published, and the queue shows what changed."""
    queries = world.queries()
    changed = queries.moderation(
        world.admin_viewer, status="published", changed_since_approval=True
    )
    assert [(k.name, k.changed_since_approval) for k in changed.items] == [
        ("Echo Park Commissary", ["amenities", "hourly_rate_cents"])
    ]
    assert changed.total == 1
    unchanged = queries.moderation(
        world.admin_viewer, status="published", changed_since_approval=False
    )
    assert unchanged.total == 8
    assert all(k.changed_since_approval == [] for k in unchanged.items)
    by_id = {k.id: k for k in world.kitchens()}
    everything = queries.moderation(world.admin_viewer, page=PageRequest(limit=100))
    for kitchen in everything.items:
        assert kitchen.changed_since_approval == by_id[kitchen.id].changed_since_approval


def test_a_material_edit_takes_a_kitchen_out_of_search_until_approved_again(
    database_url: str,
) -> None:
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    read_side = open_read_side(store_settings(database_url))
    try:
        admin = create_user(runtime, "admin", "admin@example.com")
        host = create_user(runtime, "host", "host@example.com")
        customer = create_user(runtime, "customer", "customer@example.com")
        top_up(runtime, customer, 100_000)
        kitchen_id = publish_compliant_kitchen(runtime, host, admin)
        booked = runtime.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=kitchen_id, start_time=at(4, 17), end_time=at(4, 19), guests=2
            ),
            as_actor(customer),
        ).result
        queries = KitchenQueries(
            read_side.query_database, jurisdictions=runtime.jurisdictions, clock=clock
        )
        admin_viewer = Viewer(admin.user_id, "admin")

        def catch_up() -> None:
            for projection in (KitchensProjection, ComplianceProjection):
                ensure_ready(read_side.write_database, projection)
                ProjectionRunner(projection, runtime.app, read_side.write_database).catch_up()

        def searchable() -> list[UUID]:
            """What search finds, from SQL and, where it serves (PostgreSQL), from a
            search index built now: the same."""
            found = [k.id for k in queries.search(KitchenFilters()).items]
            if read_side.query_database.dialect == "postgresql":
                index = load_search_index(read_side.query_database, lambda k: k.id.bytes)
                answer = index.search(
                    KitchenFilters(), PageRequest(), runtime.jurisdictions, clock.now
                )
                assert answer is not None
                assert [UUID(bytes=item) for item in answer[0]] == found
            return found

        def compliance_status() -> set[str]:
            """The kitchen's status as the compliance read model shows it."""
            certificates = ComplianceQueries(read_side.query_database).certificates(admin_viewer)
            return {c.kitchen.status for c in certificates.items if c.kitchen.id == kitchen_id}

        catch_up()
        assert searchable() == [kitchen_id]

        runtime.commands.kitchens.update_kitchen(
            UpdateKitchen(kitchen_id=kitchen_id, capacity=4, name="Smaller Kitchen"),
            as_actor(host),
        )
        catch_up()
        assert searchable() == []
        with pytest.raises(NotFound):
            queries.get(None, kitchen_id)
        (queued,) = queries.moderation(admin_viewer, status="pending_review").items
        assert (queued.id, queued.changed_since_approval) == (kitchen_id, ["capacity", "name"])
        assert compliance_status() == {"pending_review"}
        # Its booking stands, and keeps its window out of availability searches.
        assert runtime.app.repository.get(booked.id).status == "pending"
        with read_side.query_database.reading() as sql:
            assert sql.scalar(f"SELECT count(*) FROM {KitchensProjection.view('booked')}") == 1

        runtime.commands.kitchens.approve_kitchen(
            KitchenAction(kitchen_id=kitchen_id), as_actor(admin)
        )
        catch_up()
        assert searchable() == [kitchen_id]
        detail = queries.get(None, kitchen_id)
        assert (detail.status, detail.capacity, detail.name) == ("published", 4, "Smaller Kitchen")
        assert queries.moderation(admin_viewer, changed_since_approval=True).items == []
        assert compliance_status() == {"published"}
    finally:
        read_side.close()
        runtime.close()


def test_batches_report_the_kitchens_they_changed_to_the_query_cache(world: World) -> None:
    assert {f"kitchen:{i}" for i in world.kitchen_ids.values()} | {"kitchens"} <= world.changes
    # Bookings' hints are announced to listeners, never handed to the query cache.
    assert not [changed for changed in world.changes if changed.startswith("booked:")]


# --- rebuild -------------------------------------------------------------------------


def all_rows(database: ReadDatabase) -> dict[str, list[dict[str, Any]]]:
    rows = {}
    with database.reading() as sql:
        for table in KitchensProjection.tables:
            found = sql.fetchall(f"SELECT * FROM {KitchensProjection.view(table)}")
            rows[table] = sorted(found, key=lambda row: repr(sorted(row.items())))
    return rows


def test_a_rebuild_produces_identical_rows(world: World) -> None:
    before = all_rows(world.database)
    generation = request_rebuild(world.read_side.write_database, KitchensProjection)
    world.catch_up()
    with world.database.reading() as sql:
        active = sql.scalar(
            "SELECT generation FROM projection_state WHERE name = %s AND active = %s",
            ("kitchens", True),
        )
    assert active == generation > 1
    assert all_rows(world.database) == before
    ids, _ = search_ids(world, KitchenFilters(q="chiller"))
    assert names(world, ids) == ["Echo Park Commissary", "Mission Smokehouse"]


def test_availability_and_full_text_are_answered_from_indexes(world: World) -> None:
    if world.database.dialect == "postgresql":
        overlapping = "s.during && tstzrange(%s, %s, '[)')"
        window: list[Any] = [at(4, 17), at(4, 19)]
        matching = "s.document @@ plainto_tsquery('english', %s)"
        expected = ["booked_spans_during", "search_document"]
    else:
        overlapping = "s.start_minute < %s AND s.end_minute > %s"
        window = [floor_minute(at(4, 19)), floor_minute(at(4, 17))]
        matching = "s.body MATCH %s"
        expected = ["VIRTUAL TABLE INDEX 2:", "VIRTUAL TABLE INDEX 0:M"]
    booked = (
        f"SELECT s.kitchen_id FROM {KitchensProjection.view('booked_spans')} s"
        if world.database.dialect == "postgresql"
        else f"SELECT b.kitchen_id FROM {KitchensProjection.view('booked_spans')} s "
        f"JOIN {KitchensProjection.view('booked')} b ON b.seq = s.id"
    )
    statements = [
        f"{booked} WHERE {overlapping}",
        f"SELECT s.kitchen_id FROM {KitchensProjection.view('search')} s WHERE {matching}",
    ]
    with world.database.transaction() as sql:
        if sql.dialect == "postgresql":
            sql.execute("SET LOCAL enable_seqscan = off")  # tiny tables: show it could
        for statement, params, index in zip(statements, [window, ["oven"]], expected, strict=True):
            if sql.dialect == "sqlite":
                rows = sql.fetchall(f"EXPLAIN QUERY PLAN {statement}", params)
                plan = " ".join(str(row["detail"]) for row in rows)
            else:
                rows = sql.fetchall(f"EXPLAIN {statement}", params)
                plan = " ".join(str(row["QUERY PLAN"]) for row in rows)
            assert index in plan, plan


class RecordingSql(Sql):
    """Runs statements on another ``Sql`` and remembers them."""

    def __init__(self, sql: Sql, seen: list[tuple[str, list[Any]]]) -> None:
        self.dialect = sql.dialect
        self._sql = sql
        self._seen = seen

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._sql.execute(statement, params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self._sql.executemany(statement, rows)

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self._seen.append((statement, list(params)))
        return self._sql.fetchall(statement, params)

    def insert_many(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        *,
        on_conflict: str = "",
    ) -> None:
        self._sql.insert_many(table, columns, rows, on_conflict=on_conflict)


@pytest.mark.parametrize(
    "filters",
    [
        KitchenFilters(city="Los Angeles"),
        KitchenFilters(capacity=4, max_rate_cents=9000, sort="rate_asc"),
        KitchenFilters(available_from=at(4, 17), available_to=at(4, 19), sort="newest"),
    ],
)
def test_a_search_page_and_its_total_are_index_only_scans(
    world: World, module_database_url: str, filters: KitchenFilters
) -> None:
    """Only the rows of the page are read from the table: the filters, the order and the
    total come from the search indexes (PostgreSQL)."""
    if world.database.dialect != "postgresql":
        pytest.skip("the covering search indexes are PostgreSQL's")
    # As autovacuum leaves them: statistics gathered and pages marked all-visible, which
    # is what makes an index-only scan cheap. Without it the plan depends on whether
    # autovacuum happened to run yet (with statistics but no visibility map, a tiny
    # table's moderation index looks as cheap).
    with psycopg.connect(module_database_url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
    seen: list[tuple[str, list[Any]]] = []

    class Recording(ReadDatabase):
        dialect = world.database.dialect

        @contextmanager
        def transaction(self, *, pipelined: bool = False) -> Iterator[Sql]:
            raise AssertionError("queries do not write")
            yield

        @contextmanager
        def reading(self) -> Iterator[Sql]:
            with world.database.reading() as sql:
                yield RecordingSql(sql, seen)

        def close(self) -> None:
            pass

    queries = KitchenQueries(
        Recording(), jurisdictions=world.runtime.jurisdictions, clock=lambda: QUERY_NOW
    )
    page = queries.search(filters, PageRequest(limit=1))
    assert page.total > 1 and len(page.items) == 1  # a full page: the total was counted
    assert len(seen) == 2
    with world.database.transaction() as sql:
        # Tiny tables: forbid what the planner would rather do, to show what it can.
        for setting in ("enable_seqscan", "enable_bitmapscan"):
            sql.execute(f"SET LOCAL {setting} = off")
        for statement, params in seen:
            rows = sql.fetchall(f"EXPLAIN {statement}", params)
            plan = " ".join(str(row["QUERY PLAN"]) for row in rows)
            assert re.search(r"Index Only Scan using kitchens_g\d+_kitchens_search_", plan), plan
            assert "Seq Scan" not in plan, plan


def test_compliance_follows_the_jurisdiction_rules_it_is_built_with(world: World) -> None:
    """A deployment with its own rules builds the projection with them: here Los Angeles
    asks for a health permit only, so the kitchen without insurance becomes bookable."""
    rules = world.runtime.jurisdictions.get("los_angeles")
    lenient = JurisdictionCatalog(
        [
            replace(rules, required_certificates=frozenset({"health_permit"})),
            world.runtime.jurisdictions.get("san_francisco"),
        ]
    )
    custom = KitchensProjection.with_jurisdictions(lenient)
    assert (custom.name, custom.jurisdictions) == ("kitchens", lenient)
    request_rebuild(world.read_side.write_database, custom)
    ProjectionRunner(custom, world.runtime.app, world.read_side.write_database).catch_up()
    queries = KitchenQueries(world.database, jurisdictions=lenient, clock=lambda: QUERY_NOW)
    found = [k.name for k in queries.search(KitchenFilters(jurisdiction="los_angeles")).items]
    assert "Missing Insurance Kitchen" in found
    request_rebuild(world.read_side.write_database, KitchensProjection)
    world.catch_up()
    assert_matches_brute_force(world, KitchenFilters())
