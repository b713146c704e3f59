"""Accounts: a double-entry ledger in integer cents.

Every user has one account (id derived from the user id). Money moves in entries that
debit one account and credit another:

    deposit       payments (external) → user
    payout        user → payments (external)
    capture       customer → host (the host's share) and customer → platform revenue

The two system accounts, ``payments`` and ``platform_revenue``, have no invariant to
protect (payments may go negative, revenue only grows), so they are not aggregates:
their side of an entry is recorded as the counter account of the user account's event,
and their balances are derived from those events. That keeps every deposit and every
capture off a single hot aggregate. User-to-user movements (customer → host) are
recorded on both accounts, saved in one transaction.

A hold reserves part of a balance for a booking: ``available = balance - held``.
Each hold ends exactly once, captured (in part) or released.
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated, derived_id
from aggregates.errors import HoldNotPending, InsufficientFunds, InvalidRequest
from aggregates.policies import Settlement, check_positive_amount, format_money

SNAPSHOT_INTERVAL = 100
PAYMENTS_ACCOUNT_ID = derived_id("system-account", "payments")
PLATFORM_REVENUE_ACCOUNT_ID = derived_id("system-account", "platform_revenue")
SYSTEM_ACCOUNT_NAMES = {
    PAYMENTS_ACCOUNT_ID: "payments",
    PLATFORM_REVENUE_ACCOUNT_ID: "platform_revenue",
}


def account_id_for(user_id: UUID) -> UUID:
    return derived_id("account", user_id)


class Account(Aggregate):
    """A user's money: balance, holds, and the entries that change them.

    State is JSON-native (string keys, ints) so snapshots round-trip exactly."""

    TOPIC: ClassVar[str] = "Account"

    class Event(Aggregate.Event):
        pass

    class AccountOpened(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "Account.AccountOpened"
        owner_id: UUID

    class FundsDeposited(Event):
        """Credit this account, debit ``payments``."""

        TOPIC: ClassVar[str] = "Account.FundsDeposited"
        entry_id: UUID
        amount_cents: int

    class PayoutRequested(Event):
        """Debit this account, credit ``payments``."""

        TOPIC: ClassVar[str] = "Account.PayoutRequested"
        entry_id: UUID
        amount_cents: int

    class HoldPlaced(Event):
        TOPIC: ClassVar[str] = "Account.HoldPlaced"
        hold_id: UUID
        amount_cents: int

    class HoldAdjusted(Event):
        TOPIC: ClassVar[str] = "Account.HoldAdjusted"
        hold_id: UUID
        amount_cents: int
        previous_amount_cents: int

    class HoldReleased(Event):
        TOPIC: ClassVar[str] = "Account.HoldReleased"
        hold_id: UUID
        amount_cents: int

    class HoldCaptured(Event):
        """Settle a hold: ``captured_cents`` leave this account — ``payee_cents`` to the
        payee's account, ``commission_cents`` to platform revenue — and
        ``released_cents`` become available again."""

        TOPIC: ClassVar[str] = "Account.HoldCaptured"
        hold_id: UUID
        captured_cents: int
        released_cents: int
        payee_account_id: UUID
        payee_cents: int
        commission_cents: int

    class PaymentReceived(Event):
        """Credit this account, debit the payer's (the other half of a capture)."""

        TOPIC: ClassVar[str] = "Account.PaymentReceived"
        hold_id: UUID
        payer_account_id: UUID
        amount_cents: int

    @staticmethod
    def create_id(owner_id: UUID, **_: Any) -> UUID:
        return account_id_for(owner_id)

    @event(AccountOpened)
    def __init__(self, owner_id: UUID) -> None:
        self.owner_id = str(owner_id)
        self.balance_cents = 0
        self.held_cents = 0
        self.holds: dict[str, int] = {}

    @property
    def available_cents(self) -> int:
        return self.balance_cents - self.held_cents

    def _check_available(self, amount_cents: int) -> None:
        if amount_cents > self.available_cents:
            raise InsufficientFunds(
                f"needs {format_money(amount_cents)}, "
                f"{format_money(self.available_cents)} available"
            )

    def _check_hold_is_pending(self, hold_id: UUID) -> int:
        try:
            return self.holds[str(hold_id)]
        except KeyError:
            raise HoldNotPending(f"hold {hold_id} is not pending on this account") from None

    # --- deciding ----------------------------------------------------------------

    def deposit(self, entry_id: UUID, amount_cents: int) -> None:
        check_positive_amount(amount_cents)
        self._funds_deposited(entry_id=entry_id, amount_cents=amount_cents)

    def request_payout(self, entry_id: UUID, amount_cents: int) -> None:
        check_positive_amount(amount_cents)
        self._check_available(amount_cents)
        self._payout_requested(entry_id=entry_id, amount_cents=amount_cents)

    def place_hold(self, hold_id: UUID, amount_cents: int) -> None:
        if str(hold_id) in self.holds:
            raise InvalidRequest(f"hold {hold_id} already placed", code="hold_exists")
        assert amount_cents >= 0
        self._check_available(amount_cents)
        self._hold_placed(hold_id=hold_id, amount_cents=amount_cents)

    def adjust_hold(self, hold_id: UUID, amount_cents: int) -> None:
        previous = self._check_hold_is_pending(hold_id)
        assert amount_cents >= 0
        if amount_cents == previous:
            return
        self._check_available(amount_cents - previous)
        self._hold_adjusted(
            hold_id=hold_id, amount_cents=amount_cents, previous_amount_cents=previous
        )

    def release_hold(self, hold_id: UUID) -> int:
        amount = self._check_hold_is_pending(hold_id)
        self._hold_released(hold_id=hold_id, amount_cents=amount)
        return amount

    def capture_hold(self, hold_id: UUID, settlement: Settlement, payee_account_id: UUID) -> None:
        amount = self._check_hold_is_pending(hold_id)
        assert settlement.captured_cents + settlement.released_cents == amount
        assert settlement.captured_cents > 0
        self._hold_captured(
            hold_id=hold_id,
            captured_cents=settlement.captured_cents,
            released_cents=settlement.released_cents,
            payee_account_id=payee_account_id,
            payee_cents=settlement.host_share_cents,
            commission_cents=settlement.commission_cents,
        )

    def receive_payment(self, hold_id: UUID, payer_account_id: UUID, amount_cents: int) -> None:
        assert amount_cents >= 0
        if amount_cents:
            self._payment_received(
                hold_id=hold_id, payer_account_id=payer_account_id, amount_cents=amount_cents
            )

    # --- recording ---------------------------------------------------------------

    @event(FundsDeposited)
    def _funds_deposited(self, entry_id: UUID, amount_cents: int) -> None:
        self.balance_cents += amount_cents

    @event(PayoutRequested)
    def _payout_requested(self, entry_id: UUID, amount_cents: int) -> None:
        self.balance_cents -= amount_cents

    @event(HoldPlaced)
    def _hold_placed(self, hold_id: UUID, amount_cents: int) -> None:
        self.holds[str(hold_id)] = amount_cents
        self.held_cents += amount_cents

    @event(HoldAdjusted)
    def _hold_adjusted(self, hold_id: UUID, amount_cents: int, previous_amount_cents: int) -> None:
        self.holds[str(hold_id)] = amount_cents
        self.held_cents += amount_cents - previous_amount_cents

    @event(HoldReleased)
    def _hold_released(self, hold_id: UUID, amount_cents: int) -> None:
        del self.holds[str(hold_id)]
        self.held_cents -= amount_cents

    @event(HoldCaptured)
    def _hold_captured(
        self,
        hold_id: UUID,
        captured_cents: int,
        released_cents: int,
        payee_account_id: UUID,
        payee_cents: int,
        commission_cents: int,
    ) -> None:
        del self.holds[str(hold_id)]
        self.held_cents -= captured_cents + released_cents
        self.balance_cents -= captured_cents

    @event(PaymentReceived)
    def _payment_received(self, hold_id: UUID, payer_account_id: UUID, amount_cents: int) -> None:
        self.balance_cents += amount_cents
