"""A person's export over the read models, on both backends, read in batches as small
as two rows: every list whole, oldest first, in the same order whatever the batch size,
and no row skipped or repeated when rows change or are added between two batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import islice
from typing import Any

import pytest

from aggregates.account import account_id_for
from commands.bookings import BookingAction, RequestBooking, RescheduleBooking
from commands.payouts import RequestPayout, SetPayoutDestination
from prep_es.services.readside import open_read_side
from prep_es.store.personal_cipher import PersonalDataCipher
from projections.accounts import AccountsProjection
from projections.audit import AuditProjection
from projections.bookings import BookingsProjection
from projections.kitchens import KitchensProjection
from projections.payments import PaymentsProjection
from projections.users import UsersProjection
from queries.accounts import AccountQueries
from queries.audit import ENTRY_COLUMNS, AuditQueries, entries_from_rows
from queries.base import PageRequest, Viewer
from queries.bookings import BookingQueries
from queries.export import ExportQueries
from queries.kitchens import KitchenQueries
from queries.payments import PaymentQueries
from queries.users import UserQueries
from tests.readmodels.test_bookings import World
from tests.support import (
    START_OF_TESTS,
    MutableClock,
    as_actor,
    build_marketplace,
    deliver_payment_notifications,
    open_test_runtime,
    publish_compliant_kitchen,
    store_settings,
    top_up,
)

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
EXPORTED = (
    UsersProjection,
    AccountsProjection,
    PaymentsProjection,
    BookingsProjection,
    KitchensProjection,
    AuditProjection,
)


class Exporting(World):
    def queries(self) -> ExportQueries:
        database = self.read_side.query_database
        runtime = self.market.runtime
        return ExportQueries(
            users=UserQueries(database),
            accounts=AccountQueries(database),
            payments=PaymentQueries(database),
            bookings=BookingQueries(database),
            kitchens=KitchenQueries(
                database, jurisdictions=runtime.jurisdictions, clock=self.market.clock
            ),
            audit=AuditQueries(database, PersonalDataCipher(runtime.app.data_keys)),
        )

    def catch_up_exported(self) -> None:
        self.catch_up(*EXPORTED)


@pytest.fixture
def world(database_url: str) -> Iterator[Exporting]:
    """A host with three kitchens; the customer topped up three more times, made five
    bookings (the host confirmed and completed two) and withdrew twice; the host was
    paid out twice."""
    clock = MutableClock()
    runtime = open_test_runtime(database_url, clock)
    read_side = open_read_side(store_settings(database_url))
    market = build_marketplace(runtime, clock)
    for _ in range(2):
        publish_compliant_kitchen(runtime, market.host, market.admin)
    for cents in (1_000, 2_000, 3_000):
        top_up(runtime, market.customer, cents)
    bookings = [market.request_booking(START_OF_TESTS + days * DAY) for days in range(1, 6)]
    for booking in bookings[:2]:
        runtime.commands.bookings.confirm_booking(
            BookingAction(booking_id=booking.id), as_actor(market.host)
        )
    payouts = runtime.commands.payouts
    for cents in (500, 700):
        payouts.request_withdrawal(RequestPayout(amount_cents=cents), as_actor(market.customer))
    clock.advance(3 * DAY)
    for booking in bookings[:2]:
        runtime.commands.bookings.complete_booking(
            BookingAction(booking_id=booking.id), as_actor(market.host)
        )
    payouts.set_payout_destination(
        SetPayoutDestination(destination="bank-of-test"), as_actor(market.host)
    )
    for cents in (1_100, 1_300):
        payouts.request_payout(RequestPayout(amount_cents=cents), as_actor(market.host))
    deliver_payment_notifications(runtime)
    world = Exporting(market, read_side)
    world.catch_up_exported()
    yield world
    read_side.close()
    runtime.close()


LISTS = (
    "account_entries",
    "top_ups",
    "payouts",
    "bookings_made",
    "bookings_hosted",
    "kitchens",
    "audit_entries",
    "entries_about_me",
)


def every_list(world: Exporting, viewer: Viewer, batch_rows: int) -> dict[str, list[Any]]:
    """Each list of ``viewer``'s export read ``batch_rows`` rows at a time."""
    database = world.read_side.query_database
    app = world.market.runtime.app
    runtime = world.market.runtime
    kitchens = KitchenQueries(
        database, jurisdictions=runtime.jurisdictions, clock=world.market.clock
    )
    accounts, payments = AccountQueries(database), PaymentQueries(database)
    bookings = BookingQueries(database)
    audit = AuditQueries(database, PersonalDataCipher(app.data_keys))
    readers: dict[str, Callable[..., Iterator[Any]]] = {
        "account_entries": accounts.every_entry,
        "top_ups": payments.every_top_up,
        "payouts": payments.every_payout,
        "bookings_made": bookings.every_booking_made,
        "bookings_hosted": bookings.every_booking_hosted,
        "kitchens": kitchens.every_kitchen_owned,
        "audit_entries": audit.every_entry_caused_by,
        "entries_about_me": audit.every_entry_about,
    }
    return {name: list(read(viewer, batch_rows=batch_rows)) for name, read in readers.items()}


@pytest.mark.parametrize("who", ["customer", "host"])
def test_lists_are_whole_and_the_same_whatever_the_batch_size(world: Exporting, who: str) -> None:
    actor = getattr(world.market, who)
    viewer = Viewer(actor.user_id, who)
    whole = every_list(world, viewer, 500)
    assert every_list(world, viewer, 2) == whole
    assert every_list(world, viewer, 3) == whole

    export = world.queries().export(viewer, catch_up=lambda: None)
    assert {name: list(getattr(export, name)) for name in LISTS} == whole
    assert export.user.id == actor.user_id

    accounts = AccountQueries(world.read_side.query_database)
    statement = accounts.entries(viewer, PageRequest(limit=100)).items
    assert whole["account_entries"] == statement[::-1] and len(statement) > 2
    payments = PaymentQueries(world.read_side.query_database)
    assert whole["top_ups"] == payments.top_ups(viewer, PageRequest(limit=100)).items[::-1]
    assert whole["payouts"] == payments.payouts(viewer, PageRequest(limit=100)).items[::-1]
    assert len(whole["payouts"]) == 2
    for entries in (whole["audit_entries"], whole["entries_about_me"]):
        assert [e.position for e in entries] == sorted({e.position for e in entries})
    if who == "customer":
        assert len(whole["bookings_made"]) == 5 and whole["bookings_hosted"] == []
        assert len(whole["top_ups"]) == 4 and whole["kitchens"] == []
    else:
        assert len(whole["bookings_hosted"]) == 5 and whole["bookings_made"] == []
        assert len(whole["kitchens"]) == 3
        assert all(kitchen.certificates for kitchen in whole["kitchens"])
        created = [kitchen.created_at for kitchen in whole["kitchens"]]
        assert created == sorted(created)


def test_rows_changed_or_added_between_batches_are_read_once(world: Exporting) -> None:
    market = world.market
    viewer = Viewer(market.customer.user_id, "customer")
    bookings = BookingQueries(world.read_side.query_database)
    before = [booking.id for booking in bookings.every_booking_made(viewer)]
    reading = bookings.every_booking_made(viewer, batch_rows=2)
    first = [booking.id for booking in islice(reading, 2)]

    # A booking not read yet moves to the latest start of all, a new one is made:
    # neither is read twice, none is skipped.
    market.runtime.commands.bookings.reschedule_booking(
        RescheduleBooking(
            booking_id=before[3],
            start_time=START_OF_TESTS + 9 * DAY,
            end_time=START_OF_TESTS + 9 * DAY + 2 * HOUR,
        ),
        as_actor(market.customer),
    )
    added = market.request_booking(START_OF_TESTS + 8 * DAY)
    world.catch_up_exported()
    rest = [booking.id for booking in reading]

    assert first + rest == [*before, added.id]


def test_an_entry_opens_only_the_personal_fields_of_whom_it_is_read_for(
    world: Exporting,
) -> None:
    market = world.market
    for days in (10, 11):
        market.runtime.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=market.kitchen_id,
                start_time=START_OF_TESTS + days * DAY,
                end_time=START_OF_TESTS + days * DAY + HOUR,
                guests=1,
                notes=f"notes of booking {days}",
            ),
            as_actor(market.customer),
        )
    world.catch_up_exported()
    with world.read_side.query_database.reading() as sql:
        rows = sql.fetchall(
            f"SELECT {ENTRY_COLUMNS} FROM {AuditProjection.view('entries')} "
            "WHERE event_type = %s ORDER BY position",
            ("Booking.BookingRequested",),
        )
    cipher = PersonalDataCipher(market.runtime.app.data_keys)
    hers = entries_from_rows(rows, cipher, subject=market.customer.user_id)
    theirs = entries_from_rows(rows, cipher, subject=market.host.user_id)
    everyone = entries_from_rows(rows, cipher)
    assert len(rows) == 7
    assert [(entry.payload["notes"], withheld) for entry, withheld in hers] == [
        (entry.payload["notes"], []) for entry, _ in everyone
    ]
    assert {entry.payload["notes"] for entry, _ in everyone} >= {
        "notes of booking 10",
        "notes of booking 11",
    }
    # The five earlier bookings have empty notes, which are not sealed: they say nothing.
    assert [(entry.payload["notes"], withheld) for entry, withheld in theirs] == [("", [])] * 5 + [
        (None, ["notes"])
    ] * 2
    assert not any(entry.erased for entry, _ in [*hers, *theirs, *everyone])


def test_entries_about_a_person_are_of_their_user_and_account_whoever_caused_them(
    world: Exporting,
) -> None:
    market = world.market
    customer, host = market.customer.user_id, market.host.user_id
    about = list(
        AuditQueries(
            world.read_side.query_database, PersonalDataCipher(market.runtime.app.data_keys)
        ).every_entry_about(Viewer(customer, "customer"), batch_rows=2)
    )

    assert {e.aggregate_id for e in about} == {customer, account_id_for(customer)}
    registered = about[0]
    assert registered.event_type == "User.UserRegistered" and registered.actor_id is None
    assert registered.payload["email"] == "customer@example.com"
    assert registered.payload["password_hash"] == "***"
    assert not registered.actor_withheld and registered.withheld_fields == []
    assert [e.position for e in about] == sorted({e.position for e in about})
    # The host completed two of her bookings: her holds were captured by them, shown by
    # role only.
    captured = [e for e in about if e.event_type == "Account.HoldCaptured"]
    assert len(captured) == 2
    for entry in captured:
        assert entry.actor_withheld and entry.actor_role == "host"
        assert (entry.actor_id, entry.request_id, entry.correlation_id) == (None, None, None)
    own = [e for e in about if e.actor_id == customer]
    assert own and not any(e.actor_withheld for e in own)
    assert all(e.actor_id in (None, customer) for e in about)
    assert str(host) not in str([e.model_dump() for e in about])
