"""Accounts: a double-entry ledger in integer cents.

Every user has one account (id derived from the user id). Money moves in entries that
debit one account and credit another:

    top-up credited   payments_in → user            (the provider confirmed the payment)
    payout reserved   user → payouts_in_transit     (a payout or a refund to the card, asked)
    payout posted     payouts_in_transit → payments_out   (the provider confirmed it paid)
    payout voided     payouts_in_transit → user     (the provider failed or canceled it)
    capture           customer → host (the host's share) and customer → platform revenue

Money enters only as a top-up the payment provider confirmed and leaves only through
the provider, two-phase: out of the user's reach at once, then posted or voided, once.
Stores written before top-ups also hold ``deposit`` and ``payout`` movements against
the old external ``payments`` account; they replay as they were.

The system accounts (``payments_in``, ``payouts_in_transit``, ``payments_out``,
``platform_revenue``, and the old ``payments``) have no invariant to protect, so they
are not aggregates: their side of an entry is recorded as the counter account of the
user account's event, and their balances are derived from those events. That keeps
every top-up and every capture off a single hot aggregate. User-to-user movements
(customer → host) are recorded on both accounts, saved in one transaction.

A hold reserves part of a balance for a booking: ``available = balance - held``.
Each hold ends exactly once, captured (in part) or released.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated, derived_id
from aggregates.errors import HoldNotPending, InsufficientFunds, InvalidRequest, StateConflict
from aggregates.policies import Settlement, check_positive_amount, format_money

SNAPSHOT_INTERVAL = 100
PAYMENTS_ACCOUNT_ID = derived_id("system-account", "payments")
PLATFORM_REVENUE_ACCOUNT_ID = derived_id("system-account", "platform_revenue")
PAYMENTS_IN_ACCOUNT_ID = derived_id("system-account", "payments_in")
PAYOUTS_IN_TRANSIT_ACCOUNT_ID = derived_id("system-account", "payouts_in_transit")
PAYMENTS_OUT_ACCOUNT_ID = derived_id("system-account", "payments_out")
SYSTEM_ACCOUNT_NAMES = {
    PAYMENTS_ACCOUNT_ID: "payments",
    PLATFORM_REVENUE_ACCOUNT_ID: "platform_revenue",
    PAYMENTS_IN_ACCOUNT_ID: "payments_in",
    PAYOUTS_IN_TRANSIT_ACCOUNT_ID: "payouts_in_transit",
    PAYMENTS_OUT_ACCOUNT_ID: "payments_out",
}
PAYOUT_DESTINATION_LENGTH_MAX = 100


def account_id_for(user_id: UUID) -> UUID:
    return derived_id("account", user_id)


@dataclass(frozen=True)
class TopUpLimits:
    """How much a user may top up at once and in one UTC day (settings)."""

    per_top_up_cents_min: int
    per_top_up_cents_max: int
    per_day_cents_max: int
    per_day_count_max: int

    def check(self, amount_cents: int, earlier_today_cents: int, earlier_today_count: int) -> None:
        if amount_cents < self.per_top_up_cents_min:
            raise InvalidRequest(
                f"a top-up is at least {format_money(self.per_top_up_cents_min)}",
                code="top_up_below_minimum",
                field="amount",
            )
        if earlier_today_count >= self.per_day_count_max:
            raise InvalidRequest(
                f"at most {self.per_day_count_max} top-ups a day; try again tomorrow (UTC)",
                code="daily_top_up_count_exceeded",
            )
        if amount_cents > self.per_top_up_cents_max:
            raise InvalidRequest(
                f"a top-up is at most {format_money(self.per_top_up_cents_max)}",
                code="top_up_limit_exceeded",
                field="amount",
            )
        if earlier_today_cents + amount_cents > self.per_day_cents_max:
            left = max(self.per_day_cents_max - earlier_today_cents, 0)
            raise InvalidRequest(
                f"top-ups are at most {format_money(self.per_day_cents_max)} a day; "
                f"{format_money(left)} left today",
                code="daily_top_up_limit_exceeded",
                field="amount",
            )


@dataclass(frozen=True)
class RefundPlan:
    """Part of a withdrawal: ``amount_cents`` back to the card of one top-up."""

    top_up_id: UUID
    payment_reference: str
    amount_cents: int


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
        """Credit this account, debit ``payments``: a deposit of a store written before
        top-ups (nothing records one now)."""

        TOPIC: ClassVar[str] = "Account.FundsDeposited"
        entry_id: UUID
        amount_cents: int

    class PayoutRequested(Event):
        """Debit this account, credit ``payments``: a one-phase payout of a store written
        before payouts went through the provider (nothing records one now)."""

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

    class TopUpStarted(Event):
        """A top-up was asked for on ``day`` (ISO date, UTC); it counts towards that
        day's limit whatever becomes of it. No money moves."""

        TOPIC: ClassVar[str] = "Account.TopUpStarted"
        top_up_id: UUID
        amount_cents: int
        day: str

    class TopUpCredited(Event):
        """Credit this account, debit ``payments_in``: the provider confirmed the
        payment ``payment_reference`` of the top-up."""

        TOPIC: ClassVar[str] = "Account.TopUpCredited"
        top_up_id: UUID
        amount_cents: int
        payment_reference: str

    class PayoutReserved(Event):
        """Debit this account, credit ``payouts_in_transit``: a payout (or, with
        ``top_up_id``, a refund of that top-up to its card) is on its way."""

        TOPIC: ClassVar[str] = "Account.PayoutReserved"
        payout_id: UUID
        amount_cents: int
        top_up_id: UUID | None

    class PayoutPosted(Event):
        """Debit ``payouts_in_transit``, credit ``payments_out``: the provider paid it."""

        TOPIC: ClassVar[str] = "Account.PayoutPosted"
        payout_id: UUID
        amount_cents: int

    class PayoutVoided(Event):
        """Debit ``payouts_in_transit``, credit this account: the provider failed or
        canceled it, and the money is back."""

        TOPIC: ClassVar[str] = "Account.PayoutVoided"
        payout_id: UUID
        amount_cents: int
        top_up_id: UUID | None

    class PayoutDestinationSet(Event):
        """Where this account's payouts go (a connected account id at Stripe)."""

        TOPIC: ClassVar[str] = "Account.PayoutDestinationSet"
        destination: str

    @staticmethod
    def create_id(owner_id: UUID, **_: Any) -> UUID:
        return account_id_for(owner_id)

    @event(AccountOpened)
    def __init__(self, owner_id: UUID) -> None:
        self.owner_id = str(owner_id)
        self.balance_cents = 0
        self.held_cents = 0
        self.holds: dict[str, int] = {}
        self.payout_destination: str | None = None
        self.payouts_pending: dict[str, int] = {}
        """Payout id → amount, for each payout reserved and not yet posted or voided."""
        self.refundable: dict[str, list[Any]] = {}
        """Top-up id → [payment reference, cents not yet refunded or on their way back],
        in the order the top-ups were credited."""
        self.top_up_day = ""
        self.top_up_day_cents = 0
        self.top_up_day_count = 0

    @property
    def available_cents(self) -> int:
        return self.balance_cents - self.held_cents

    def _check_available(self, amount_cents: int) -> None:
        if amount_cents > self.available_cents:
            raise InsufficientFunds(
                f"needs {format_money(amount_cents)}, "
                f"{format_money(self.available_cents)} available"
            )

    def _check_payout_is_pending(self, payout_id: UUID) -> int:
        amount = self.payouts_pending.get(str(payout_id))
        assert amount is not None, f"payout {payout_id} is not pending on this account"
        return amount

    def _check_hold_is_pending(self, hold_id: UUID) -> int:
        try:
            return self.holds[str(hold_id)]
        except KeyError:
            raise HoldNotPending(f"hold {hold_id} is not pending on this account") from None

    # --- deciding ----------------------------------------------------------------

    def start_top_up(
        self, top_up_id: UUID, amount_cents: int, day: date, limits: TopUpLimits
    ) -> None:
        check_positive_amount(amount_cents)
        limits.check(amount_cents, self.top_up_cents_on(day), self.top_ups_on(day))
        self._top_up_started(top_up_id=top_up_id, amount_cents=amount_cents, day=day.isoformat())

    def top_up_cents_on(self, day: date) -> int:
        """What this account asked to top up on ``day`` (UTC), declined tries included."""
        return self.top_up_day_cents if self.top_up_day == day.isoformat() else 0

    def top_ups_on(self, day: date) -> int:
        """How many top-ups this account asked for on ``day`` (UTC)."""
        return self.top_up_day_count if self.top_up_day == day.isoformat() else 0

    def credit_top_up(self, top_up_id: UUID, amount_cents: int, payment_reference: str) -> None:
        """Called once per top-up, when it succeeds (the ``TopUp`` aggregate sees to it)."""
        assert amount_cents > 0
        assert str(top_up_id) not in self.refundable, f"top-up {top_up_id} credited twice"
        self._top_up_credited(
            top_up_id=top_up_id, amount_cents=amount_cents, payment_reference=payment_reference
        )

    def set_payout_destination(self, destination: str) -> None:
        if destination != self.payout_destination:
            self._payout_destination_set(destination=destination)

    def check_payout_destination(self) -> str:
        if self.payout_destination is None:
            raise StateConflict(
                "set a payout destination first (PUT /accounts/me/payout-destination)",
                code="payout_destination_missing",
            )
        return self.payout_destination

    def reserve_payout(self, payout_id: UUID, amount_cents: int) -> None:
        check_positive_amount(amount_cents)
        self._check_available(amount_cents)
        self._payout_reserved(payout_id=payout_id, amount_cents=amount_cents, top_up_id=None)

    def plan_refunds(self, amount_cents: int) -> list[RefundPlan]:
        """How to send ``amount_cents`` back to the cards it came from: against the
        newest top-ups first, each for at most what is left of it."""
        check_positive_amount(amount_cents)
        self._check_available(amount_cents)
        plans = []
        remaining = amount_cents
        for top_up_id, (reference, refundable_cents) in reversed(self.refundable.items()):
            if remaining == 0:
                break
            cents = min(remaining, refundable_cents)
            if cents:
                plans.append(RefundPlan(UUID(top_up_id), reference, cents))
                remaining -= cents
        if remaining:
            raise StateConflict(
                f"only {format_money(amount_cents - remaining)} can go back to the cards it "
                "came from",
                code="not_refundable",
            )
        return plans

    def reserve_refund(self, payout_id: UUID, plan: RefundPlan) -> None:
        entry = self.refundable.get(str(plan.top_up_id))
        assert entry is not None and entry[1] >= plan.amount_cents > 0, (entry, plan)
        self._check_available(plan.amount_cents)
        self._payout_reserved(
            payout_id=payout_id, amount_cents=plan.amount_cents, top_up_id=plan.top_up_id
        )

    def post_payout(self, payout_id: UUID) -> None:
        """Called once per payout, when the provider paid it (``Payout`` sees to it)."""
        amount = self._check_payout_is_pending(payout_id)
        self._payout_posted(payout_id=payout_id, amount_cents=amount)

    def void_payout(self, payout_id: UUID, top_up_id: UUID | None) -> None:
        """Called once per payout, when the provider failed or canceled it."""
        amount = self._check_payout_is_pending(payout_id)
        self._payout_voided(payout_id=payout_id, amount_cents=amount, top_up_id=top_up_id)

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

    @event(TopUpStarted)
    def _top_up_started(self, top_up_id: UUID, amount_cents: int, day: str) -> None:
        if self.top_up_day != day:
            self.top_up_day = day
            self.top_up_day_cents = 0
            self.top_up_day_count = 0
        self.top_up_day_cents += amount_cents
        self.top_up_day_count += 1

    @event(TopUpCredited)
    def _top_up_credited(self, top_up_id: UUID, amount_cents: int, payment_reference: str) -> None:
        self.balance_cents += amount_cents
        self.refundable[str(top_up_id)] = [payment_reference, amount_cents]

    @event(PayoutDestinationSet)
    def _payout_destination_set(self, destination: str) -> None:
        self.payout_destination = destination

    @event(PayoutReserved)
    def _payout_reserved(self, payout_id: UUID, amount_cents: int, top_up_id: UUID | None) -> None:
        self.balance_cents -= amount_cents
        self.payouts_pending[str(payout_id)] = amount_cents
        if top_up_id is not None:
            self.refundable[str(top_up_id)][1] -= amount_cents

    @event(PayoutPosted)
    def _payout_posted(self, payout_id: UUID, amount_cents: int) -> None:
        del self.payouts_pending[str(payout_id)]

    @event(PayoutVoided)
    def _payout_voided(self, payout_id: UUID, amount_cents: int, top_up_id: UUID | None) -> None:
        del self.payouts_pending[str(payout_id)]
        self.balance_cents += amount_cents
        if top_up_id is not None:
            self.refundable[str(top_up_id)][1] += amount_cents

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
