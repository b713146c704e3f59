"""Payouts: money leaving the ledger through the provider, two-phase.

A payout is a host's transfer to their payout destination (``method`` ``payout``) or a
customer's withdrawal sent back to the card of one top-up (``refund``). Asking for it
reserves the amount on the account at once (``Account.PayoutReserved``: it cannot be
spent twice); then it is posted when the provider says it paid, or voided back to the
account when the provider says it failed or was canceled — exactly once, in the same
save as the account's side:

    pending ──► paid
       └──────► failed | canceled

Notifications arrive in any order and any number of times: a final state is never left,
and one that contradicts it (a failure after ``paid``) is recorded and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated
from aggregates.payment_notification import NotificationOutcome
from aggregates.payment_provider import CURRENCY, ProviderTransfer, TransferStatus


class PayoutStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"


class PayoutSettlement(StrEnum):
    """What the account does as the payout ends."""

    POST = "post"
    VOID = "void"


class Payout(Aggregate):
    TOPIC: ClassVar[str] = "Payout"

    class Event(Aggregate.Event):
        pass

    class PayoutRequested(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "Payout.PayoutRequested"
        owner_id: UUID
        amount_cents: int
        method: str
        destination: str | None
        """The host's payout destination (``payout``)."""
        top_up_id: UUID | None
        payment_reference: str | None
        """The top-up and its provider payment refunded (``refund``)."""
        provider: str
        requested_at: datetime

    class PayoutSubmitted(Event):
        """The provider took it as ``transfer_reference``."""

        TOPIC: ClassVar[str] = "Payout.PayoutSubmitted"
        transfer_reference: str

    class PayoutPaid(Event):
        TOPIC: ClassVar[str] = "Payout.PayoutPaid"
        transfer_reference: str

    class PayoutFailed(Event):
        TOPIC: ClassVar[str] = "Payout.PayoutFailed"
        transfer_reference: str | None
        status: str
        """``failed`` (``failure_code`` says why) or ``canceled``."""
        failure_code: str | None

    @event(PayoutRequested)
    def __init__(
        self,
        owner_id: UUID,
        amount_cents: int,
        method: str,
        destination: str | None,
        top_up_id: UUID | None,
        payment_reference: str | None,
        provider: str,
        requested_at: datetime,
    ) -> None:
        self.owner_id = owner_id
        self.amount_cents = amount_cents
        self.method = method
        self.destination = destination
        self.top_up_id = top_up_id
        self.payment_reference = payment_reference
        self.provider = provider
        self.requested_at = requested_at
        self.status = PayoutStatus.PENDING
        self.transfer_reference: str | None = None
        self.failure_code: str | None = None

    @property
    def is_pending(self) -> bool:
        return self.status == PayoutStatus.PENDING

    # --- deciding ----------------------------------------------------------------

    def record_transfer_created(self, transfer: ProviderTransfer) -> PayoutSettlement | None:
        """The provider's answer to sending it: a refusal voids it at once; anything else
        waits for the notification."""
        if not self.is_pending or self.transfer_reference is not None:
            return None
        if transfer.status in (TransferStatus.FAILED, TransferStatus.CANCELED):
            self._failed(
                transfer_reference=transfer.reference or None,
                status=transfer.status.value,
                failure_code=transfer.failure_code,
            )
            return PayoutSettlement.VOID
        self._submitted(transfer_reference=transfer.reference)
        if transfer.status == TransferStatus.PAID:
            self._paid(transfer_reference=transfer.reference)
            return PayoutSettlement.POST
        return None

    def follow_provider(
        self,
        status: TransferStatus,
        transfer_reference: str,
        amount_cents: int,
        currency: str,
        failure_code: str | None,
    ) -> tuple[NotificationOutcome, PayoutSettlement | None]:
        """Follow a verified notification; the settlement is for the caller to make on
        the account, in the same save."""
        if amount_cents != self.amount_cents or currency.lower() != CURRENCY:
            return NotificationOutcome.AMOUNT_MISMATCH, None
        if self.transfer_reference not in (None, transfer_reference):
            return NotificationOutcome.REFERENCE_MISMATCH, None
        if status == TransferStatus.PENDING:
            if self.is_pending and self.transfer_reference is None:
                self._submitted(transfer_reference=transfer_reference)
                return NotificationOutcome.APPLIED, None
            return NotificationOutcome.ALREADY_KNOWN, None
        if not self.is_pending:
            if self.status.value == status.value:
                return NotificationOutcome.ALREADY_KNOWN, None
            paid_now = status == TransferStatus.PAID
            was_paid = self.status == PayoutStatus.PAID
            if paid_now == was_paid:  # failed after canceled or the reverse: both voided
                return NotificationOutcome.ALREADY_KNOWN, None
            return NotificationOutcome.CONTRADICTS_FINAL_STATE, None
        if status == TransferStatus.PAID:
            self._paid(transfer_reference=transfer_reference)
            return NotificationOutcome.APPLIED, PayoutSettlement.POST
        self._failed(
            transfer_reference=transfer_reference, status=status.value, failure_code=failure_code
        )
        return NotificationOutcome.APPLIED, PayoutSettlement.VOID

    # --- recording ---------------------------------------------------------------

    @event(PayoutSubmitted)
    def _submitted(self, transfer_reference: str) -> None:
        self.transfer_reference = transfer_reference

    @event(PayoutPaid)
    def _paid(self, transfer_reference: str) -> None:
        self.status = PayoutStatus.PAID
        self.transfer_reference = transfer_reference

    @event(PayoutFailed)
    def _failed(
        self, transfer_reference: str | None, status: str, failure_code: str | None
    ) -> None:
        self.status = PayoutStatus(status)
        self.transfer_reference = transfer_reference
        self.failure_code = failure_code
