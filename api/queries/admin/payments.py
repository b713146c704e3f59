"""Admins audit the payment provider's notifications: every verified one received, and
what applying it changed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aggregates.payment_notification import NotificationOutcome
from api.deps import AdminUser, PageParams, PaymentQueriesDep, PaymentsReadModel
from api.queries.params import query_responses
from api.schemas import MoneyOut, PageOut, money
from queries.payments import PaymentNotificationSummary

router = APIRouter(prefix="/admin", tags=["admin"])


class PaymentNotificationOut(BaseModel):
    """A verified notification from the payment provider, as received."""

    id: UUID
    provider: str = Field(examples=["sandbox"])
    event_id: str = Field(description="The provider's id of the notification.")
    event_type: str = Field(examples=["payment_intent.succeeded"])
    subject: str | None = Field(
        description="What it is about (a top-up or a payout), if it names one of ours.",
        examples=["top_up"],
    )
    subject_id: UUID | None = Field(description="The top-up's or payout's id.")
    reference: str | None = Field(description="The provider's id of the payment or transfer.")
    status: str | None = Field(description="The status the provider reported.")
    amount: MoneyOut | None = Field(description="The amount the provider reported.")
    currency: str | None = Field(examples=["usd"])
    failure_code: str | None = Field(examples=[None])
    outcome: NotificationOutcome = Field(
        description="What applying it changed: `applied` (it moved its top-up or payout, "
        "and the money, on), `already_known`, `amount_mismatch`, `reference_mismatch`, "
        "`contradicts_final_state`, `unknown_subject` or `not_applicable`.",
        examples=["applied"],
    )
    occurred_at: datetime = Field(description="When the provider says it happened.")
    received_at: datetime
    position: int = Field(description="The event store position it was recorded at.")

    @classmethod
    def of(cls, notification: PaymentNotificationSummary) -> PaymentNotificationOut:
        return cls(
            id=notification.id,
            provider=notification.provider,
            event_id=notification.event_id,
            event_type=notification.event_type,
            subject=notification.subject,
            subject_id=notification.subject_id,
            reference=notification.reference,
            status=notification.status,
            amount=None if notification.amount_cents is None else money(notification.amount_cents),
            currency=notification.currency,
            failure_code=notification.failure_code,
            outcome=NotificationOutcome(notification.outcome),
            occurred_at=notification.occurred_at,
            received_at=notification.received_at,
            position=notification.position,
        )


class PaymentNotificationPage(PageOut[PaymentNotificationOut]):
    pass


@router.get(
    "/payments/notifications",
    summary="Payment notifications",
    description="Every verified notification the payment provider sent, newest first, "
    "with what applying it changed; `outcome=amount_mismatch` (for one) lists those "
    "that credited nothing because the provider's amount differed.",
    responses=query_responses(401, 403, 422, 503),
)
def list_payment_notifications(
    admin: AdminUser,
    payments: PaymentQueriesDep,
    _: PaymentsReadModel,
    page: PageParams,
    outcome: Annotated[
        NotificationOutcome | None,
        Query(description="Only this outcome (all if left out).", examples=["applied"]),
    ] = None,
) -> PaymentNotificationPage:
    return PaymentNotificationPage.of(
        payments.notifications(admin.viewer, None if outcome is None else outcome.value, page),
        PaymentNotificationOut.of,
    )
