"""The payment provider's webhook route over HTTP, on each backend: a notification signed
by the sandbox is recorded and applied once, however often and in whatever order it
comes; one unsigned, tampered with, stale, meant for another provider, malformed or too
large is refused and records nothing.

Notifications are taken from the sandbox without being handed over
(``tests.api.payments``) and posted here as the provider would post them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from prep_es.app import REQUEST_BODY_BYTES_MAX
from prep_es.payments.sandbox import SIGNATURE_HEADER
from tests.api.conftest import User, assert_problem
from tests.api.payments import (
    RACERS,
    Notification,
    PaymentsApi,
    balance,
    open_payments_api,
    race,
)


@pytest.fixture(scope="module")
def payments(module_database_url: str) -> Iterator[PaymentsApi]:
    with open_payments_api(module_database_url) as opened:
        yield opened


def topped_up(payments: PaymentsApi, amount: str) -> tuple[User, dict[str, Any], Notification]:
    """A customer's top-up with the test card, and the one notification confirming it,
    not handed over yet."""
    customer = payments.api.register("customer")
    started = payments.api.ok(payments.top_up(customer, amount), 202)
    [notification] = payments.capture()
    assert b"payment_intent.succeeded" in notification[0]
    return customer, started, notification


def test_a_notification_delivered_five_times_credits_once(payments: PaymentsApi) -> None:
    customer, started, (payload, headers) = topped_up(payments, "25.00")
    answers = [payments.post_notification(payload, headers) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200] * 5
    received = [answer.json() for answer in answers]
    assert [answer["duplicate"] for answer in received] == [False, True, True, True, True]
    assert {answer["outcome"] for answer in received} == {"applied"}
    assert len({answer["id"] for answer in received}) == 1
    first = received[0]
    assert int(answers[0].headers["X-Prep-Position"]) == first["position"] > started["position"]
    assert balance(payments, customer, first["position"]) == "25.00"
    assert payments.account_of(customer).balance_cents == 2500
    top_up = payments.read(f"/accounts/me/top-ups/{started['id']}", customer, first["position"])
    assert (top_up["status"], top_up["credited"]) == ("succeeded", True)


def tampered(payload: bytes) -> bytes:
    changed = payload.replace(b'"amount":2500,', b'"amount":2500000,')
    assert changed != payload
    return changed


@pytest.mark.parametrize(
    ("forge", "code"),
    [
        (lambda payload, headers: (payload, {}), "signature_missing"),
        (lambda payload, headers: (payload, {SIGNATURE_HEADER: ""}), "signature_missing"),
        (lambda payload, headers: (tampered(payload), headers), "invalid_signature"),
        (lambda payload, headers: (payload, {SIGNATURE_HEADER: "t=1,v1=00"}), "invalid_signature"),
        (lambda payload, headers: (payload, {SIGNATURE_HEADER: "garbage"}), "invalid_signature"),
        (
            lambda payload, headers: (payload, {SIGNATURE_HEADER: "t=1," + "v1=0," * 1000}),
            "invalid_signature",
        ),
    ],
    ids=["unsigned", "empty", "tampered", "wrong", "malformed-header", "huge-header"],
)
def test_a_forged_notification_is_400_and_records_nothing(
    payments: PaymentsApi, forge: Any, code: str
) -> None:
    customer, _, (payload, headers) = topped_up(payments, "25.00")
    position = payments.position()
    forged_payload, forged_headers = forge(payload, headers)
    assert_problem(payments.post_notification(forged_payload, forged_headers), 400, code)
    assert payments.position() == position
    assert payments.account_of(customer).balance_cents == 0
    # The provider's own delivery is taken afterwards: nothing was marked as seen.
    received = payments.api.ok(payments.post_notification(payload, headers))
    assert (received["outcome"], received["duplicate"]) == ("applied", False)
    assert payments.account_of(customer).balance_cents == 2500


@pytest.mark.parametrize("provider", ["stripe", "paypal"])
def test_a_notification_for_another_provider_is_400(payments: PaymentsApi, provider: str) -> None:
    customer, _, (payload, headers) = topped_up(payments, "10.00")
    position = payments.position()
    answer = payments.post_notification(payload, headers, provider=provider)
    assert_problem(answer, 400, "wrong_provider")
    assert payments.position() == position
    assert payments.account_of(customer).balance_cents == 0


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b"{}", b'{"id": "evt_1", "type": "payment_intent.succeeded"}', b""],
    ids=["text", "array", "empty-object", "no-data", "empty"],
)
def test_a_signed_body_that_is_no_notification_is_400(
    payments: PaymentsApi, payload: bytes
) -> None:
    position = payments.position()
    signed = payments.courier.notification_headers(payload)
    assert_problem(payments.post_notification(payload, signed), 400, "malformed_notification")
    assert payments.position() == position


def test_a_body_too_large_is_413(payments: PaymentsApi) -> None:
    payload = b'{"id": "' + b"x" * REQUEST_BODY_BYTES_MAX + b'"}'
    position = payments.position()
    answer = payments.post_notification(payload, payments.courier.notification_headers(payload))
    assert_problem(answer, 413, "request_too_large")
    assert payments.position() == position


def test_a_replayed_notification_signed_too_long_ago_is_400(payments: PaymentsApi) -> None:
    customer, _, (payload, headers) = topped_up(payments, "10.00")
    signed_at_s = int(headers[SIGNATURE_HEADER].partition(",")[0].removeprefix("t="))
    tolerance_s = payments.api.settings.webhook_tolerance_s
    clock = payments.api.clock
    clock.advance(timedelta(seconds=signed_at_s + tolerance_s + 1 - clock.now.timestamp()))
    position = payments.position()
    assert_problem(payments.post_notification(payload, headers), 400, "stale_signature")
    assert payments.position() == position
    assert payments.account_of(customer).balance_cents == 0
    # The provider tries again later, signing it afresh.
    fresh = payments.courier.notification_headers(payload)
    received = payments.api.ok(payments.post_notification(payload, fresh))
    assert (received["outcome"], received["duplicate"]) == ("applied", False)
    assert payments.account_of(customer).balance_cents == 1000


def test_processing_told_after_succeeded_leaves_the_top_up_succeeded(
    payments: PaymentsApi,
) -> None:
    customer = payments.api.register("customer")
    started = payments.api.ok(
        payments.top_up(customer, "7.00", "pm_sandbox_succeeds_after_delay"), 202
    )
    assert started["status"] == "processing"
    processing, succeeded = payments.capture()
    assert b"payment_intent.processing" in processing[0]
    assert b"payment_intent.succeeded" in succeeded[0]
    first = payments.api.ok(payments.post_notification(*succeeded))
    late = payments.api.ok(payments.post_notification(*processing))
    assert (first["outcome"], first["duplicate"]) == ("applied", False)
    assert (late["outcome"], late["duplicate"]) == ("already_known", False)
    position = max(first["position"], late["position"])
    top_up = payments.read(f"/accounts/me/top-ups/{started['id']}", customer, position)
    assert (top_up["status"], top_up["credited"]) == ("succeeded", True)
    assert balance(payments, customer, position) == "7.00"
    assert payments.account_of(customer).balance_cents == 700


def test_a_notification_racing_itself_is_applied_once(payments: PaymentsApi) -> None:
    customer, _, (payload, headers) = topped_up(payments, "33.00")
    answers = race([lambda: payments.post_notification(payload, headers) for _ in range(RACERS)])
    assert [answer.status_code for answer in answers] == [200] * RACERS, [
        answer.text for answer in answers
    ]
    received = [answer.json() for answer in answers]
    assert sorted(answer["duplicate"] for answer in received) == [False] + [True] * (RACERS - 1)
    assert {answer["outcome"] for answer in received} == {"applied"}
    position = max(answer["position"] for answer in received)
    assert balance(payments, customer, position) == "33.00"
    assert payments.account_of(customer).balance_cents == 3300
