"""Accounts: top-ups credited, payouts and refunds (reserved, posted, voided), holds
(place, adjust, release, capture), payments."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import NAMESPACE_OID, UUID, uuid5

import pytest

from aggregates.account import (
    PAYMENTS_ACCOUNT_ID,
    PLATFORM_REVENUE_ACCOUNT_ID,
    Account,
    TopUpLimits,
    account_id_for,
)
from aggregates.base import DomainEvent
from aggregates.errors import HoldNotPending, InsufficientFunds, InvalidRequest, StateConflict
from aggregates.policies import settle
from tests.domain.scenario import CUSTOMER_ID, HOST_ID, funded_account, given, refused, then

ENTRY = uuid5(NAMESPACE_OID, "entry")
HOLD = uuid5(NAMESPACE_OID, "hold")
OTHER_HOLD = uuid5(NAMESPACE_OID, "other-hold")
HOST_ACCOUNT = account_id_for(HOST_ID)


def with_hold(balance: int = 10000, hold: int = 6000) -> list[DomainEvent]:
    history = funded_account(balance)
    account = given(*history)
    account.place_hold(HOLD, hold)
    return [*history, *account.collect_events()]


def test_account_id_is_derived_from_its_owner() -> None:
    account = Account(owner_id=CUSTOMER_ID)
    assert account.id == account_id_for(CUSTOMER_ID) == Account(owner_id=CUSTOMER_ID).id
    assert account.id != account_id_for(HOST_ID)
    assert len({PAYMENTS_ACCOUNT_ID, PLATFORM_REVENUE_ACCOUNT_ID, account.id}) == 3
    then(account, (Account.AccountOpened, {"owner_id": CUSTOMER_ID}))
    assert (account.balance_cents, account.held_cents, account.available_cents) == (0, 0, 0)


def test_a_confirmed_top_up_credits_the_balance() -> None:
    account = given(*funded_account(10000))
    account.credit_top_up(ENTRY, 2550, "pi_2")
    then(
        account,
        (
            Account.TopUpCredited,
            {"top_up_id": ENTRY, "amount_cents": 2550, "payment_reference": "pi_2"},
        ),
    )
    assert account.balance_cents == account.available_cents == 12550


def test_a_top_up_is_credited_once() -> None:
    account = given(*funded_account(10000))
    account.credit_top_up(ENTRY, 2550, "pi_2")
    with pytest.raises(AssertionError):
        account.credit_top_up(ENTRY, 2550, "pi_2")


LIMITS = TopUpLimits(
    per_top_up_cents_min=50,
    per_top_up_cents_max=10_000,
    per_day_cents_max=25_000,
    per_day_count_max=5,
)
DAY = date(2030, 1, 7)


def test_top_ups_count_towards_the_days_limit() -> None:
    account = given(*funded_account())
    account.start_top_up(UUID(int=11), 10_000, DAY, LIMITS)
    account.start_top_up(UUID(int=12), 10_000, DAY, LIMITS)
    with refused(account, InvalidRequest, "daily_top_up_limit_exceeded"):
        account.start_top_up(UUID(int=13), 5_001, DAY, LIMITS)
    account.start_top_up(UUID(int=14), 5_000, DAY, LIMITS)
    assert account.top_up_cents_on(DAY) == 25_000
    account.start_top_up(UUID(int=15), 10_000, DAY + timedelta(days=1), LIMITS)
    assert account.top_up_cents_on(DAY + timedelta(days=1)) == 10_000
    assert account.top_up_cents_on(DAY) == 0


def test_top_ups_are_counted_each_day() -> None:
    account = given(*funded_account())
    for number in range(5):
        account.start_top_up(UUID(int=30 + number), 50, DAY, LIMITS)
    with refused(account, InvalidRequest, "daily_top_up_count_exceeded"):
        account.start_top_up(UUID(int=40), 50, DAY, LIMITS)
    account.start_top_up(UUID(int=41), 50, DAY + timedelta(days=1), LIMITS)


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (0, "invalid_amount"),
        (-1, "invalid_amount"),
        (49, "top_up_below_minimum"),
        (10_001, "top_up_limit_exceeded"),
    ],
)
def test_a_top_up_is_positive_and_within_the_limit(amount: int, code: str) -> None:
    account = given(*funded_account())
    with refused(account, InvalidRequest, code):
        account.start_top_up(UUID(int=11), amount, DAY, LIMITS)


def test_a_payout_is_out_of_reach_at_once_then_posted() -> None:
    account = given(*with_hold(10000, 6000))
    account.reserve_payout(ENTRY, 4000)
    then(
        account,
        (Account.PayoutReserved, {"payout_id": ENTRY, "amount_cents": 4000, "top_up_id": None}),
    )
    assert (account.balance_cents, account.held_cents, account.available_cents) == (6000, 6000, 0)
    account.post_payout(ENTRY)
    then(account, (Account.PayoutPosted, {"payout_id": ENTRY, "amount_cents": 4000}))
    assert account.balance_cents == 6000
    with pytest.raises(AssertionError):
        account.void_payout(ENTRY, None)


def test_a_voided_payout_comes_back() -> None:
    account = given(*funded_account(10000))
    account.reserve_payout(ENTRY, 4000)
    account.void_payout(ENTRY, None)
    assert account.balance_cents == account.available_cents == 10000
    with pytest.raises(AssertionError):
        account.post_payout(ENTRY)


def test_payout_beyond_available_is_insufficient_funds() -> None:
    account = given(*with_hold(10000, 6000))
    with refused(account, InsufficientFunds, "insufficient_funds"):
        account.reserve_payout(ENTRY, 4001)


@pytest.mark.parametrize("amount", [0, -5])
def test_payout_needs_a_positive_amount(amount: int) -> None:
    account = given(*funded_account())
    with refused(account, InvalidRequest, "invalid_amount"):
        account.reserve_payout(ENTRY, amount)


def test_a_payout_needs_a_destination() -> None:
    account = given(*funded_account())
    with refused(account, StateConflict, "payout_destination_missing"):
        account.check_payout_destination()
    account.set_payout_destination("acct_1")
    account.set_payout_destination("acct_1")  # the same again records nothing
    then(account, (Account.PayoutDestinationSet, {"destination": "acct_1"}))
    assert account.check_payout_destination() == "acct_1"


def test_withdrawals_refund_the_newest_top_ups_first() -> None:
    account = given(*funded_account(10000))  # top-up "top-up", 100.00
    newer = UUID(int=21)
    account.credit_top_up(newer, 3000, "pi_newer")
    plans = account.plan_refunds(5000)
    assert [(plan.payment_reference, plan.amount_cents) for plan in plans] == [
        ("pi_newer", 3000),
        ("pi_funding", 2000),
    ]
    for number, plan in enumerate(plans):
        account.reserve_refund(UUID(int=100 + number), plan)
    assert account.available_cents == 8000
    # A refund that fails makes its top-up refundable again.
    account.void_payout(UUID(int=100), newer)
    assert account.plan_refunds(4000)[0].payment_reference == "pi_newer"


def test_money_from_no_top_up_is_not_refundable() -> None:
    account = given(*funded_account(1000))
    account.receive_payment(HOLD, account_id_for(HOST_ID), 500)
    with refused(account, StateConflict, "not_refundable"):
        account.plan_refunds(1500)
    with refused(account, InsufficientFunds, "insufficient_funds"):
        account.plan_refunds(1501)


def test_place_hold_reserves_available_funds() -> None:
    account = given(*funded_account(10000))
    account.place_hold(HOLD, 10000)
    then(account, (Account.HoldPlaced, {"hold_id": HOLD, "amount_cents": 10000}))
    assert (account.balance_cents, account.held_cents, account.available_cents) == (10000, 10000, 0)


def test_place_hold_beyond_available_is_insufficient_funds() -> None:
    account = given(*with_hold(10000, 6000))
    with refused(account, InsufficientFunds, "insufficient_funds"):
        account.place_hold(OTHER_HOLD, 4001)


def test_place_the_same_hold_twice_is_refused() -> None:
    account = given(*with_hold(10000, 1000))
    with refused(account, InvalidRequest, "hold_exists"):
        account.place_hold(HOLD, 1000)


def test_adjust_hold_up_within_available() -> None:
    account = given(*with_hold(10000, 6000))
    account.adjust_hold(HOLD, 10000)
    then(
        account,
        (
            Account.HoldAdjusted,
            {"hold_id": HOLD, "amount_cents": 10000, "previous_amount_cents": 6000},
        ),
    )
    assert (account.held_cents, account.available_cents) == (10000, 0)


def test_adjust_hold_up_beyond_available_is_insufficient_funds() -> None:
    account = given(*with_hold(10000, 6000))
    with refused(account, InsufficientFunds, "insufficient_funds"):
        account.adjust_hold(HOLD, 10001)


def test_adjust_hold_down() -> None:
    account = given(*with_hold(10000, 6000))
    account.adjust_hold(HOLD, 2500)
    then(
        account,
        (
            Account.HoldAdjusted,
            {"hold_id": HOLD, "amount_cents": 2500, "previous_amount_cents": 6000},
        ),
    )
    assert (account.balance_cents, account.held_cents, account.available_cents) == (
        10000,
        2500,
        7500,
    )


def test_adjust_hold_to_the_same_amount_records_nothing() -> None:
    account = given(*with_hold(10000, 6000))
    account.adjust_hold(HOLD, 6000)
    then(account)


def test_adjust_an_unknown_hold_is_hold_not_pending() -> None:
    account = given(*with_hold())
    with refused(account, HoldNotPending, "hold_not_pending"):
        account.adjust_hold(OTHER_HOLD, 100)


def test_release_hold_returns_its_amount() -> None:
    account = given(*with_hold(10000, 6000))
    assert account.release_hold(HOLD) == 6000
    then(account, (Account.HoldReleased, {"hold_id": HOLD, "amount_cents": 6000}))
    assert (account.balance_cents, account.held_cents, account.available_cents) == (10000, 0, 10000)
    assert account.holds == {}


def released() -> list[DomainEvent]:
    history = with_hold(10000, 6000)
    account = given(*history)
    account.release_hold(HOLD)
    return [*history, *account.collect_events()]


def captured() -> list[DomainEvent]:
    history = with_hold(10000, 6000)
    account = given(*history)
    account.capture_hold(HOLD, settle(6000, 6000, 1000), HOST_ACCOUNT)
    return [*history, *account.collect_events()]


@pytest.mark.parametrize("history", [released, captured])
def test_release_after_settling_is_hold_not_pending(history: object) -> None:
    account = given(*history())  # type: ignore[operator]
    with refused(account, HoldNotPending, "hold_not_pending"):
        account.release_hold(HOLD)


@pytest.mark.parametrize("history", [released, captured])
def test_capture_after_settling_is_hold_not_pending(history: object) -> None:
    account = given(*history())  # type: ignore[operator]
    with refused(account, HoldNotPending, "hold_not_pending"):
        account.capture_hold(HOLD, settle(6000, 3000, 1000), HOST_ACCOUNT)


def test_capture_never_placed_is_hold_not_pending() -> None:
    account = given(*funded_account())
    with refused(account, HoldNotPending, "hold_not_pending"):
        account.capture_hold(HOLD, settle(100, 100, 1000), HOST_ACCOUNT)


def test_capture_in_part_pays_the_host_less_commission_and_releases_the_rest() -> None:
    account = given(*with_hold(10000, 6001))
    account.capture_hold(HOLD, settle(6001, 3000, 1000), HOST_ACCOUNT)
    then(
        account,
        (
            Account.HoldCaptured,
            {
                "hold_id": HOLD,
                "captured_cents": 3000,
                "released_cents": 3001,
                "payee_account_id": HOST_ACCOUNT,
                "payee_cents": 2700,
                "commission_cents": 300,
            },
        ),
    )
    assert (account.balance_cents, account.held_cents, account.available_cents) == (7000, 0, 7000)
    assert account.holds == {}


def test_capture_in_full_leaves_other_holds_alone() -> None:
    history = with_hold(10000, 6000)
    account = given(*history)
    account.place_hold(OTHER_HOLD, 1000)
    account.collect_events()
    account.capture_hold(HOLD, settle(6000, 6000, 1000), HOST_ACCOUNT)
    then(
        account,
        (
            Account.HoldCaptured,
            {
                "hold_id": HOLD,
                "captured_cents": 6000,
                "released_cents": 0,
                "payee_account_id": HOST_ACCOUNT,
                "payee_cents": 5400,
                "commission_cents": 600,
            },
        ),
    )
    assert (account.balance_cents, account.held_cents, account.available_cents) == (
        4000,
        1000,
        3000,
    )
    assert account.holds == {str(OTHER_HOLD): 1000}


def test_receive_payment_credits_the_payee() -> None:
    account = given(*funded_account(0 + 1, owner_id=HOST_ID))
    payer = account_id_for(CUSTOMER_ID)
    account.receive_payment(HOLD, payer, 5400)
    then(
        account,
        (
            Account.PaymentReceived,
            {"hold_id": HOLD, "payer_account_id": payer, "amount_cents": 5400},
        ),
    )
    assert account.balance_cents == account.available_cents == 5401


def test_receive_a_zero_payment_records_nothing() -> None:
    account = given(*funded_account(owner_id=HOST_ID))
    account.receive_payment(HOLD, account_id_for(CUSTOMER_ID), 0)
    then(account)


def test_ids_of_system_accounts_are_stable() -> None:
    assert isinstance(PAYMENTS_ACCOUNT_ID, UUID)
    assert PAYMENTS_ACCOUNT_ID != PLATFORM_REVENUE_ACCOUNT_ID
