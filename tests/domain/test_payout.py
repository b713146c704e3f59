"""Payouts are two-phase: pending, then posted or voided exactly once, whatever the
order and number of the provider's notifications."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from uuid import UUID

import pytest

from aggregates.payment_notification import NotificationOutcome
from aggregates.payment_provider import ProviderTransfer, TransferMethod, TransferStatus
from aggregates.payout import Payout, PayoutSettlement, PayoutStatus
from tests.domain.scenario import HOST_ID, given, then

REQUESTED_AT = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)


def requested() -> Payout:
    payout = Payout(
        owner_id=HOST_ID,
        amount_cents=4000,
        method=TransferMethod.PAYOUT.value,
        destination="acct_1",
        top_up_id=None,
        payment_reference=None,
        provider="sandbox",
        requested_at=REQUESTED_AT,
    )
    return given(*payout.collect_events())  # type: ignore[no-any-return]


def transfer(status: TransferStatus) -> ProviderTransfer:
    return ProviderTransfer(
        reference="tr_1",
        payout_id=UUID(int=1),
        method=TransferMethod.PAYOUT,
        amount_cents=4000,
        currency="usd",
        status=status,
        created_at=datetime(2030, 1, 7, tzinfo=UTC),
        failure_code="account_closed" if status == TransferStatus.FAILED else None,
    )


def test_a_pending_answer_records_the_transfer() -> None:
    payout = requested()
    assert payout.record_transfer_created(transfer(TransferStatus.PENDING)) is None
    then(payout, (Payout.PayoutSubmitted, {"transfer_reference": "tr_1"}))
    assert payout.status == PayoutStatus.PENDING


def test_a_refusal_answered_at_once_voids_it() -> None:
    payout = requested()
    assert payout.record_transfer_created(transfer(TransferStatus.FAILED)) == PayoutSettlement.VOID
    assert payout.status == PayoutStatus.FAILED
    assert payout.failure_code == "account_closed"


END_STATES = [TransferStatus.PAID, TransferStatus.FAILED, TransferStatus.CANCELED]


@pytest.mark.parametrize(
    "order",
    [
        order
        for final in END_STATES
        for order in itertools.permutations([TransferStatus.PENDING, final, final])
    ],
)
def test_any_order_settles_once(order: tuple[TransferStatus, ...]) -> None:
    payout = requested()
    settlements = []
    for status in order:
        _, settlement = payout.follow_provider(status, "tr_1", 4000, "usd", None)
        if settlement is not None:
            settlements.append(settlement)
    final = next(status for status in order if status != TransferStatus.PENDING)
    expected = PayoutSettlement.POST if final == TransferStatus.PAID else PayoutSettlement.VOID
    assert settlements == [expected]
    assert payout.status.value == final.value


def test_a_failure_after_paid_is_recorded_and_changes_nothing() -> None:
    payout = requested()
    payout.follow_provider(TransferStatus.PAID, "tr_1", 4000, "usd", None)
    payout.collect_events()
    outcome, settlement = payout.follow_provider(TransferStatus.FAILED, "tr_1", 4000, "usd", None)
    assert (outcome, settlement) == (NotificationOutcome.CONTRADICTS_FINAL_STATE, None)
    then(payout)
    assert payout.status == PayoutStatus.PAID


def test_another_amount_changes_nothing() -> None:
    payout = requested()
    outcome, settlement = payout.follow_provider(TransferStatus.PAID, "tr_1", 3999, "usd", None)
    assert (outcome, settlement) == (NotificationOutcome.AMOUNT_MISMATCH, None)
    assert payout.is_pending
