"""Top-ups: a customer's payment, through the provider, that credits their account.

    requires_payment ──► processing ──► succeeded
           │                 │
           └─────────────────┴──────► failed | canceled

A top-up is made before the provider is asked (so a crash in between leaves a record to
finish, never a payment nobody knows of), then follows what the provider says: its
synchronous answer may only start ``processing`` or end it ``failed``/``canceled``; only a
verified notification of success makes it ``succeeded``, and that is the one moment the
account is credited. Notifications arrive in any order and any number of times, so each
state is reached from any earlier one, and ``succeeded`` is final: a confirmed payment is
money received, whatever was said before it. Amounts are the provider's: a notification
whose amount or currency differs from the top-up's changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Final
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated
from aggregates.payment_notification import NotificationOutcome
from aggregates.payment_provider import CURRENCY, PaymentStatus, ProviderPayment

PAYMENT_METHOD_LENGTH_MAX = 255


class TopUpStatus(StrEnum):
    REQUIRES_PAYMENT = "requires_payment"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


_FINAL = frozenset({TopUpStatus.SUCCEEDED, TopUpStatus.FAILED, TopUpStatus.CANCELED})
PENDING_STATUSES: Final = frozenset(TopUpStatus) - _FINAL
"""A top-up not yet succeeded, failed or canceled."""


class TopUp(Aggregate):
    TOPIC: ClassVar[str] = "TopUp"

    class Event(Aggregate.Event):
        pass

    class TopUpRequested(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "TopUp.TopUpRequested"
        owner_id: UUID
        amount_cents: int
        payment_method: str
        provider: str
        requested_at: datetime

    class TopUpProcessing(Event):
        """The provider took the payment ``payment_reference`` and has not settled it."""

        TOPIC: ClassVar[str] = "TopUp.TopUpProcessing"
        payment_reference: str

    class TopUpSucceeded(Event):
        """The provider confirmed the payment: the account is credited in the same save."""

        TOPIC: ClassVar[str] = "TopUp.TopUpSucceeded"
        payment_reference: str
        amount_cents: int

    class TopUpFailed(Event):
        TOPIC: ClassVar[str] = "TopUp.TopUpFailed"
        payment_reference: str
        status: str
        """``failed`` (declined: ``failure_code`` says why) or ``canceled``."""
        failure_code: str | None

    @event(TopUpRequested)
    def __init__(
        self,
        owner_id: UUID,
        amount_cents: int,
        payment_method: str,
        provider: str,
        requested_at: datetime,
    ) -> None:
        self.owner_id = owner_id
        self.amount_cents = amount_cents
        self.payment_method = payment_method
        self.provider = provider
        self.requested_at = requested_at
        self.status = TopUpStatus.REQUIRES_PAYMENT
        self.payment_reference: str | None = None
        self.failure_code: str | None = None

    # --- deciding ----------------------------------------------------------------

    def record_payment_created(self, payment: ProviderPayment) -> None:
        """The provider's answer to creating the payment. A success here is only
        ``processing``: the credit waits for the signed notification. Nothing changes if
        a notification got here first."""
        if self.status != TopUpStatus.REQUIRES_PAYMENT:
            return
        if payment.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED):
            self._failed(
                payment_reference=payment.reference,
                status=payment.status.value,
                failure_code=payment.failure_code,
            )
        else:
            self._processing(payment_reference=payment.reference)

    def follow_provider(
        self,
        status: PaymentStatus,
        payment_reference: str,
        amount_cents: int,
        currency: str,
        failure_code: str | None,
    ) -> NotificationOutcome:
        """Follow a verified notification. ``applied`` with ``succeeded`` means the caller
        credits the account, in the same save."""
        if amount_cents != self.amount_cents or currency.lower() != CURRENCY:
            return NotificationOutcome.AMOUNT_MISMATCH
        if self.payment_reference not in (None, payment_reference):
            return NotificationOutcome.REFERENCE_MISMATCH
        if self.status == TopUpStatus.SUCCEEDED:
            return NotificationOutcome.ALREADY_KNOWN
        if status == PaymentStatus.SUCCEEDED:
            self._succeeded(payment_reference=payment_reference, amount_cents=amount_cents)
            return NotificationOutcome.APPLIED
        if status == PaymentStatus.PROCESSING:
            if self.status != TopUpStatus.REQUIRES_PAYMENT:
                return NotificationOutcome.ALREADY_KNOWN
            self._processing(payment_reference=payment_reference)
            return NotificationOutcome.APPLIED
        if self.status in _FINAL:
            return NotificationOutcome.ALREADY_KNOWN
        self._failed(
            payment_reference=payment_reference, status=status.value, failure_code=failure_code
        )
        return NotificationOutcome.APPLIED

    # --- recording ---------------------------------------------------------------

    @event(TopUpProcessing)
    def _processing(self, payment_reference: str) -> None:
        self.status = TopUpStatus.PROCESSING
        self.payment_reference = payment_reference

    @event(TopUpSucceeded)
    def _succeeded(self, payment_reference: str, amount_cents: int) -> None:
        self.status = TopUpStatus.SUCCEEDED
        self.payment_reference = payment_reference
        self.failure_code = None

    @event(TopUpFailed)
    def _failed(self, payment_reference: str, status: str, failure_code: str | None) -> None:
        self.status = TopUpStatus(status)
        self.payment_reference = payment_reference or None
        self.failure_code = failure_code
