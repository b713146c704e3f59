"""Payment notifications: every verified notification a provider sent, as received.

Its id is derived from the provider and the provider's event id, so the same event
delivered five times is one aggregate: the second delivery collides in the event store
and changes nothing. It is saved with whatever it changed (a top-up credited, a payout
posted or voided), in one transaction, and tells in ``outcome`` what that was, so the
audit trail answers "why was this account credited?" and "what did we do with that
webhook?" alike.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated, derived_id
from aggregates.payment_provider import ProviderNotification


class NotificationOutcome(StrEnum):
    """What a notification changed."""

    APPLIED = "applied"
    """It moved its top-up or payout on (and the money with it)."""
    ALREADY_KNOWN = "already_known"
    """It told nothing new: an earlier notification (or answer) said as much or more."""
    AMOUNT_MISMATCH = "amount_mismatch"
    """Its amount or currency is not the top-up's or payout's: nothing credited."""
    REFERENCE_MISMATCH = "reference_mismatch"
    """It names another provider payment or transfer than the one on record."""
    CONTRADICTS_FINAL_STATE = "contradicts_final_state"
    """It says the opposite of a final state (a failure of a payout already paid)."""
    UNKNOWN_SUBJECT = "unknown_subject"
    """It is about no top-up or payout of Prep ES."""
    NOT_APPLICABLE = "not_applicable"
    """Its type changes nothing here."""


def notification_id(provider: str, event_id: str) -> UUID:
    return derived_id("payment-notification", provider, event_id)


class PaymentNotification(Aggregate):
    TOPIC: ClassVar[str] = "PaymentNotification"

    class Event(Aggregate.Event):
        pass

    class PaymentNotificationReceived(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "PaymentNotification.PaymentNotificationReceived"
        provider: str
        event_id: str
        event_type: str
        occurred_at: datetime
        subject: str | None
        subject_id: UUID | None
        reference: str | None
        status: str | None
        amount_cents: int | None
        currency: str | None
        failure_code: str | None
        outcome: str

    @staticmethod
    def create_id(provider: str, event_id: str, **_: Any) -> UUID:
        return notification_id(provider, event_id)

    @classmethod
    def received(
        cls, notification: ProviderNotification, outcome: NotificationOutcome
    ) -> PaymentNotification:
        return cls(
            provider=notification.provider,
            event_id=notification.event_id,
            event_type=notification.event_type,
            occurred_at=notification.occurred_at,
            subject=None if notification.subject is None else notification.subject.value,
            subject_id=notification.subject_id,
            reference=notification.reference,
            status=notification.status,
            amount_cents=notification.amount_cents,
            currency=notification.currency,
            failure_code=notification.failure_code,
            outcome=outcome.value,
        )

    @event(PaymentNotificationReceived)
    def __init__(
        self,
        provider: str,
        event_id: str,
        event_type: str,
        occurred_at: datetime,
        subject: str | None,
        subject_id: UUID | None,
        reference: str | None,
        status: str | None,
        amount_cents: int | None,
        currency: str | None,
        failure_code: str | None,
        outcome: str,
    ) -> None:
        self.provider = provider
        self.event_id = event_id
        self.outcome = outcome
