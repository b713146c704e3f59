"""``prep-es demo`` and ``prep-es sweep``: the demo goes through the handlers and leaves
a store where every booking status, every kitchen status and every cancellation tier
can be found by reading the events back, and where the ledger balances."""

from __future__ import annotations

import json
from collections.abc import Iterator
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic

from aggregates.account import Account
from aggregates.booking import BOOKING_STATUSES, Booking
from aggregates.kitchen import KITCHEN_STATUSES, Kitchen
from aggregates.policies import share_cents
from prep_es.demo import DEMO_ADMIN_EMAIL, DEMO_PASSWORD
from prep_es.store.eventstore import PrepApplication, open_application
from tests.cli.running import RunCli, cli_runner
from tests.support import store_settings

NOTIFICATIONS_MAX = 10_000


@pytest.fixture
def store(database_url: str) -> Iterator[PrepApplication]:
    app = open_application(store_settings(database_url))
    yield app
    app.close()


def events_of(app: PrepApplication, *event_classes: type) -> list[object]:
    topics = [get_topic(event_class) for event_class in event_classes]
    notifications = app.recorder.select_notifications(
        start=1, limit=NOTIFICATIONS_MAX, topics=topics
    )
    assert len(notifications) < NOTIFICATIONS_MAX
    return [app.mapper.to_domain_event(notification) for notification in notifications]


def aggregates_created_by(app: PrepApplication, event_class: type) -> list[UUID]:
    return [event.originator_id for event in events_of(app, event_class)]


def assert_ledger_balances(store: PrepApplication, bookings: list[Booking]) -> None:
    """No user account negative; holds only for live bookings, at their price; and the
    clearing accounts (payments in, payouts in transit, payments out) and the revenue
    side net every user balance to zero."""
    accounts = [
        store.repository.get(i) for i in aggregates_created_by(store, Account.AccountOpened)
    ]
    assert len(accounts) >= 13
    live = {str(b.id): b.price_cents for b in bookings if b.is_active}
    for account in accounts:
        assert account.balance_cents >= 0
        assert 0 <= account.held_cents <= account.balance_cents
        assert account.held_cents == sum(account.holds.values())
        assert all(live[hold_id] == amount for hold_id, amount in account.holds.items())
    assert sum(len(a.holds) for a in accounts) == len(live)
    top_ups = sum(e.amount_cents for e in events_of(store, Account.TopUpCredited))
    reserved = sum(e.amount_cents for e in events_of(store, Account.PayoutReserved))
    posted = sum(e.amount_cents for e in events_of(store, Account.PayoutPosted))
    voided = sum(e.amount_cents for e in events_of(store, Account.PayoutVoided))
    commissions = sum(e.commission_cents for e in events_of(store, Account.HoldCaptured))
    clearing_balance = -top_ups + (reserved - posted - voided) + posted
    assert commissions > 0
    assert sum(a.balance_cents for a in accounts) + clearing_balance + commissions == 0


def test_demo_loads_every_state_balances_and_sweeps_once(
    cli: RunCli, store: PrepApplication
) -> None:
    loaded = cli("demo")

    assert loaded.code == 0, loaded.err
    assert "Demo data loaded" in loaded.out
    assert DEMO_ADMIN_EMAIL in loaded.out
    assert DEMO_PASSWORD in loaded.out
    assert loaded.out.rstrip().splitlines()[-1].startswith("  customer")  # logins last

    bookings = [
        store.repository.get(i) for i in aggregates_created_by(store, Booking.BookingRequested)
    ]
    assert {booking.status for booking in bookings} == set(BOOKING_STATUSES)
    kitchens = [
        store.repository.get(i) for i in aggregates_created_by(store, Kitchen.KitchenCreated)
    ]
    assert 8 <= len(kitchens) <= 10
    assert {kitchen.status for kitchen in kitchens} == set(KITCHEN_STATUSES)
    assert {kitchen.jurisdiction for kitchen in kitchens} == {"los_angeles", "san_francisco"}
    assert any(kitchen.instant_book for kitchen in kitchens)

    # Every cancellation tier, host cancellation, both ways of completing, a reschedule.
    cancelled = [b for b in bookings if b.status == "cancelled"]
    tiers = {
        "released"
        if b.captured_cents == 0
        else "all captured"
        if b.captured_cents == b.price_cents
        else "half captured"
        if b.captured_cents == share_cents(b.price_cents, 5000)
        else f"unexpected {b.captured_cents} of {b.price_cents}"
        for b in cancelled
    }
    assert tiers == {"released", "half captured", "all captured"}
    cancellations = events_of(store, Booking.BookingCancelled)
    assert {event.cancelled_by_role for event in cancellations} == {"customer", "host"}
    completions = events_of(store, Booking.BookingCompleted)
    assert {event.automatically for event in completions} == {True, False}
    assert events_of(store, Booking.BookingRescheduled)
    assert events_of(store, Booking.BookingDeclined)
    assert events_of(store, Account.TopUpCredited)
    assert events_of(store, Account.PayoutReserved)
    assert {c.status for k in kitchens for c in k.certificates.values()} >= {
        "pending",
        "verified",
        "rejected",
    }

    assert_ledger_balances(store, bookings)

    # The demo already ran the sweeper up to now: a sweep finds nothing, twice.
    first = cli("sweep", "--json")
    second = cli("sweep", "--json")
    assert first.code == second.code == 0, (first.err, second.err)
    first_report = json.loads(first.out)
    assert set(first_report) == {
        "expired_booking_ids",
        "completed_booking_ids",
        "cancelled_booking_ids",
        "lapsed_certificate_ids",
        "submitted_top_up_ids",
        "sent_payout_ids",
        "erased_user_ids",
        "failed",
    }
    assert first_report.pop("failed") == []
    for ids in first_report.values():
        assert all(UUID(i) for i in ids)
    assert json.loads(second.out) == {
        "expired_booking_ids": [],
        "completed_booking_ids": [],
        "cancelled_booking_ids": [],
        "lapsed_certificate_ids": [],
        "submitted_top_up_ids": [],
        "sent_payout_ids": [],
        "erased_user_ids": [],
        "failed": [],
    }
    human = cli("sweep")
    assert human.out.startswith("sweep: expired 0 booking(s), completed 0 booking(s)")

    # Nothing is loaded twice.
    position = store.position()
    again = cli("demo")
    assert again.code == 0, again.err
    assert "demo data already loaded" in again.out
    assert store.position() == position


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_reset_reloads_an_embedded_database(cli: RunCli) -> None:
    taken = cli(
        "users",
        "create",
        "--email",
        DEMO_ADMIN_EMAIL,
        "--password",
        "not the demo password",
        "--role",
        "admin",
    )
    assert taken.code == 0, taken.err
    assert "already loaded" in cli("demo").out

    reloaded = cli("demo", "--reset", "--json")

    assert reloaded.code == 0, reloaded.err
    report = json.loads(reloaded.out)
    assert report["already_loaded"] is False
    assert report["bookings_by_status"]["completed"] >= 2
    assert report["sweep"]["expired_booking_ids"]


def test_demo_reset_is_refused_on_postgres(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fresh_postgres_url: str,
) -> None:
    cli = cli_runner(monkeypatch, capsys, fresh_postgres_url)

    ran = cli("demo", "--reset")

    assert ran.code == 2
    assert "append-only" in ran.err
    assert ran.out == ""
