"""The Stripe adapter against localstripe, a Stripe emulator run as a real server.

What localstripe cannot show, and so is covered otherwise or not at all:

- Connect: localstripe has no accounts or transfers. ``send_payout`` is tested only in
  that such a server makes it a ``PaymentProviderError``, ``check_payout_destination``
  only for the form of the destination, ``transfers_since`` only for refunds; what Stripe
  says of transfers is covered by the signed ``transfer.*`` notifications.
- Idempotency: localstripe ignores the keys; a proxy in front of it replays answers by
  key as Stripe does (``idempotent_stripe`` in conftest.py).
- Declines: localstripe declines only some cards when charged (4000000000000341, as
  ``card_declined``); ``insufficient_funds`` and the other decline codes are covered by
  the signed ``payment_intent.payment_failed`` notifications.
- Refund amounts: localstripe refunds more than was paid; Stripe's refusal of that is
  mapped like the refusal tested here (a refund of a declined payment).
- Creation-time filters: localstripe lists PaymentIntents and Refunds only unfiltered,
  so ``payments_since`` and ``transfers_since`` run here with ``since=None``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import stripe
from pydantic import SecretStr

from aggregates.payment_provider import (
    NotificationRejected,
    NotificationSubject,
    PaymentProviderError,
    PaymentStatus,
    PayoutDestinationRefused,
    TransferMethod,
    TransferStatus,
)
from prep_es.payments.stripe_provider import StripeProvider
from prep_es.store.settings import Settings
from tests.payments.conftest import TEST_SECRET_KEY, IdempotentStripe, free_port

WEBHOOK_SECRET = "whsec_prep_es_test"
TOLERANCE_S = 300
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

VISA = "4242424242424242"
DECLINED_WHEN_CHARGED = "4000000000000341"
AUTHENTICATION_REQUIRED = "4000002500003155"


def provider_at(api_base: str | None, secret_key: str = TEST_SECRET_KEY) -> StripeProvider:
    return StripeProvider(secret_key, WEBHOOK_SECRET, api_base=api_base, tolerance_s=TOLERANCE_S)


@pytest.fixture
def provider(localstripe_url: str) -> StripeProvider:
    return provider_at(localstripe_url)


@pytest.fixture
def sdk(localstripe_url: str) -> stripe.StripeClient:
    """Stripe's client itself, for what a customer's browser would do (card numbers)."""
    return stripe.StripeClient(TEST_SECRET_KEY, base_addresses={"api": localstripe_url})


def card(sdk: stripe.StripeClient, number: str) -> str:
    """A payment method for a test card number, made as Stripe.js would make it."""
    method = sdk.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},  # type: ignore[typeddict-item]
        }
    )
    return method.id


# Payments


def test_a_payment_with_stripes_test_payment_method_succeeds(provider: StripeProvider) -> None:
    top_up_id = uuid4()
    payment = provider.create_payment(top_up_id, 2_500, "pm_card_visa")
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.reference.startswith("pi_")
    assert (payment.top_up_id, payment.amount_cents, payment.currency) == (top_up_id, 2_500, "usd")
    assert payment.failure_code is None
    assert abs(payment.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_a_payment_with_a_card_number_made_into_a_method_succeeds(
    provider: StripeProvider, sdk: stripe.StripeClient
) -> None:
    payment = provider.create_payment(uuid4(), 1_000, card(sdk, VISA))
    assert payment.status is PaymentStatus.SUCCEEDED


def test_a_declined_card_fails_with_its_code_and_keeps_its_payment(
    provider: StripeProvider, sdk: stripe.StripeClient
) -> None:
    top_up_id = uuid4()
    payment = provider.create_payment(top_up_id, 1_000, card(sdk, DECLINED_WHEN_CHARGED))
    assert payment.status is PaymentStatus.FAILED
    assert payment.failure_code == "card_declined"
    assert payment.reference.startswith("pi_")
    assert payment.top_up_id == top_up_id
    assert provider.find_payment(payment.reference) == payment


def test_a_card_asking_for_authentication_fails(
    provider: StripeProvider, sdk: stripe.StripeClient
) -> None:
    payment = provider.create_payment(uuid4(), 1_000, card(sdk, AUTHENTICATION_REQUIRED))
    assert payment.status is PaymentStatus.FAILED
    assert payment.failure_code == "authentication_required"
    assert payment.reference.startswith("pi_")


def test_an_unknown_payment_method_fails_without_a_payment(provider: StripeProvider) -> None:
    top_up_id = uuid4()
    payment = provider.create_payment(top_up_id, 1_000, "pm_nobody_made_this")
    assert payment.status is PaymentStatus.FAILED
    assert payment.failure_code == "payment_method_unknown"
    assert payment.reference == ""
    assert payment.top_up_id == top_up_id


def test_a_payment_asked_for_again_is_the_same_payment(
    idempotent_stripe: IdempotentStripe,
) -> None:
    provider = provider_at(idempotent_stripe.url)
    top_up_id = uuid4()
    first = provider.create_payment(top_up_id, 1_500, "pm_card_visa")
    again = provider.create_payment(top_up_id, 1_500, "pm_card_visa")
    other = provider.create_payment(uuid4(), 1_500, "pm_card_visa")
    assert again == first
    assert other.reference != first.reference
    first_key, again_key, other_key = idempotent_stripe.keys_seen
    assert first_key == again_key != other_key
    assert str(top_up_id) in first_key


def test_a_top_up_id_reused_for_another_amount_is_a_provider_error(
    idempotent_stripe: IdempotentStripe,
) -> None:
    provider = provider_at(idempotent_stripe.url)
    top_up_id = uuid4()
    provider.create_payment(top_up_id, 1_500, "pm_card_visa")
    with pytest.raises(PaymentProviderError, match="IdempotencyError"):
        provider.create_payment(top_up_id, 9_999, "pm_card_visa")


def test_a_payment_is_found_by_its_reference(provider: StripeProvider) -> None:
    made = provider.create_payment(uuid4(), 700, "pm_card_visa")
    assert provider.find_payment(made.reference) == made
    assert provider.find_payment("pi_nobody_made_this") is None


def test_payments_are_listed_page_after_page_with_their_top_ups(
    provider: StripeProvider, sdk: stripe.StripeClient
) -> None:
    """More than a page (100), and one payment Prep ES did not make."""
    made = {provider.create_payment(uuid4(), 100 + index, "pm_card_visa") for index in range(101)}
    foreign = sdk.v1.payment_intents.create(
        params={"amount": 300, "currency": "usd", "payment_method_types": ["card"]}
    )
    listed = {payment.reference: payment for payment in provider.payments_since(None)}
    assert made <= set(listed.values())
    assert listed[foreign.id].top_up_id is None
    assert listed[foreign.id].status is PaymentStatus.FAILED


# Refunds and payouts


def test_a_refund_of_part_of_a_payment_is_paid_and_listed(provider: StripeProvider) -> None:
    payment = provider.create_payment(uuid4(), 5_000, "pm_card_visa")
    payout_id = uuid4()
    refund = provider.refund_payment(payout_id, payment.reference, 2_000)
    assert refund.status is TransferStatus.PAID
    assert refund.reference.startswith("re_")
    assert (refund.payout_id, refund.method) == (payout_id, TransferMethod.REFUND)
    assert (refund.amount_cents, refund.currency, refund.failure_code) == (2_000, "usd", None)
    assert refund in set(provider.transfers_since(None))


def test_a_refund_asked_for_again_is_the_same_refund(
    idempotent_stripe: IdempotentStripe,
) -> None:
    provider = provider_at(idempotent_stripe.url)
    payment = provider.create_payment(uuid4(), 5_000, "pm_card_visa")
    payout_id = uuid4()
    first = provider.refund_payment(payout_id, payment.reference, 1_000)
    assert provider.refund_payment(payout_id, payment.reference, 1_000) == first
    refunds_of_payout = [
        transfer for transfer in provider.transfers_since(None) if transfer.payout_id == payout_id
    ]
    assert refunds_of_payout == [first]


def test_a_refund_stripe_refuses_fails_without_a_refund(
    provider: StripeProvider, sdk: stripe.StripeClient
) -> None:
    declined = provider.create_payment(uuid4(), 1_000, card(sdk, DECLINED_WHEN_CHARGED))
    payout_id = uuid4()
    refund = provider.refund_payment(payout_id, declined.reference, 1_000)
    assert refund.status is TransferStatus.FAILED
    assert (refund.reference, refund.payout_id, refund.failure_code) == (
        "",
        payout_id,
        "refund_refused",
    )
    unknown = provider.refund_payment(uuid4(), "pi_nobody_made_this", 1_000)
    assert unknown.status is TransferStatus.FAILED


def test_a_payout_destination_must_be_a_connected_account_id(provider: StripeProvider) -> None:
    provider.check_payout_destination("acct_1PrepEsHost")
    for refused in ("", "acct_", "acct_12-34", "ba_1PrepEsHost", " acct_1PrepEsHost"):
        with pytest.raises(PayoutDestinationRefused):
            provider.check_payout_destination(refused)


def test_a_server_without_connect_cannot_send_payouts(provider: StripeProvider) -> None:
    with pytest.raises(PaymentProviderError, match="HTTP 404"):
        provider.send_payout(uuid4(), "acct_1PrepEsHost", 1_000)


# Reaching Stripe


def test_a_closed_port_is_a_provider_error_naming_no_secret() -> None:
    closed = provider_at(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PaymentProviderError) as refused:
        closed.create_payment(uuid4(), 1_000, "pm_card_visa")
    assert "APIConnectionError" in refused.value.detail
    assert TEST_SECRET_KEY not in refused.value.detail
    with pytest.raises(PaymentProviderError):
        list(closed.payments_since(None))


def test_a_key_stripe_refuses_is_a_provider_error_naming_no_secret(localstripe_url: str) -> None:
    refused_key = "rk_test_not_a_secret_key_localstripe_takes"
    provider = provider_at(localstripe_url, secret_key=refused_key)
    with pytest.raises(PaymentProviderError, match="HTTP 401") as refused:
        provider.find_payment("pi_any")
    assert refused_key not in refused.value.detail


def test_providers_keep_their_own_address(localstripe_url: str) -> None:
    working = provider_at(localstripe_url)
    closed = provider_at(f"http://127.0.0.1:{free_port()}")
    assert working.create_payment(uuid4(), 100, "pm_card_visa").status is PaymentStatus.SUCCEEDED
    with pytest.raises(PaymentProviderError):
        closed.find_payment("pi_any")


# Settings and mode


def test_the_provider_is_made_from_the_settings() -> None:
    settings = Settings(
        payments_provider="stripe",
        stripe_secret_key=SecretStr("sk_live_prep_es"),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        webhook_tolerance_s=60,
    )
    provider = StripeProvider.from_settings(settings)
    assert provider.name == "stripe"
    assert not provider.test_mode
    payload, now = event_payload("customer.created", {"id": "cus_1"}), NOW
    stale = now + timedelta(seconds=61)
    with pytest.raises(NotificationRejected) as rejected:
        provider.read_notification(payload, signed(payload, now), stale)
    assert rejected.value.code == "stale_signature"
    with pytest.raises(ValueError, match="PREP_ES_STRIPE_SECRET_KEY"):
        StripeProvider.from_settings(Settings())


@pytest.mark.parametrize(
    ("secret_key", "test_mode"),
    [("sk_test_1", True), ("rk_test_1", True), ("sk_live_1", False), ("rk_live_1", False)],
)
def test_test_mode_follows_the_key(secret_key: str, test_mode: bool) -> None:
    assert provider_at(None, secret_key=secret_key).test_mode is test_mode


# Notifications, signed as Stripe signs them


def signed(
    payload: bytes, signed_at: datetime, secret: str = WEBHOOK_SECRET, *, extra: str = ""
) -> dict[str, str]:
    """The headers Stripe sends: ``t=<unix time>,v1=<HMAC-SHA256 of "t.payload">``."""
    timestamp = math.floor(signed_at.timestamp())
    signature = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return {"stripe-signature": f"t={timestamp},{extra}v1={signature}"}


def event_payload(event_type: str, subject: dict[str, Any], event_id: str = "evt_1") -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": math.floor(NOW.timestamp()) - 5,
        "livemode": False,
        "data": {"object": subject},
    }
    return json.dumps(event, indent=2).encode()


def read(payload: bytes, headers: dict[str, str] | None = None) -> Any:
    return provider_at(None).read_notification(
        payload, signed(payload, NOW) if headers is None else headers, NOW
    )


TOP_UP_ID = UUID("0b9f1c59-3c57-4d8f-9c4e-2f7d8ba6e001")
PAYOUT_ID = UUID("5a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d")


def intent(status: str, error: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": 2_500,
        "currency": "usd",
        "status": status,
        "metadata": {"top_up_id": str(TOP_UP_ID)},
        "last_payment_error": error,
    }


def refund(status: str, failure_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "re_1",
        "object": "refund",
        "amount": 1_000,
        "currency": "usd",
        "status": status,
        "failure_reason": failure_reason,
        "metadata": {"payout_id": str(PAYOUT_ID)},
    }


def transfer(reversed_: bool, amount_reversed: int | None = None) -> dict[str, Any]:
    return {
        "id": "tr_1",
        "object": "transfer",
        "amount": 4_000,
        "amount_reversed": (4_000 if reversed_ else 0)
        if amount_reversed is None
        else amount_reversed,
        "currency": "usd",
        "destination": "acct_1PrepEsHost",
        "reversed": reversed_,
        "metadata": {"payout_id": str(PAYOUT_ID)},
    }


@pytest.mark.parametrize(
    ("event_type", "subject", "status", "failure_code"),
    [
        ("payment_intent.processing", intent("processing"), PaymentStatus.PROCESSING, None),
        ("payment_intent.succeeded", intent("succeeded"), PaymentStatus.SUCCEEDED, None),
        ("payment_intent.canceled", intent("canceled"), PaymentStatus.CANCELED, None),
        (
            "payment_intent.payment_failed",
            intent(
                "requires_payment_method",
                {"code": "card_declined", "decline_code": "insufficient_funds"},
            ),
            PaymentStatus.FAILED,
            "insufficient_funds",
        ),
        (
            "payment_intent.payment_failed",
            intent(
                "requires_payment_method",
                {"code": "card_declined", "decline_code": "generic_decline"},
            ),
            PaymentStatus.FAILED,
            "card_declined",
        ),
    ],
)
def test_a_payment_notification_says_what_became_of_the_top_up(
    event_type: str, subject: dict[str, Any], status: PaymentStatus, failure_code: str | None
) -> None:
    notification = read(event_payload(event_type, subject, "evt_payment"))
    assert notification.provider == "stripe"
    assert (notification.event_id, notification.event_type) == ("evt_payment", event_type)
    assert notification.occurred_at == NOW - timedelta(seconds=5)
    assert notification.subject is NotificationSubject.PAYMENT
    assert (notification.subject_id, notification.reference) == (TOP_UP_ID, "pi_1")
    assert (notification.amount_cents, notification.currency) == (2_500, "usd")
    assert (notification.status, notification.failure_code) == (status, failure_code)


@pytest.mark.parametrize(
    ("event_type", "subject", "status", "failure_code"),
    [
        ("refund.created", refund("pending"), TransferStatus.PENDING, None),
        ("refund.updated", refund("succeeded"), TransferStatus.PAID, None),
        ("charge.refund.updated", refund("canceled"), TransferStatus.CANCELED, None),
        (
            "refund.failed",
            refund("failed", "lost_or_stolen_card"),
            TransferStatus.FAILED,
            "lost_or_stolen_card",
        ),
        ("refund.failed", refund("pending"), TransferStatus.FAILED, "refund_failed"),
    ],
)
def test_a_refund_notification_says_what_became_of_the_payout(
    event_type: str, subject: dict[str, Any], status: TransferStatus, failure_code: str | None
) -> None:
    notification = read(event_payload(event_type, subject))
    assert notification.subject is NotificationSubject.TRANSFER
    assert (notification.subject_id, notification.reference) == (PAYOUT_ID, "re_1")
    assert (notification.amount_cents, notification.currency) == (1_000, "usd")
    assert (notification.status, notification.failure_code) == (status, failure_code)


@pytest.mark.parametrize(
    ("event_type", "reversed_", "status", "failure_code"),
    [
        ("transfer.created", False, TransferStatus.PAID, None),
        ("transfer.reversed", True, TransferStatus.FAILED, "transfer_reversed"),
    ],
)
def test_a_transfer_notification_says_what_became_of_the_payout(
    event_type: str, reversed_: bool, status: TransferStatus, failure_code: str | None
) -> None:
    notification = read(event_payload(event_type, transfer(reversed_)))
    assert notification.subject is NotificationSubject.TRANSFER
    assert (notification.subject_id, notification.reference) == (PAYOUT_ID, "tr_1")
    assert (notification.amount_cents, notification.currency) == (4_000, "usd")
    assert (notification.status, notification.failure_code) == (status, failure_code)


def test_a_transfer_reversed_in_part_changes_nothing() -> None:
    """The payout was paid; a part coming back is no void of it (which would give the
    host the whole amount back)."""
    notification = read(event_payload("transfer.reversed", transfer(False, 1_000)))
    assert (notification.subject, notification.status) == (None, None)


@pytest.mark.parametrize(
    "mangle",
    [
        {"created": 10**20},
        {"created": -(10**15)},
        {"created": True},
    ],
)
def test_a_signed_event_with_an_impossible_time_is_malformed(mangle: dict[str, Any]) -> None:
    event = json.loads(event_payload("customer.created", {"id": "cus_1"}))
    payload = json.dumps({**event, **mangle}).encode()
    with pytest.raises(NotificationRejected) as rejected:
        read(payload)
    assert rejected.value.code == "malformed_notification"


def test_a_signed_event_nested_past_the_stack_is_malformed() -> None:
    payload = b"[" * 50_000 + b"]" * 50_000
    with pytest.raises(NotificationRejected) as rejected:
        read(payload)
    assert rejected.value.code == "malformed_notification"


@pytest.mark.parametrize("amount", [10**30, True, -1])
def test_an_impossible_amount_is_no_amount(amount: Any) -> None:
    notification = read(
        event_payload("payment_intent.succeeded", {**intent("succeeded"), "amount": amount})
    )
    assert notification.amount_cents is None


def test_another_notification_is_read_but_changes_nothing() -> None:
    notification = read(event_payload("customer.created", {"id": "cus_1", "object": "customer"}))
    assert (notification.event_type, notification.reference) == ("customer.created", "cus_1")
    assert (notification.subject, notification.subject_id, notification.status) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize("metadata", [{}, {"top_up_id": "not-a-uuid"}, {"top_up_id": 7}, None])
def test_a_notification_without_a_prep_es_id_has_no_subject_id(metadata: Any) -> None:
    subject = {**intent("succeeded"), "metadata": metadata}
    notification = read(event_payload("payment_intent.succeeded", subject))
    assert notification.subject is NotificationSubject.PAYMENT
    assert notification.status is PaymentStatus.SUCCEEDED
    assert notification.subject_id is None


def test_a_notification_signed_also_with_an_old_secret_is_read() -> None:
    """While a webhook secret is rolled, Stripe signs with both: any one v1 may match."""
    payload = event_payload("customer.created", {"id": "cus_1"})
    old = signed(payload, NOW, "whsec_old")["stripe-signature"].partition(",")[2]
    assert read(payload, signed(payload, NOW, extra=f"{old},")).event_type == "customer.created"


def test_a_notification_signed_within_the_tolerance_is_read() -> None:
    payload = event_payload("customer.created", {"id": "cus_1"})
    for signed_at in (NOW - timedelta(seconds=TOLERANCE_S), NOW + timedelta(seconds=TOLERANCE_S)):
        assert read(payload, signed(payload, signed_at)).event_id == "evt_1"


def rejection(payload: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(NotificationRejected) as rejected:
        read(payload, headers)
    return rejected.value.code


GOOD_PAYLOAD = event_payload("payment_intent.succeeded", intent("succeeded"))


def test_an_unsigned_notification_is_rejected() -> None:
    assert rejection(GOOD_PAYLOAD, {}) == "signature_missing"
    assert rejection(GOOD_PAYLOAD, {"stripe-signature": ""}) == "signature_missing"


@pytest.mark.parametrize(
    "headers",
    [
        signed(GOOD_PAYLOAD, NOW, "whsec_someone_else"),
        signed(GOOD_PAYLOAD + b" ", NOW),
        {"stripe-signature": signed(GOOD_PAYLOAD, NOW)["stripe-signature"].replace("v1=", "v0=")},
        {"stripe-signature": "v1=" + "0" * 64},
        {"stripe-signature": "nonsense"},
        signed(GOOD_PAYLOAD, NOW, extra="v1=0,v0=0," * 500),
    ],
    ids=["wrong-secret", "other-payload", "other-scheme", "no-timestamp", "nonsense", "too-long"],
)
def test_a_wrongly_signed_notification_is_rejected(headers: dict[str, str]) -> None:
    assert rejection(GOOD_PAYLOAD, headers) == "invalid_signature"


def test_a_payload_that_is_not_utf8_is_rejected() -> None:
    payload = b"\xff\xfe" + GOOD_PAYLOAD
    assert rejection(payload, signed(payload, NOW)) == "invalid_signature"


@pytest.mark.parametrize("offset_s", [-(TOLERANCE_S + 1), TOLERANCE_S + 1, -86_400])
def test_a_notification_signed_outside_the_tolerance_is_rejected(offset_s: int) -> None:
    headers = signed(GOOD_PAYLOAD, NOW + timedelta(seconds=offset_s))
    assert rejection(GOOD_PAYLOAD, headers) == "stale_signature"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"id": "evt_1", "object": "event", "type": "x", "created": 1}',
        json.dumps({"id": "pi_1", "object": "payment_intent", "status": "succeeded"}).encode(),
        event_payload("payment_intent.succeeded", intent("succeeded")).replace(
            b'"event"', b'"charge"'
        ),
    ],
    ids=["not-json", "array", "no-data", "an-object-not-an-event", "not-an-event"],
)
def test_a_signed_payload_that_is_not_an_event_is_rejected(payload: bytes) -> None:
    assert rejection(payload, signed(payload, NOW)) == "malformed_notification"
