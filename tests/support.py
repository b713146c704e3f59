"""Builders for tests that drive the command handlers: a clock tests move by hand, and
a marketplace with a published, compliant kitchen, its host and a funded customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from uuid import UUID

from hypothesis import strategies as st

from commands.bookings import BookingState, RequestBooking
from commands.context import Actor, CommandContext
from commands.erasure import EraseUser, ErasureLeadReader, ErasureLeads, ErasureState
from commands.kitchens import (
    AttachCertificate,
    CertificateAction,
    CreateKitchen,
    KitchenAction,
)
from commands.top_ups import RequestTopUp, TopUpState
from commands.users import CreateUser
from prep_es.services.passwords import Argon2Passwords
from prep_es.services.runtime import Runtime, open_runtime
from prep_es.store.settings import PostgresLocation, Settings, parse_database_url
from projections.database import ReadDatabase
from projections.kitchens import city_key
from queries.erasure import ErasureLeadQueries
from queries.kitchens import SORTS, KitchenFilters
from tests.waiting import wait_until

# A Monday; 17:00 UTC is 09:00 in Los Angeles (winter), inside every default jurisdiction's
# operating hours.
START_OF_TESTS = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)
DOCUMENT_SHA256 = "ab" * 32
PASSWORD = "correct horse battery"


class MutableClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: datetime = START_OF_TESTS) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


TEST_PAYMENT_SETTINGS: dict[str, object] = {
    "top_up_cents_min": 1,
    "top_up_cents_max": 100_000_000,
    "top_up_daily_cents_max": 1_000_000_000,
    "top_ups_daily_max": 100_000,
    "sandbox_notification_delay_s": 0,
    "sandbox_unruly_deliveries": False,
}
"""What tests fund customers with unless they say otherwise: limits out of the way, and
the sandbox's notifications due at once, each sent once (tests of unruly deliveries turn
them back on)."""


TEST_MASTER_KEY: Final = "cHJlcC1lcyB0ZXN0czogbm90IGEgc2VjcmV0IGtleSE="
"""The master key of every PostgreSQL store the tests open (32 bytes, base64, as
``PREP_ES_MASTER_KEY`` holds it): PostgreSQL requires one, and every process a test starts
on a store must open its data keys with the same. An embedded store needs none: it keeps
the key it generated beside the database file, as it does in use."""


def master_key_settings(database_url: str) -> dict[str, str]:
    """The ``Settings`` arguments that give a store at ``database_url`` its master key."""
    return {"master_key": TEST_MASTER_KEY} if _is_postgres(database_url) else {}


def master_key_environment(database_url: str) -> dict[str, str]:
    """The ``PREP_ES_*`` variables that give a process on ``database_url`` its master key."""
    return {"PREP_ES_MASTER_KEY": TEST_MASTER_KEY} if _is_postgres(database_url) else {}


def _is_postgres(database_url: str) -> bool:
    return isinstance(parse_database_url(database_url), PostgresLocation)


def store_settings(database_url: str, **settings: object) -> Settings:
    """``Settings`` of a store at ``database_url``, with its master key (see
    :data:`TEST_MASTER_KEY`)."""
    return Settings.model_validate(
        {"database_url": database_url, **master_key_settings(database_url), **settings}
    )


def open_test_runtime(database_url: str, clock: MutableClock, **settings: object) -> Runtime:
    return open_runtime(
        store_settings(database_url, **{**TEST_PAYMENT_SETTINGS, **settings}),
        clock=clock,
        passwords=Argon2Passwords.cheap_for_tests(),
    )


def deliver_payment_notifications(runtime: Runtime) -> int:
    """Hand every notification the sandbox has due now to the webhook handling, as its
    delivery thread would; how many."""
    sandbox = runtime.payment_provider.sandbox
    assert sandbox is not None, "tests fund customers through the sandbox"
    return sandbox.deliver_due(runtime.deliver_sandbox_notification)


PAYMENTS_SETTLE_S = 10.0
"""How long a test waits for the sandbox's notifications to be applied."""


def settle_payment_notifications(runtime: Runtime) -> None:
    """Every notification the sandbox has due delivered and applied: here, or by the
    process's own delivery thread, which may have claimed some first (a row stays
    undelivered until what it tells of is recorded). A sandbox that sends its
    notifications later or twice (not :data:`TEST_PAYMENT_SETTINGS`) keeps some for
    later: then only what is due now is delivered, here."""
    sandbox = runtime.payment_provider.sandbox
    assert sandbox is not None, "tests pay through the sandbox"
    deliver_payment_notifications(runtime)
    settings = runtime.settings
    if settings.sandbox_notification_delay_s == 0 and not settings.sandbox_unruly_deliveries:
        wait_until(
            lambda: sandbox.undelivered_count() == 0,
            PAYMENTS_SETTLE_S,
            "the sandbox's notifications delivered",
        )


def top_up(
    runtime: Runtime, customer: Actor, amount_cents: int, payment_method: str = "pm_card_visa"
) -> TopUpState:
    """A top-up with a sandbox test card, its notifications delivered: credited when the
    card is one that succeeds."""
    started = runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=amount_cents, payment_method=payment_method),
        as_actor(customer),
    ).result
    deliver_payment_notifications(runtime)
    return started


def as_actor(actor: Actor, idempotency_key: str | None = None) -> CommandContext:
    return CommandContext(actor=actor, idempotency_key=idempotency_key)


def create_user(runtime: Runtime, role: str, email: str) -> Actor:
    created = runtime.commands.users.create_user(
        CreateUser(email=email, password=PASSWORD, full_name=email.partition("@")[0], role=role),
        CommandContext(actor=None),
    )
    return Actor(user_id=created.result.id, role=role)


@dataclass(frozen=True)
class LeadsAsTheyAre:
    """An erasure's leads from the read models as they are now, for tests that run the
    projectors themselves (no waiting for them: what the erasure's checks then miss, a
    forced erasure goes past anyway)."""

    database: ReadDatabase

    def leads(self, user_id: UUID, *, position: int) -> ErasureLeads:
        return ErasureLeadQueries(self.database).leads(user_id)


def erase_user(
    runtime: Runtime,
    user_id: UUID,
    admin: Actor,
    leads: ErasureLeadReader,
    *,
    reason: str = "asked to be forgotten",
    force: bool = True,
) -> ErasureState:
    """``admin`` erases ``user_id`` (past open money and bookings unless ``force`` is
    off): the erasure recorded, the email's claim released, the data key destroyed."""
    return runtime.commands.erasure.erase_user(
        EraseUser(user_id=user_id, reason=reason, force=force), as_actor(admin), leads
    ).result


@dataclass(frozen=True)
class Marketplace:
    runtime: Runtime
    clock: MutableClock
    admin: Actor
    host: Actor
    customer: Actor
    kitchen_id: UUID

    def request_booking(
        self,
        start: datetime,
        hours: int = 2,
        *,
        customer: Actor | None = None,
        guests: int = 2,
        idempotency_key: str | None = None,
    ) -> BookingState:
        return self.runtime.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=self.kitchen_id,
                start_time=start,
                end_time=start + timedelta(hours=hours),
                guests=guests,
            ),
            as_actor(customer or self.customer, idempotency_key),
        ).result

    def add_customer(self, email: str, top_up_cents: int) -> Actor:
        customer = create_user(self.runtime, "customer", email)
        if top_up_cents:
            top_up(self.runtime, customer, top_up_cents)
        return customer


def publish_compliant_kitchen(
    runtime: Runtime,
    host: Actor,
    admin: Actor,
    *,
    jurisdiction: str = "los_angeles",
    hourly_rate_cents: int = 5000,
    capacity: int = 10,
    instant_book: bool = False,
    certificates_expire_on: date = date(2031, 12, 31),
) -> UUID:
    """A published kitchen with every certificate its jurisdiction requires, verified."""
    kitchens = runtime.commands.kitchens
    kitchen = kitchens.create_kitchen(
        CreateKitchen(
            name="Test Kitchen",
            description="A clean commercial kitchen",
            city="Los Angeles" if jurisdiction == "los_angeles" else "San Francisco",
            jurisdiction=jurisdiction,
            address="1 Main St",
            hourly_rate_cents=hourly_rate_cents,
            capacity=capacity,
            amenities=["walk-in fridge", "Oven"],
            instant_book=instant_book,
        ),
        as_actor(host),
    ).result
    rules = runtime.jurisdictions.get(jurisdiction)
    for kind in sorted(rules.required_certificates):
        certificate = kitchens.attach_certificate(
            AttachCertificate(
                kitchen_id=kitchen.id,
                kind=kind,
                number=f"{kind}-1",
                issued_on=date(2029, 1, 1),
                expires_on=certificates_expire_on,
                document_sha256=DOCUMENT_SHA256,
            ),
            as_actor(host),
        ).result
        kitchens.verify_certificate(
            CertificateAction(kitchen_id=kitchen.id, certificate_id=certificate.id),
            as_actor(admin),
        )
    kitchens.submit_kitchen(KitchenAction(kitchen_id=kitchen.id), as_actor(host))
    kitchens.approve_kitchen(KitchenAction(kitchen_id=kitchen.id), as_actor(admin))
    return kitchen.id


def build_marketplace(
    runtime: Runtime, clock: MutableClock, *, top_up_cents: int = 1_000_000, **kitchen: object
) -> Marketplace:
    admin = create_user(runtime, "admin", "admin@example.com")
    host = create_user(runtime, "host", "host@example.com")
    customer = create_user(runtime, "customer", "customer@example.com")
    if top_up_cents:
        top_up(runtime, customer, top_up_cents)
    kitchen_id = publish_compliant_kitchen(runtime, host, admin, **kitchen)  # type: ignore[arg-type]
    return Marketplace(
        runtime=runtime,
        clock=clock,
        admin=admin,
        host=host,
        customer=customer,
        kitchen_id=kitchen_id,
    )


def listing_matches(
    filters: KitchenFilters, *, city: str, rate_cents: int, capacity: int, amenities: list[str]
) -> bool:
    """Whether a kitchen's listing passes the search filters on its city, rate, capacity
    and amenities (brute-force oracles of search)."""
    wanted_city = (filters.city or "").strip()
    return (
        (not wanted_city or city_key(city) == city_key(wanted_city))
        and (filters.min_rate_cents is None or rate_cents >= filters.min_rate_cents)
        and (filters.max_rate_cents is None or rate_cents <= filters.max_rate_cents)
        and (filters.capacity is None or capacity >= filters.capacity)
        and set(filters.amenity_keys()) <= set(amenities)
    )


@st.composite
def search_filters(
    draw: st.DrawFn,
    *,
    city: st.SearchStrategy[str | None],
    jurisdiction: st.SearchStrategy[str | None],
    min_rate: st.SearchStrategy[int | None],
    max_rate: st.SearchStrategy[int | None],
    capacity: st.SearchStrategy[int | None],
    amenities: st.SearchStrategy[list[str]],
    start: st.SearchStrategy[datetime | None],
    minutes: st.SearchStrategy[int],
) -> KitchenFilters:
    """Search filters drawn from these values (property tests of search): the rate
    bounds in order, a window ``minutes`` long from ``start`` (none without a start),
    any sort."""
    low, high = draw(min_rate), draw(max_rate)
    if low is not None and high is not None and low > high:
        low, high = high, low
    available_from = draw(start)
    return KitchenFilters(
        city=draw(city),
        jurisdiction=draw(jurisdiction),
        min_rate_cents=low,
        max_rate_cents=high,
        capacity=draw(capacity),
        amenities=tuple(draw(amenities)),
        available_from=available_from,
        available_to=(
            None if available_from is None else available_from + timedelta(minutes=draw(minutes))
        ),
        sort=draw(st.sampled_from(SORTS)),
    )
