"""Top-ups follow the provider: credited only on a confirmed success, once, whatever the
order and number of the provider's notifications."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from uuid import UUID

import pytest

from aggregates.payment_notification import NotificationOutcome
from aggregates.payment_provider import PaymentStatus, ProviderPayment
from aggregates.top_up import TopUp, TopUpStatus
from tests.domain.scenario import CUSTOMER_ID, given, then

REQUESTED_AT = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)

CREATED = datetime(2030, 1, 7, tzinfo=UTC)


def request_events(amount_cents: int = 5000) -> list[TopUp.Event]:
    top_up = TopUp(
        owner_id=CUSTOMER_ID,
        amount_cents=amount_cents,
        payment_method="pm_card_visa",
        provider="sandbox",
        requested_at=REQUESTED_AT,
    )
    return top_up.collect_events()  # type: ignore[return-value]


def requested(amount_cents: int = 5000) -> TopUp:
    return given(*request_events(amount_cents))  # type: ignore[no-any-return]


def payment(status: PaymentStatus, failure_code: str | None = None) -> ProviderPayment:
    return ProviderPayment(
        reference="pi_1",
        top_up_id=UUID(int=1),
        amount_cents=5000,
        currency="usd",
        status=status,
        created_at=CREATED,
        failure_code=failure_code,
    )


def test_a_success_answered_at_once_is_only_processing() -> None:
    top_up = requested()
    top_up.record_payment_created(payment(PaymentStatus.SUCCEEDED))
    then(top_up, (TopUp.TopUpProcessing, {"payment_reference": "pi_1"}))
    assert top_up.status == TopUpStatus.PROCESSING


def test_a_decline_answered_at_once_fails_it() -> None:
    top_up = requested()
    top_up.record_payment_created(payment(PaymentStatus.FAILED, "card_declined"))
    then(
        top_up,
        (
            TopUp.TopUpFailed,
            {"payment_reference": "pi_1", "status": "failed", "failure_code": "card_declined"},
        ),
    )


def test_an_answer_after_a_notification_changes_nothing() -> None:
    top_up = requested()
    top_up.follow_provider(PaymentStatus.SUCCEEDED, "pi_1", 5000, "usd", None)
    top_up.collect_events()
    top_up.record_payment_created(payment(PaymentStatus.PROCESSING))
    then(top_up)


@pytest.mark.parametrize(("amount", "currency"), [(4999, "usd"), (5001, "usd"), (5000, "eur")])
def test_a_notification_for_another_amount_credits_nothing(amount: int, currency: str) -> None:
    top_up = requested()
    outcome = top_up.follow_provider(PaymentStatus.SUCCEEDED, "pi_1", amount, currency, None)
    assert outcome == NotificationOutcome.AMOUNT_MISMATCH
    then(top_up)
    assert top_up.status == TopUpStatus.REQUIRES_PAYMENT


def test_a_notification_for_another_payment_changes_nothing() -> None:
    top_up = requested()
    top_up.record_payment_created(payment(PaymentStatus.PROCESSING))
    top_up.collect_events()
    outcome = top_up.follow_provider(PaymentStatus.SUCCEEDED, "pi_other", 5000, "usd", None)
    assert outcome == NotificationOutcome.REFERENCE_MISMATCH
    then(top_up)


STATUSES = [PaymentStatus.PROCESSING, PaymentStatus.SUCCEEDED, PaymentStatus.FAILED]


@pytest.mark.parametrize(
    "order",
    [
        *itertools.permutations([PaymentStatus.PROCESSING, PaymentStatus.SUCCEEDED]),
        *itertools.permutations([PaymentStatus.PROCESSING, PaymentStatus.FAILED]),
        (PaymentStatus.SUCCEEDED, PaymentStatus.SUCCEEDED, PaymentStatus.PROCESSING),
    ],
)
def test_any_order_ends_the_same_and_succeeds_once(order: tuple[PaymentStatus, ...]) -> None:
    history = request_events()
    top_up = given(*history)
    applied_successes = 0
    for status in order:
        outcome = top_up.follow_provider(status, "pi_1", 5000, "usd", None)
        if outcome == NotificationOutcome.APPLIED and top_up.status == TopUpStatus.SUCCEEDED:
            applied_successes += 1
    final = TopUpStatus.SUCCEEDED if PaymentStatus.SUCCEEDED in order else TopUpStatus.FAILED
    assert top_up.status == final
    assert applied_successes == (1 if final == TopUpStatus.SUCCEEDED else 0)
    assert given(*history, *top_up.collect_events()).status == final


def test_a_confirmed_payment_wins_over_an_earlier_failure() -> None:
    """The provider took the money: that is the fact, whatever it said before."""
    top_up = requested()
    top_up.follow_provider(PaymentStatus.FAILED, "pi_1", 5000, "usd", "card_declined")
    outcome = top_up.follow_provider(PaymentStatus.SUCCEEDED, "pi_1", 5000, "usd", None)
    assert outcome == NotificationOutcome.APPLIED
    assert top_up.status == TopUpStatus.SUCCEEDED
    assert top_up.follow_provider(PaymentStatus.FAILED, "pi_1", 5000, "usd", None) == (
        NotificationOutcome.ALREADY_KNOWN
    )
