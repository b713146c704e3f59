"""Admins audit the payment provider's notifications: every verified one received, and
what applying it changed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aggregates.payment_notification import NotificationOutcome
from api.deps import AdminUser, PageParams, PaymentQueriesDep, PaymentsReadModel, ServicesDep
from api.queries.params import POINT_IN_TIME_HELP, PointInTime, query_responses
from api.schemas import MoneyOut, PageOut, money
from prep_es.services.reconciliation import Difference, reconcile
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


class DifferenceOut(BaseModel):
    kind: str = Field(
        description="`payment_not_credited`, `payment_unknown`, `credit_without_payment`, "
        "`amount_differs`, `transfer_not_posted`, `transfer_unknown` or "
        "`posted_without_transfer`.",
        examples=["payment_not_credited"],
    )
    subject: str = Field(examples=["top_up"])
    id: UUID | None = Field(description="The top-up's or payout's id, if the ledger has one.")
    reference: str | None = Field(description="The provider's id of the payment or transfer.")
    ledger_amount: MoneyOut | None
    provider_amount: MoneyOut | None
    detail: str

    @classmethod
    def of(cls, difference: Difference) -> DifferenceOut:
        return cls(
            kind=difference.kind,
            subject=difference.subject,
            id=difference.id,
            reference=difference.reference,
            ledger_amount=None
            if difference.ledger_cents is None
            else money(difference.ledger_cents),
            provider_amount=None
            if difference.provider_cents is None
            else money(difference.provider_cents),
            detail=difference.detail,
        )


class ReconciliationOut(BaseModel):
    """The provider's records against the ledger's: empty `differences` when they agree."""

    provider: str
    test_mode: bool
    since: datetime | None
    payments_checked: int
    transfers_checked: int
    differences: list[DifferenceOut]


@router.get(
    "/payments/reconciliation",
    summary="Reconcile with the payment provider",
    description="Compares the provider's payments and transfers made since `since` (all "
    "if left out) with the ledger's top-ups, payouts and refunds, read from the event "
    "store: a confirmed payment never credited, a credit with no confirmed payment, "
    "amounts that differ, transfers paid but not posted and the reverse. The same as "
    "`prep-es payments reconcile`. Asks the provider, so it is not instant.",
    responses=query_responses(401, 403, 422, 503),
)
def reconcile_payments(
    _: AdminUser,
    services: ServicesDep,
    since: Annotated[PointInTime | None, Query(description=POINT_IN_TIME_HELP)] = None,
) -> ReconciliationOut:
    result = reconcile(services.runtime.app, services.runtime.payments, since)
    return ReconciliationOut(
        provider=result.provider,
        test_mode=result.test_mode,
        since=result.since,
        payments_checked=result.payments_checked,
        transfers_checked=result.transfers_checked,
        differences=[DifferenceOut.of(difference) for difference in result.differences],
    )
