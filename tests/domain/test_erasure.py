"""What blocks an erasure, and the kitchens it takes off the market."""

from __future__ import annotations

from uuid import UUID

import pytest

from aggregates.account import Account
from aggregates.erasure import (
    BLOCKERS_LISTED_MAX,
    HOST_ERASED_REASON,
    ErasureBlocker,
    balance_blocker,
    booking_blocker,
    check_erasable,
    payout_blocker,
    top_up_blocker,
    withdraw_kitchens,
)
from aggregates.errors import ErasureBlocked
from aggregates.kitchen import Kitchen
from aggregates.payment_provider import (
    PaymentStatus,
    ProviderPayment,
    TransferMethod,
)
from aggregates.payout import Payout
from aggregates.top_up import TopUp
from tests.domain.scenario import (
    CUSTOMER_ID,
    HOST_ID,
    NOW,
    booking_requested,
    compliant_kitchen,
    confirmed_booking,
    funded_account,
    given,
    kitchen_created,
    then,
    then_nothing,
)

STRANGER_ID = UUID(int=99)


def test_an_empty_account_blocks_nothing_and_money_on_it_does() -> None:
    assert balance_blocker(Account(owner_id=CUSTOMER_ID)) is None
    account = given(*funded_account(12_50))
    account.place_hold(UUID(int=7), 2_50)
    blocker = balance_blocker(account)
    assert blocker == ErasureBlocker(
        "balance", {"kind": "balance", "available": "10.00", "held": "2.50"}
    )


def test_an_active_booking_blocks_its_customer_and_its_host_and_no_one_else() -> None:
    pending = given(*booking_requested())
    confirmed = given(*confirmed_booking())
    for booking, status in ((pending, "pending"), (confirmed, "confirmed")):
        for person, role in ((CUSTOMER_ID, "customer"), (HOST_ID, "host")):
            assert booking_blocker(booking, person) == ErasureBlocker(
                "booking",
                {"kind": "booking", "id": str(booking.id), "as": role, "status": status},
            )
        assert booking_blocker(booking, STRANGER_ID) is None


def test_a_booking_that_ended_blocks_nothing() -> None:
    booking = given(*confirmed_booking())
    booking.cancel(by_role="host", reason=None, now=NOW)
    assert booking_blocker(booking, CUSTOMER_ID) is None
    assert booking_blocker(booking, HOST_ID) is None


def _payout(method: TransferMethod) -> Payout:
    return Payout(
        owner_id=CUSTOMER_ID,
        amount_cents=30_00,
        method=method.value,
        destination=None,
        top_up_id=None,
        payment_reference=None,
        provider="sandbox",
        requested_at=NOW,
    )


@pytest.mark.parametrize(
    ("method", "kind"), [(TransferMethod.PAYOUT, "payout"), (TransferMethod.REFUND, "withdrawal")]
)
def test_a_pending_payout_or_withdrawal_blocks(method: TransferMethod, kind: str) -> None:
    payout = _payout(method)
    assert payout_blocker(payout) == ErasureBlocker(
        kind, {"kind": kind, "id": str(payout.id), "amount": "30.00"}
    )


def _top_up() -> TopUp:
    return TopUp(
        owner_id=CUSTOMER_ID,
        amount_cents=20_00,
        payment_method="pm_card_visa",
        provider="sandbox",
        requested_at=NOW,
    )


def test_a_top_up_blocks_until_the_provider_settles_it() -> None:
    top_up = _top_up()
    assert top_up_blocker(top_up) == ErasureBlocker(
        "top_up",
        {"kind": "top_up", "id": str(top_up.id), "amount": "20.00", "status": "requires_payment"},
    )
    top_up.record_payment_created(
        ProviderPayment("pi_1", top_up.id, 20_00, "usd", PaymentStatus.PROCESSING, NOW)
    )
    blocker = top_up_blocker(top_up)
    assert blocker is not None and blocker.described["status"] == "processing"
    top_up.follow_provider(PaymentStatus.FAILED, "pi_1", 20_00, "usd", "card_declined")
    assert top_up_blocker(top_up) is None


def test_blockers_refuse_the_erasure_naming_each_unless_forced() -> None:
    blockers = [
        ErasureBlocker("booking", {"kind": "booking", "id": str(UUID(int=index))})
        for index in range(BLOCKERS_LISTED_MAX + 3)
    ]
    with pytest.raises(ErasureBlocked) as raised:
        check_erasable(blockers, forced=False)
    assert raised.value.code == "erasure_blocked"
    assert raised.value.blockers == [b.described for b in blockers[:BLOCKERS_LISTED_MAX]]
    assert raised.value.blockers_total == BLOCKERS_LISTED_MAX + 3
    check_erasable(blockers, forced=True)
    check_erasable([], forced=False)


def test_the_hosts_kitchens_leave_the_market_each_as_its_status_allows() -> None:
    published = given(*compliant_kitchen())
    under_review = given(*compliant_kitchen(published=False))
    under_review.submit_for_review()
    under_review.collect_events()
    draft = given(*kitchen_created())
    suspended = given(*compliant_kitchen())
    suspended.suspend("audit")
    suspended.collect_events()

    withdrawn = withdraw_kitchens([published, under_review, draft, suspended], HOST_ID)

    assert withdrawn == [published.id, under_review.id]
    then(published, (Kitchen.KitchenSuspended, {"reason": HOST_ERASED_REASON}))
    then(under_review, (Kitchen.KitchenRejected, {"reason": HOST_ERASED_REASON}))
    then_nothing(draft)
    then_nothing(suspended)
