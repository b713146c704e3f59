"""Accounts: deposits, payouts, holds (place, adjust, release, capture), payments."""

from __future__ import annotations

from uuid import NAMESPACE_OID, UUID, uuid5

import pytest

from aggregates.account import (
    PAYMENTS_ACCOUNT_ID,
    PLATFORM_REVENUE_ACCOUNT_ID,
    Account,
    account_id_for,
)
from aggregates.base import DomainEvent
from aggregates.errors import HoldNotPending, InsufficientFunds, InvalidRequest
from aggregates.policies import AMOUNT_CENTS_MAX, settle
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


def test_deposit_credits_the_balance() -> None:
    account = given(*funded_account(10000))
    account.deposit(ENTRY, 2550)
    then(account, (Account.FundsDeposited, {"entry_id": ENTRY, "amount_cents": 2550}))
    assert account.balance_cents == account.available_cents == 12550


@pytest.mark.parametrize("amount", [0, -1, -10000, AMOUNT_CENTS_MAX + 1])
def test_deposit_needs_a_positive_amount(amount: int) -> None:
    account = given(*funded_account())
    with refused(account, InvalidRequest, "invalid_amount"):
        account.deposit(ENTRY, amount)


def test_payout_up_to_available() -> None:
    account = given(*with_hold(10000, 6000))
    account.request_payout(ENTRY, 4000)
    then(account, (Account.PayoutRequested, {"entry_id": ENTRY, "amount_cents": 4000}))
    assert (account.balance_cents, account.held_cents, account.available_cents) == (6000, 6000, 0)


def test_payout_beyond_available_is_insufficient_funds() -> None:
    account = given(*with_hold(10000, 6000))
    with refused(account, InsufficientFunds, "insufficient_funds"):
        account.request_payout(ENTRY, 4001)


@pytest.mark.parametrize("amount", [0, -5])
def test_payout_needs_a_positive_amount(amount: int) -> None:
    account = given(*funded_account())
    with refused(account, InvalidRequest, "invalid_amount"):
        account.request_payout(ENTRY, amount)


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
