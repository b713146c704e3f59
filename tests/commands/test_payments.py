"""Money through the sandbox provider, end to end through the command side, on both
backends: a top-up is credited once, when the signed notification confirms it, however
often and in whatever order notifications come; payouts and withdrawals are reserved at
once, then posted or voided exactly once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from uuid import UUID

import pytest

from aggregates.account import Account, account_id_for
from aggregates.errors import InsufficientFunds, PermissionDenied, StateConflict
from aggregates.payment_notification import NotificationOutcome
from aggregates.payment_provider import NotificationRejected, PaymentStatus
from aggregates.payout import PayoutStatus
from aggregates.top_up import TopUp, TopUpStatus
from commands.bookings import BookingAction
from commands.context import Actor
from commands.payouts import PayoutsRequested, RequestPayout, SetPayoutDestination
from commands.top_ups import RequestTopUp
from prep_es.payments.sandbox import SandboxProvider
from prep_es.services.runtime import Runtime
from tests.support import (
    Marketplace,
    as_actor,
    create_user,
    deliver_payment_notifications,
    top_up,
)

Delivered = list[tuple[bytes, dict[str, str]]]


def sandbox_of(runtime: Runtime) -> SandboxProvider:
    sandbox = runtime.payment_provider.sandbox
    assert sandbox is not None
    return sandbox


def capture_deliveries(runtime: Runtime) -> Delivered:
    """Every notification due now, taken from the sandbox without handing it over."""
    captured: Delivered = []

    def keep(payload: bytes, headers: Mapping[str, str]) -> None:
        captured.append((payload, dict(headers)))

    sandbox_of(runtime).deliver_due(keep)
    return captured


def balance_of(runtime: Runtime, user: Actor) -> int:
    account = runtime.app.repository.get(account_id_for(user.user_id))
    assert isinstance(account, Account)
    return account.balance_cents


def top_up_of(runtime: Runtime, top_up_id: UUID) -> TopUp:
    found = runtime.app.repository.get(top_up_id)
    assert isinstance(found, TopUp)
    return found


def test_the_funded_customer_was_credited_by_the_notification(market: Marketplace) -> None:
    assert balance_of(market.runtime, market.customer) == 1_000_000


def test_a_top_up_waits_for_the_notification_then_is_credited_once(market: Marketplace) -> None:
    runtime, customer = market.runtime, market.customer
    started = runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=2500, payment_method="pm_card_visa"), as_actor(customer)
    ).result
    assert started.status == TopUpStatus.PROCESSING
    assert started.test_mode
    assert balance_of(runtime, customer) == 1_000_000
    notifications = capture_deliveries(runtime)
    assert len(notifications) == 1
    outcomes = [
        runtime.receive_notification("sandbox", payload, headers, "test").result
        for payload, headers in notifications * 5
    ]
    assert [receipt.duplicate for receipt in outcomes] == [False, True, True, True, True]
    assert {receipt.outcome for receipt in outcomes} == {NotificationOutcome.APPLIED}
    assert balance_of(runtime, customer) == 1_002_500
    assert top_up_of(runtime, started.id).status == TopUpStatus.SUCCEEDED


def test_a_declined_card_credits_nothing(market: Marketplace) -> None:
    runtime, customer = market.runtime, market.customer
    declined = top_up(runtime, customer, 2500, "pm_card_chargeDeclinedInsufficientFunds")
    assert (declined.status, declined.failure_code) == (TopUpStatus.FAILED, "insufficient_funds")
    assert balance_of(runtime, customer) == 1_000_000


def test_out_of_order_notifications_end_succeeded(market: Marketplace) -> None:
    runtime, customer, clock = market.runtime, market.customer, market.clock
    started = runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=700, payment_method="pm_sandbox_succeeds_after_delay"),
        as_actor(customer),
    ).result
    assert started.status == TopUpStatus.PROCESSING
    notifications = capture_deliveries(runtime)
    clock.advance(timedelta(seconds=runtime.settings.sandbox_settle_delay_s + 1))
    notifications += capture_deliveries(runtime)
    types = [payload for payload, _ in notifications]
    assert len(types) == 2 and b"payment_intent.processing" in types[0]
    for payload, headers in reversed(notifications):
        runtime.receive_notification("sandbox", payload, headers, "test")
    assert top_up_of(runtime, started.id).status == TopUpStatus.SUCCEEDED
    assert balance_of(runtime, customer) == 1_000_700


def test_a_tampered_or_foreign_notification_changes_nothing(market: Marketplace) -> None:
    runtime, customer = market.runtime, market.customer
    runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=2500, payment_method="pm_card_visa"), as_actor(customer)
    )
    [(payload, headers)] = capture_deliveries(runtime)
    position = runtime.app.position()
    tampered = payload.replace(b'"amount": 2500', b'"amount": 2500000').replace(
        b'"amount":2500', b'"amount":2500000'
    )
    assert tampered != payload
    with pytest.raises(NotificationRejected) as rejected:
        runtime.receive_notification("sandbox", tampered, headers, "test")
    assert rejected.value.code == "invalid_signature"
    with pytest.raises(NotificationRejected) as rejected:
        runtime.receive_notification("sandbox", payload, {}, "test")
    assert rejected.value.code == "signature_missing"
    with pytest.raises(NotificationRejected) as rejected:
        runtime.receive_notification("stripe", payload, headers, "test")
    assert rejected.value.code == "wrong_provider"
    market.clock.advance(timedelta(seconds=runtime.settings.webhook_tolerance_s + 1))
    with pytest.raises(NotificationRejected) as rejected:
        runtime.receive_notification("sandbox", payload, headers, "test")
    assert rejected.value.code == "stale_signature"
    assert runtime.app.position() == position
    assert balance_of(runtime, customer) == 1_000_000


def test_a_retried_top_up_pays_once(market: Marketplace) -> None:
    runtime, customer = market.runtime, market.customer
    command = RequestTopUp(amount_cents=900, payment_method="pm_card_visa")
    first = runtime.commands.top_ups.request_top_up(command, as_actor(customer, "key-1"))
    again = runtime.commands.top_ups.request_top_up(command, as_actor(customer, "key-1"))
    assert first.result.id == again.result.id and again.replayed
    deliver_payment_notifications(runtime)
    assert balance_of(runtime, customer) == 1_000_900
    payments = [
        payment
        for payment in sandbox_of(runtime).payments_since(None)
        if payment.top_up_id == first.result.id
    ]
    assert [payment.status for payment in payments] == [PaymentStatus.SUCCEEDED]


def payout(market: Marketplace, amount_cents: int, destination: str) -> PayoutsRequested:
    payouts = market.runtime.commands.payouts
    payouts.set_payout_destination(
        SetPayoutDestination(destination=destination), as_actor(market.host)
    )
    return payouts.request_payout(
        RequestPayout(amount_cents=amount_cents), as_actor(market.host)
    ).result


def earn(market: Marketplace, cents: int) -> None:
    """The host earns by a booking completed (the customer pays, less commission)."""
    start = market.clock().replace(second=0, microsecond=0) + timedelta(days=3)
    booking = market.request_booking(start, hours=2)
    bookings = market.runtime.commands.bookings
    bookings.confirm_booking(BookingAction(booking_id=booking.id), as_actor(market.host))
    market.clock.advance(timedelta(days=4))
    bookings.complete_booking(BookingAction(booking_id=booking.id), as_actor(market.host))
    assert balance_of(market.runtime, market.host) >= cents


def test_a_payout_is_reserved_then_posted(unhurried_market: Marketplace) -> None:
    market = unhurried_market
    earn(market, 5000)
    earned = balance_of(market.runtime, market.host)
    requested = payout(market, 5000, "bank-of-test")
    [pending] = requested.payouts
    assert pending.status == PayoutStatus.PENDING and pending.transfer_reference
    assert balance_of(market.runtime, market.host) == earned - 5000
    assert deliver_payment_notifications(market.runtime) == 0
    assert market.runtime.app.repository.get(pending.id).status == PayoutStatus.PENDING
    market.clock.advance(timedelta(seconds=2))
    deliver_payment_notifications(market.runtime)
    paid = market.runtime.app.repository.get(pending.id)
    assert paid.status == PayoutStatus.PAID
    assert balance_of(market.runtime, market.host) == earned - 5000


def test_a_failed_payout_comes_back(market: Marketplace) -> None:
    earn(market, 5000)
    earned = balance_of(market.runtime, market.host)
    [pending] = payout(market, 5000, "fail-closed-account").payouts
    deliver_payment_notifications(market.runtime)
    failed = market.runtime.app.repository.get(pending.id)
    assert (failed.status, failed.failure_code) == (PayoutStatus.FAILED, "account_closed")
    assert balance_of(market.runtime, market.host) == earned


def test_payouts_need_a_destination_and_the_money(market: Marketplace) -> None:
    payouts = market.runtime.commands.payouts
    with pytest.raises(StateConflict) as refused:
        payouts.request_payout(RequestPayout(amount_cents=100), as_actor(market.host))
    assert refused.value.code == "payout_destination_missing"
    with pytest.raises(InsufficientFunds):
        payout(market, 100, "bank-of-test")
    with pytest.raises(PermissionDenied):
        payouts.request_payout(RequestPayout(amount_cents=100), as_actor(market.customer))


def test_a_withdrawal_refunds_the_newest_top_ups_first(market: Marketplace) -> None:
    runtime, customer = market.runtime, market.customer
    newer = top_up(runtime, customer, 3000)
    requested = runtime.commands.payouts.request_withdrawal(
        RequestPayout(amount_cents=5000), as_actor(customer)
    ).result
    assert (requested.payouts[0].top_up_id, requested.payouts[0].amount_cents) == (newer.id, 3000)
    assert sum(p.amount_cents for p in requested.payouts) == 5000
    assert balance_of(runtime, customer) == 1_003_000 - 5000
    deliver_payment_notifications(runtime)
    for refund in requested.payouts:
        assert runtime.app.repository.get(refund.id).status == PayoutStatus.PAID
    assert balance_of(runtime, customer) == 1_003_000 - 5000


def test_only_customers_top_up(market: Marketplace) -> None:
    with pytest.raises(PermissionDenied):
        market.runtime.commands.top_ups.request_top_up(
            RequestTopUp(amount_cents=100, payment_method="pm_card_visa"), as_actor(market.host)
        )
    analyst = create_user(market.runtime, "analyst", "analyst@example.com")
    with pytest.raises(PermissionDenied):
        market.runtime.commands.top_ups.request_top_up(
            RequestTopUp(amount_cents=100, payment_method="pm_card_visa"), as_actor(analyst)
        )


def test_the_sweeper_submits_what_a_crash_left_unsubmitted(market: Marketplace) -> None:
    """A process that died between recording a top-up (or a payout) and asking the
    provider leaves it untaken; the sweeper asks the provider a minute later."""
    runtime, customer = market.runtime, market.customer
    started = runtime.commands.top_ups.start_top_up(
        RequestTopUp(amount_cents=1200, payment_method="pm_card_visa"), as_actor(customer)
    ).result
    assert started.status == TopUpStatus.REQUIRES_PAYMENT
    assert runtime.commands.sweeper.sweep().submitted_top_up_ids == []
    market.clock.advance(timedelta(minutes=2))
    report = runtime.commands.sweeper.sweep()
    assert report.submitted_top_up_ids == [started.id] and report.failed == []
    deliver_payment_notifications(runtime)
    assert balance_of(runtime, customer) == 1_001_200
    assert runtime.commands.sweeper.sweep().submitted_top_up_ids == []


def test_the_amount_credited_is_checked_against_the_top_up(market: Marketplace) -> None:
    """A notification signed by the provider itself that names another amount than the
    top-up's credits nothing: it is recorded, with why."""
    runtime, customer = market.runtime, market.customer
    runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=2500, payment_method="pm_card_visa"), as_actor(customer)
    )
    [(payload, _)] = capture_deliveries(runtime)
    inflated = payload.replace(b'"amount":2500', b'"amount":250000').replace(
        b'"amount": 2500', b'"amount": 250000'
    )
    assert inflated != payload
    headers = sandbox_of(runtime).notification_headers(inflated)
    receipt = runtime.receive_notification("sandbox", inflated, headers, "test").result
    assert receipt.outcome == NotificationOutcome.AMOUNT_MISMATCH
    assert balance_of(runtime, customer) == 1_000_000


@pytest.mark.parametrize("event_id", ["evt_\u0000x", "evt_\u001b[31m", "evt_" + "x" * 300, ""])
def test_a_signed_notification_no_read_model_could_keep_is_refused(
    market: Marketplace, event_id: str
) -> None:
    """Signed is not sane: a NUL in a provider's text would stop a projector for good."""
    runtime = market.runtime
    runtime.commands.top_ups.request_top_up(
        RequestTopUp(amount_cents=2500, payment_method="pm_card_visa"), as_actor(market.customer)
    )
    [(payload, _)] = capture_deliveries(runtime)
    event = json.loads(payload)
    odd = json.dumps({**event, "id": event_id}).encode()
    position = runtime.app.position()
    with pytest.raises(NotificationRejected) as rejected:
        runtime.receive_notification(
            "sandbox", odd, sandbox_of(runtime).notification_headers(odd), "test"
        )
    assert rejected.value.code == "malformed_notification"
    assert runtime.app.position() == position
