"""The sandbox provider on each backend: test payment methods, idempotency, transfers,
notifications and their delivery."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from datetime import timedelta
from uuid import UUID, uuid4

import orjson
import pytest

from aggregates.payment_provider import (
    NotificationRejected,
    NotificationSubject,
    PaymentStatus,
    PayoutDestinationRefused,
    ProviderNotification,
    TransferMethod,
    TransferStatus,
)
from prep_es.payments.sandbox import SandboxProvider
from prep_es.payments.sandbox_payment_methods import TEST_PAYMENT_METHODS
from tests.support import MutableClock, store_settings

NOTIFICATION_DELAY_S = 0.05
SETTLE_DELAY_S = 5.0
LATER = timedelta(seconds=60)


def open_sandbox(
    database_url: str, clock: MutableClock, *, seed: int = 0, **settings: object
) -> SandboxProvider:
    values: dict[str, object] = {
        "sandbox_notification_delay_s": NOTIFICATION_DELAY_S,
        "sandbox_settle_delay_s": SETTLE_DELAY_S,
        "sandbox_unruly_deliveries": False,
        **settings,
    }
    return SandboxProvider.open(
        store_settings(database_url, **values),  # type: ignore[arg-type]
        clock,
        rng=random.Random(seed),
    )


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def sandbox(database_url: str, clock: MutableClock) -> Iterator[SandboxProvider]:
    provider = open_sandbox(database_url, clock)
    yield provider
    provider.close()


class Inbox:
    """Receives delivered notifications the way the webhook route will: verified."""

    def __init__(self, provider: SandboxProvider, clock: MutableClock) -> None:
        self.provider = provider
        self.clock = clock
        self.notifications: list[ProviderNotification] = []

    def __call__(self, payload: bytes, headers: Mapping[str, str]) -> None:
        self.notifications.append(self.provider.read_notification(payload, headers, self.clock()))

    def statuses_of(self, subject_id: UUID) -> list[str | None]:
        return [n.status for n in self.notifications if n.subject_id == subject_id]


def test_each_test_payment_method_has_its_outcome(sandbox: SandboxProvider) -> None:
    expected = {
        "pm_card_visa": (PaymentStatus.SUCCEEDED, None),
        "pm_card_mastercard": (PaymentStatus.SUCCEEDED, None),
        "pm_card_amex": (PaymentStatus.SUCCEEDED, None),
        "pm_card_chargeDeclined": (PaymentStatus.FAILED, "card_declined"),
        "pm_card_chargeDeclinedInsufficientFunds": (PaymentStatus.FAILED, "insufficient_funds"),
        "pm_card_chargeDeclinedExpiredCard": (PaymentStatus.FAILED, "expired_card"),
        "pm_sandbox_succeeds_after_delay": (PaymentStatus.PROCESSING, None),
        "pm_card_unheard_of": (PaymentStatus.FAILED, "payment_method_unknown"),
    }
    assert set(expected) - {"pm_card_unheard_of"} == set(TEST_PAYMENT_METHODS)

    for method, (status, failure_code) in expected.items():
        top_up_id = uuid4()
        payment = sandbox.create_payment(top_up_id, 2500, method)

        assert (payment.status, payment.failure_code) == (status, failure_code), method
        assert payment.reference.startswith("pi_sandbox_")
        assert (payment.top_up_id, payment.amount_cents, payment.currency) == (
            top_up_id,
            2500,
            "usd",
        )
        assert sandbox.find_payment(payment.reference) == payment


def test_the_delayed_method_succeeds_after_the_settle_delay(
    sandbox: SandboxProvider, clock: MutableClock
) -> None:
    top_up_id = uuid4()
    inbox = Inbox(sandbox, clock)
    payment = sandbox.create_payment(top_up_id, 1000, "pm_sandbox_succeeds_after_delay")

    clock.advance(timedelta(seconds=SETTLE_DELAY_S - 0.01))
    sandbox.deliver_due(inbox)
    assert sandbox.find_payment(payment.reference).status is PaymentStatus.PROCESSING  # type: ignore[union-attr]
    assert inbox.statuses_of(top_up_id) == ["processing"]

    clock.advance(timedelta(seconds=0.01))
    assert sandbox.find_payment(payment.reference).status is PaymentStatus.SUCCEEDED  # type: ignore[union-attr]
    clock.advance(timedelta(seconds=NOTIFICATION_DELAY_S))
    sandbox.deliver_due(inbox)
    assert inbox.statuses_of(top_up_id) == ["processing", "succeeded"]


def test_a_payment_is_made_once_per_top_up(sandbox: SandboxProvider, clock: MutableClock) -> None:
    top_up_id = uuid4()
    first = sandbox.create_payment(top_up_id, 1000, "pm_card_visa")
    clock.advance(LATER)

    again = sandbox.create_payment(top_up_id, 9999, "pm_card_chargeDeclined")

    assert again == first
    assert sandbox.payments_since(None) == [first]
    assert sandbox.undelivered_count() == 1


def test_a_refund_is_pending_then_paid_and_made_once(
    sandbox: SandboxProvider, clock: MutableClock
) -> None:
    payment = sandbox.create_payment(uuid4(), 1000, "pm_card_visa")
    payout_id = uuid4()

    refund = sandbox.refund_payment(payout_id, payment.reference, 600)
    assert (refund.method, refund.status, refund.payout_id) == (
        TransferMethod.REFUND,
        TransferStatus.PENDING,
        payout_id,
    )
    assert refund.reference.startswith("re_sandbox_")

    clock.advance(timedelta(seconds=NOTIFICATION_DELAY_S))
    again = sandbox.refund_payment(payout_id, payment.reference, 600)
    assert again.reference == refund.reference
    assert again.status is TransferStatus.PAID
    assert sandbox.transfers_since(None) == [again]


def test_a_refund_beyond_what_is_left_of_the_payment_fails(sandbox: SandboxProvider) -> None:
    payment = sandbox.create_payment(uuid4(), 1000, "pm_card_visa")
    sandbox.refund_payment(uuid4(), payment.reference, 600)

    too_much = sandbox.refund_payment(uuid4(), payment.reference, 401)
    rest = sandbox.refund_payment(uuid4(), payment.reference, 400)
    nothing_left = sandbox.refund_payment(uuid4(), payment.reference, 1)

    assert (too_much.status, too_much.failure_code) == (TransferStatus.FAILED, "amount_too_large")
    assert (rest.status, rest.failure_code) == (TransferStatus.PENDING, None)
    assert nothing_left.failure_code == "amount_too_large"


def test_a_refund_of_no_successful_payment_fails(sandbox: SandboxProvider) -> None:
    declined = sandbox.create_payment(uuid4(), 1000, "pm_card_chargeDeclined")
    processing = sandbox.create_payment(uuid4(), 1000, "pm_sandbox_succeeds_after_delay")

    unknown = sandbox.refund_payment(uuid4(), "pi_sandbox_unknown", 100)
    of_declined = sandbox.refund_payment(uuid4(), declined.reference, 100)
    of_processing = sandbox.refund_payment(uuid4(), processing.reference, 100)

    assert (unknown.status, unknown.failure_code) == (TransferStatus.FAILED, "charge_not_found")
    assert of_declined.failure_code == "charge_not_refundable"
    assert of_processing.failure_code == "charge_not_refundable"


def test_a_payout_is_paid_or_fails_after_the_delay_and_is_sent_once(
    sandbox: SandboxProvider, clock: MutableClock
) -> None:
    payout_id = uuid4()
    failing_id = uuid4()

    payout = sandbox.send_payout(payout_id, "acct_host-1", 5000)
    failing = sandbox.send_payout(failing_id, "fail_closed", 5000)
    assert (payout.method, payout.status) == (TransferMethod.PAYOUT, TransferStatus.PENDING)
    assert failing.status is TransferStatus.PENDING

    clock.advance(timedelta(seconds=NOTIFICATION_DELAY_S))
    paid = sandbox.send_payout(payout_id, "acct_host-1", 5000)
    failed = sandbox.send_payout(failing_id, "fail_closed", 5000)
    assert (paid.reference, paid.status) == (payout.reference, TransferStatus.PAID)
    assert (failed.status, failed.failure_code) == (TransferStatus.FAILED, "account_closed")
    assert len(sandbox.transfers_since(None)) == 2


@pytest.mark.parametrize("destination", ["", "a" * 101, "acct host", "acct/1", "acct_é"])
def test_a_payout_destination_must_be_a_short_plain_name(
    sandbox: SandboxProvider, destination: str
) -> None:
    sandbox.check_payout_destination("a" * 100)

    with pytest.raises(PayoutDestinationRefused):
        sandbox.check_payout_destination(destination)
    with pytest.raises(PayoutDestinationRefused):
        sandbox.send_payout(uuid4(), destination, 100)
    assert sandbox.transfers_since(None) == []


def test_payments_and_transfers_since_a_time(sandbox: SandboxProvider, clock: MutableClock) -> None:
    early = sandbox.create_payment(uuid4(), 1000, "pm_card_visa")
    clock.advance(LATER)
    since = clock()
    late = sandbox.create_payment(uuid4(), 2000, "pm_card_visa")
    refund = sandbox.refund_payment(uuid4(), early.reference, 100)

    assert sandbox.payments_since(since) == [late]
    assert sandbox.payments_since(None) == [early, late]
    assert sandbox.transfers_since(since) == [refund]
    assert sandbox.transfers_since(since + timedelta(seconds=1)) == []


def test_notifications_tell_of_payments_and_transfers(
    sandbox: SandboxProvider, clock: MutableClock
) -> None:
    inbox = Inbox(sandbox, clock)
    top_up_id, declined_id, refund_id, payout_id = uuid4(), uuid4(), uuid4(), uuid4()
    payment = sandbox.create_payment(top_up_id, 1000, "pm_card_visa")
    sandbox.create_payment(declined_id, 1000, "pm_card_chargeDeclinedExpiredCard")
    refund = sandbox.refund_payment(refund_id, payment.reference, 300)
    sandbox.send_payout(payout_id, "fail_please", 700)

    assert sandbox.deliver_due(inbox) == 0
    clock.advance(timedelta(seconds=2 * NOTIFICATION_DELAY_S))
    assert sandbox.deliver_due(inbox) == 6
    assert sandbox.undelivered_count() == 0

    by_subject = {(n.subject_id, n.event_type): n for n in inbox.notifications}
    succeeded = by_subject[top_up_id, "payment_intent.succeeded"]
    assert succeeded.provider == "sandbox"
    assert succeeded.event_id.startswith("evt_sandbox_")
    assert (succeeded.subject, succeeded.reference, succeeded.status) == (
        NotificationSubject.PAYMENT,
        payment.reference,
        "succeeded",
    )
    assert (succeeded.amount_cents, succeeded.currency) == (1000, "usd")
    assert succeeded.occurred_at == payment.created_at.replace(microsecond=0)
    declined = by_subject[declined_id, "payment_intent.payment_failed"]
    assert (declined.status, declined.failure_code) == ("failed", "expired_card")
    assert inbox.statuses_of(refund_id) == ["pending", "paid"]
    refunded = by_subject[refund_id, "refund.updated"]
    assert (refunded.subject, refunded.reference) == (
        NotificationSubject.TRANSFER,
        refund.reference,
    )
    assert [n.event_type for n in inbox.notifications if n.subject_id == payout_id] == [
        "transfer.created",
        "transfer.failed",
    ]
    assert by_subject[payout_id, "transfer.failed"].failure_code == "account_closed"


def test_two_sandboxes_on_one_database_verify_each_others_notifications(
    database_url: str, clock: MutableClock
) -> None:
    first = open_sandbox(database_url, clock)
    second = open_sandbox(database_url, clock)
    try:
        top_up_id = uuid4()
        payment = first.create_payment(top_up_id, 1000, "pm_card_visa")
        assert second.find_payment(payment.reference) == payment

        clock.advance(timedelta(seconds=NOTIFICATION_DELAY_S))
        inbox = Inbox(second, clock)
        assert first.deliver_due(inbox) == 1
        assert inbox.statuses_of(top_up_id) == ["succeeded"]
        assert second.deliver_due(inbox) == 0
    finally:
        first.close()
        second.close()


def reject(
    sandbox: SandboxProvider, payload: bytes, headers: Mapping[str, str], clock: MutableClock
) -> str:
    with pytest.raises(NotificationRejected) as caught:
        sandbox.read_notification(payload, headers, clock())
    return caught.value.code


def test_a_notification_must_be_signed_recently_by_the_sandbox(
    sandbox: SandboxProvider, clock: MutableClock
) -> None:
    payload = orjson.dumps(
        {
            "id": "evt_sandbox_1",
            "type": "charge.captured",
            "created": 1,
            "livemode": False,
            "data": {"object": {"id": "ch_1"}},
        }
    )
    headers = sandbox.notification_headers(payload)

    other = sandbox.read_notification(payload, headers, clock())
    assert (other.event_type, other.subject, other.status, other.reference) == (
        "charge.captured",
        None,
        None,
        "ch_1",
    )
    assert reject(sandbox, payload, {}, clock) == "signature_missing"
    assert reject(sandbox, payload + b" ", headers, clock) == "invalid_signature"
    clock.advance(timedelta(seconds=301))
    assert reject(sandbox, payload, headers, clock) == "stale_signature"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"id": "evt_sandbox_1", "type": "payment_intent.succeeded", "created": 1}',
        b'{"id": "evt_1", "type": "x", "created": 1, "livemode": false, "data": {"object": {}}}',
        b'{"id": "evt_sandbox_1", "type": "x", "created": 1, "livemode": true,'
        b' "data": {"object": {}}}',
        b'{"id": "evt_sandbox_1", "type": "x", "created": "1", "livemode": false,'
        b' "data": {"object": {}}}',
        b'{"id": "evt_sandbox_1", "type": "payment_intent.succeeded", "created": 1,'
        b' "livemode": false, "data": {"object": {"metadata": {"top_up_id": "nope"}}}}',
        b'{"id": "evt_sandbox_1", "type": "refund.updated", "created": 1, "livemode": false,'
        b' "data": {"object": {"status": "lost"}}}',
        b'{"id": "evt_sandbox_1", "type": "x", "created": 1, "livemode": false,'
        b' "data": {"object": {"amount": 1.5}}}',
        b'{"id": "evt_sandbox_1", "type": "x", "created": 99999999999999, "livemode": false,'
        b' "data": {"object": {}}}',
    ],
)
def test_a_well_signed_notification_that_is_no_sandbox_event_is_malformed(
    sandbox: SandboxProvider, clock: MutableClock, payload: bytes
) -> None:
    assert reject(sandbox, payload, sandbox.notification_headers(payload), clock) == (
        "malformed_notification"
    )
