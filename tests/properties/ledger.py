"""The money as the notification log tells it, folded incrementally and independently
of the ``Account`` aggregate: system balances, each user account's balance, how every
hold ended, and how every payout ended.

The system accounts are not aggregates; their balances are derived here from the user
accounts' events: payments_in = −Σ top-ups credited, payouts_in_transit = Σ payouts
reserved − Σ posted − Σ voided, payments_out = Σ payouts posted, platform revenue =
Σ commissions of captures; and, for stores written before top-ups, payments =
−Σ deposits + Σ one-phase payouts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from aggregates.account import Account
from aggregates.schedule import KitchenSchedule
from prep_es.store.eventstore import PrepApplication
from tests.properties.oracle import expected_commission_cents

NOTIFICATIONS_PAGE_SIZE = 500


@dataclass(frozen=True)
class Settlement:
    """How one hold ended, as its ``HoldReleased`` or ``HoldCaptured`` event says."""

    kind: Literal["released", "captured"]
    account_id: UUID
    captured_cents: int
    released_cents: int


@dataclass
class LedgerFold:
    commission_basis_points: int
    position: int = 0
    payments_balance_cents: int = 0
    payments_in_cents: int = 0
    payouts_in_transit_cents: int = 0
    payments_out_cents: int = 0
    platform_revenue_cents: int = 0
    balances_cents: Counter[UUID] = field(default_factory=Counter)
    # hold id -> (account id, amount) while the hold is pending
    pending_holds: dict[UUID, tuple[UUID, int]] = field(default_factory=dict)
    settlements: dict[UUID, list[Settlement]] = field(default_factory=dict)
    # (hold id, payee account id, cents): what captures promised and what payees got
    payments_promised: Counter[tuple[UUID, UUID, int]] = field(default_factory=Counter)
    payments_received: Counter[tuple[UUID, UUID, int]] = field(default_factory=Counter)
    # schedule id -> (kitchen id, UTC day); and its live claims: booking id -> window
    schedules: dict[UUID, tuple[UUID, date]] = field(default_factory=dict)
    claims: dict[UUID, dict[UUID, tuple[datetime, datetime]]] = field(default_factory=dict)
    hold_problems: list[str] = field(default_factory=list)
    capture_problems: list[str] = field(default_factory=list)
    credited_top_ups: set[UUID] = field(default_factory=set)
    # payout id -> (account id, amount) while the payout is pending; then how it ended
    pending_payouts: dict[UUID, tuple[UUID, int]] = field(default_factory=dict)
    payout_endings: dict[UUID, list[str]] = field(default_factory=dict)
    provider_problems: list[str] = field(default_factory=list)

    @property
    def system_balance_cents(self) -> int:
        """What the system accounts hold together: minus the users' balances, when the
        ledger balances."""
        return (
            self.payments_balance_cents
            + self.payments_in_cents
            + self.payouts_in_transit_cents
            + self.payments_out_cents
            + self.platform_revenue_cents
        )

    def catch_up(self, app: PrepApplication) -> None:
        while True:
            notifications = app.recorder.select_notifications(
                start=self.position + 1, limit=NOTIFICATIONS_PAGE_SIZE
            )
            for notification in notifications:
                self._apply(app.mapper.to_domain_event(notification))
                self.position = notification.id
            if len(notifications) < NOTIFICATIONS_PAGE_SIZE:
                return

    def held_cents_of(self, account_id: UUID) -> int:
        return sum(amount for owner, amount in self.pending_holds.values() if owner == account_id)

    def _apply(self, event: object) -> None:
        if self._apply_provider_movement(event):
            return
        if isinstance(event, Account.FundsDeposited):
            self.balances_cents[event.originator_id] += event.amount_cents
            self.payments_balance_cents -= event.amount_cents
        elif isinstance(event, Account.PayoutRequested):
            self.balances_cents[event.originator_id] -= event.amount_cents
            self.payments_balance_cents += event.amount_cents
        elif isinstance(event, Account.HoldPlaced):
            if event.hold_id in self.pending_holds or event.hold_id in self.settlements:
                self.hold_problems.append(f"hold {event.hold_id} placed twice")
            self.pending_holds[event.hold_id] = (event.originator_id, event.amount_cents)
        elif isinstance(event, Account.HoldAdjusted):
            owner, amount = self._pending(event.hold_id, "adjusted")
            if amount != event.previous_amount_cents:
                self.hold_problems.append(
                    f"hold {event.hold_id} adjusted from {event.previous_amount_cents}"
                    f" but it held {amount}"
                )
            self.pending_holds[event.hold_id] = (owner, event.amount_cents)
        elif isinstance(event, Account.HoldReleased):
            owner, amount = self._pending(event.hold_id, "released")
            if event.amount_cents != amount:
                self.hold_problems.append(
                    f"hold {event.hold_id} of {amount} released {event.amount_cents}"
                )
            self._settle(event.hold_id, Settlement("released", owner, 0, event.amount_cents))
        elif isinstance(event, Account.HoldCaptured):
            self._apply_capture(event)
        elif isinstance(event, Account.PaymentReceived):
            self.balances_cents[event.originator_id] += event.amount_cents
            self.payments_received[(event.hold_id, event.originator_id, event.amount_cents)] += 1
        elif isinstance(event, KitchenSchedule.ScheduleOpened):
            self.schedules[event.originator_id] = (event.kitchen_id, event.day)
            self.claims[event.originator_id] = {}
        elif isinstance(event, KitchenSchedule.SlotClaimed):
            self.claims[event.originator_id][event.booking_id] = (
                event.start_time,
                event.end_time,
            )
        elif isinstance(event, KitchenSchedule.SlotReleased):
            del self.claims[event.originator_id][event.booking_id]

    def _apply_provider_movement(self, event: object) -> bool:
        """Fold a top-up's credit or a payout's phase; whether ``event`` was one."""
        if isinstance(event, Account.TopUpCredited):
            if event.top_up_id in self.credited_top_ups:
                self.provider_problems.append(f"top-up {event.top_up_id} credited twice")
            self.credited_top_ups.add(event.top_up_id)
            self.balances_cents[event.originator_id] += event.amount_cents
            self.payments_in_cents -= event.amount_cents
        elif isinstance(event, Account.PayoutReserved):
            if event.payout_id in self.pending_payouts or event.payout_id in self.payout_endings:
                self.provider_problems.append(f"payout {event.payout_id} reserved twice")
            self.pending_payouts[event.payout_id] = (event.originator_id, event.amount_cents)
            self.balances_cents[event.originator_id] -= event.amount_cents
            self.payouts_in_transit_cents += event.amount_cents
        elif isinstance(event, Account.PayoutPosted):
            self._end_payout(event.payout_id, event.originator_id, event.amount_cents, "posted")
            self.payouts_in_transit_cents -= event.amount_cents
            self.payments_out_cents += event.amount_cents
        elif isinstance(event, Account.PayoutVoided):
            self._end_payout(event.payout_id, event.originator_id, event.amount_cents, "voided")
            self.payouts_in_transit_cents -= event.amount_cents
            self.balances_cents[event.originator_id] += event.amount_cents
        else:
            return False
        return True

    def _apply_capture(self, event: Account.HoldCaptured) -> None:
        owner, amount = self._pending(event.hold_id, "captured")
        hold = event.hold_id
        if event.captured_cents + event.released_cents != amount:
            self.capture_problems.append(
                f"hold {hold} of {amount}: captured {event.captured_cents}"
                f" + released {event.released_cents}"
            )
        if event.captured_cents != event.payee_cents + event.commission_cents:
            self.capture_problems.append(
                f"hold {hold}: captured {event.captured_cents} != payee {event.payee_cents}"
                f" + commission {event.commission_cents}"
            )
        commission = expected_commission_cents(event.captured_cents, self.commission_basis_points)
        if event.commission_cents != commission:
            self.capture_problems.append(
                f"hold {hold}: commission {event.commission_cents}, expected {commission}"
            )
        if min(event.captured_cents, event.released_cents, event.payee_cents) < 0:
            self.capture_problems.append(f"hold {hold}: a negative amount in {event}")
        self.balances_cents[event.originator_id] -= event.captured_cents
        self.platform_revenue_cents += event.commission_cents
        if event.payee_cents:
            self.payments_promised[(hold, event.payee_account_id, event.payee_cents)] += 1
        self._settle(
            hold, Settlement("captured", owner, event.captured_cents, event.released_cents)
        )

    def _end_payout(self, payout_id: UUID, account_id: UUID, amount_cents: int, how: str) -> None:
        endings = self.payout_endings.setdefault(payout_id, [])
        endings.append(how)
        if payout_id not in self.pending_payouts:
            self.provider_problems.append(f"payout {payout_id} {', then '.join(endings)}")
            return
        if self.pending_payouts.pop(payout_id) != (account_id, amount_cents):
            self.provider_problems.append(f"payout {payout_id} {how} for another amount or account")

    def _pending(self, hold_id: UUID, verb: str) -> tuple[UUID, int]:
        if hold_id not in self.pending_holds:
            ended = "already settled" if hold_id in self.settlements else "never placed"
            self.hold_problems.append(f"hold {hold_id} {verb} but it was {ended}")
            return (UUID(int=0), 0)
        return self.pending_holds[hold_id]

    def _settle(self, hold_id: UUID, settlement: Settlement) -> None:
        self.pending_holds.pop(hold_id, None)
        self.settlements.setdefault(hold_id, []).append(settlement)
