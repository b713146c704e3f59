"""What a provider's verified notification does: recorded once, applied once.

The webhook route verifies the signature (the provider's adapter) and hands the
notification here. One command records it as a ``PaymentNotification`` — its id derived
from the provider's event id, so a second delivery collides and changes nothing — with
what it changed, in the same save: the top-up it confirms and the account it credits, or
the payout it posts or voids and the account's side of it. Any delivery order and any
number of deliveries give the same ledger (see ``aggregates.top_up``,
``aggregates.payout``).
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel

from aggregates.base import derived_id
from aggregates.payment_notification import (
    NotificationOutcome,
    PaymentNotification,
    notification_id,
)
from aggregates.payment_provider import (
    NotificationSubject,
    PaymentStatus,
    ProviderNotification,
    TransferStatus,
)
from aggregates.payout import Payout, PayoutSettlement
from aggregates.top_up import TopUp, TopUpStatus
from commands.context import SYSTEM_ROLE, Actor, CommandContext
from commands.processor import CommandProcessor, Executed
from commands.unit_of_work import UnitOfWork

PAYMENT_STATUSES = frozenset(status.value for status in PaymentStatus)
TRANSFER_STATUSES = frozenset(status.value for status in TransferStatus)


class NotificationReceipt(BaseModel):
    id: UUID
    outcome: NotificationOutcome
    duplicate: bool


class _Notification(BaseModel):
    """What the processor logs and hashes of a notification: never used with a key."""

    provider: str
    event_id: str


def provider_actor(provider: str) -> Actor:
    """Who the events a provider's notification causes are recorded as."""
    return Actor(user_id=derived_id("system-actor", f"payments:{provider}"), role=SYSTEM_ROLE)


class PaymentNotificationCommands:
    def __init__(self, processor: CommandProcessor) -> None:
        self._processor = processor

    def receive(
        self, notification: ProviderNotification, request_id: str
    ) -> Executed[NotificationReceipt]:
        context = CommandContext(
            actor=provider_actor(notification.provider),
            request_id=request_id,
            idempotency_key=None,
        )

        def decide(unit: UnitOfWork) -> NotificationReceipt:
            received_id = notification_id(notification.provider, notification.event_id)
            earlier = unit.find(PaymentNotification, received_id)
            if earlier is not None:
                return NotificationReceipt(
                    id=received_id, outcome=NotificationOutcome(earlier.outcome), duplicate=True
                )
            outcome = _apply(unit, notification)
            unit.add(PaymentNotification.received(notification, outcome))
            return NotificationReceipt(id=received_id, outcome=outcome, duplicate=False)

        return self._processor.execute(
            "receive_payment_notification",
            context,
            _Notification(provider=notification.provider, event_id=notification.event_id),
            NotificationReceipt,
            decide,
        )


def _apply(unit: UnitOfWork, notification: ProviderNotification) -> NotificationOutcome:
    if (
        notification.subject is None
        or notification.status is None
        or notification.reference is None
    ):
        return NotificationOutcome.NOT_APPLICABLE
    if notification.amount_cents is None or notification.currency is None:
        return NotificationOutcome.AMOUNT_MISMATCH
    if notification.subject_id is None:
        return NotificationOutcome.UNKNOWN_SUBJECT
    if notification.subject == NotificationSubject.PAYMENT:
        top_up = unit.find(TopUp, notification.subject_id)
        if top_up is None or top_up.provider != notification.provider:
            return NotificationOutcome.UNKNOWN_SUBJECT
        if notification.status not in PAYMENT_STATUSES:
            return NotificationOutcome.NOT_APPLICABLE
        outcome = top_up.follow_provider(
            PaymentStatus(notification.status),
            notification.reference,
            notification.amount_cents,
            notification.currency,
            notification.failure_code,
        )
        if outcome == NotificationOutcome.APPLIED and top_up.status == TopUpStatus.SUCCEEDED:
            unit.account_of(top_up.owner_id).credit_top_up(
                top_up.id, top_up.amount_cents, notification.reference
            )
        return outcome
    payout = unit.find(Payout, notification.subject_id)
    if payout is None or payout.provider != notification.provider:
        return NotificationOutcome.UNKNOWN_SUBJECT
    if notification.status not in TRANSFER_STATUSES:
        return NotificationOutcome.NOT_APPLICABLE
    outcome, settlement = payout.follow_provider(
        TransferStatus(notification.status),
        notification.reference,
        notification.amount_cents,
        notification.currency,
        notification.failure_code,
    )
    settle_payout(unit, payout, settlement)
    return outcome


def settle_payout(unit: UnitOfWork, payout: Payout, settlement: PayoutSettlement | None) -> None:
    """The account's side of a payout's end: posted, or voided back to the account."""
    if settlement is None:
        return
    account = unit.account_of(payout.owner_id)
    if settlement == PayoutSettlement.POST:
        account.post_payout(payout.id)
    else:
        account.void_payout(payout.id, payout.top_up_id)
