"""Payment queries over HTTP: the caller's own top-ups and payouts (refunds to the card
included), as the payments read model follows the provider. (Notifications, for
admins, are in ``api.queries.admin.payments``.)"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from aggregates.payment_provider import TransferMethod
from aggregates.payout import PayoutStatus
from aggregates.top_up import TopUpStatus
from api.deps import CurrentUser, PageParams, PaymentQueriesDep, PaymentsReadModel
from api.queries.params import query_responses
from api.schemas import MoneyOut, PageOut, money
from queries.payments import PayoutSummary, TopUpSummary

router = APIRouter(prefix="/accounts", tags=["accounts"])


class TopUpSummaryOut(BaseModel):
    """A top-up of the caller's and where its payment stands."""

    id: UUID
    amount: MoneyOut = Field(examples=["50.00"])
    payment_method: str = Field(
        description="The provider's payment method id it was paid with.",
        examples=["pm_card_visa"],
    )
    provider: str = Field(examples=["sandbox"])
    status: TopUpStatus = Field(
        description="`requires_payment` until the provider took the payment, `processing` "
        "until it confirmed or declined it, then `succeeded`, `failed` or `canceled`.",
        examples=["succeeded"],
    )
    credited: bool = Field(
        description="Whether the account has the money: once, when the provider's signed "
        "notification confirmed the payment."
    )
    payment_reference: str | None = Field(description="The provider's id of the payment.")
    failure_code: str | None = Field(
        description="Why the provider declined, if it did.", examples=[None]
    )
    requested_at: datetime
    updated_at: datetime
    position: int = Field(description="The event store position of its last change.")

    @classmethod
    def of(cls, top_up: TopUpSummary) -> TopUpSummaryOut:
        return cls(
            id=top_up.id,
            amount=money(top_up.amount_cents),
            payment_method=top_up.payment_method,
            provider=top_up.provider,
            status=TopUpStatus(top_up.status),
            credited=top_up.credited,
            payment_reference=top_up.payment_reference,
            failure_code=top_up.failure_code,
            requested_at=top_up.requested_at,
            updated_at=top_up.updated_at,
            position=top_up.position,
        )


class TopUpPage(PageOut[TopUpSummaryOut]):
    pass


class PayoutSummaryOut(BaseModel):
    """Money of the caller's on its way out through the provider, or gone."""

    id: UUID
    amount: MoneyOut = Field(examples=["120.00"])
    method: TransferMethod = Field(
        description="`payout` to a host's payout destination, `refund` back to the card of "
        "one of a customer's top-ups (a withdrawal).",
        examples=["payout"],
    )
    provider: str = Field(examples=["sandbox"])
    status: PayoutStatus = Field(
        description="`pending` until the provider says it paid (`paid`) or failed "
        "(`failed`, `canceled`: the amount is back on the account).",
        examples=["paid"],
    )
    destination: str | None = Field(description="Where a payout went.")
    top_up_id: UUID | None = Field(description="The top-up a refund goes back to.")
    payment_reference: str | None = Field(
        description="The provider's id of the payment a refund goes back to."
    )
    transfer_reference: str | None = Field(description="The provider's id of the transfer.")
    failure_code: str | None = Field(examples=[None])
    requested_at: datetime
    updated_at: datetime
    position: int = Field(description="The event store position of its last change.")

    @classmethod
    def of(cls, payout: PayoutSummary) -> PayoutSummaryOut:
        return cls(
            id=payout.id,
            amount=money(payout.amount_cents),
            method=TransferMethod(payout.method),
            provider=payout.provider,
            status=PayoutStatus(payout.status),
            destination=payout.destination,
            top_up_id=payout.top_up_id,
            payment_reference=payout.payment_reference,
            transfer_reference=payout.transfer_reference,
            failure_code=payout.failure_code,
            requested_at=payout.requested_at,
            updated_at=payout.updated_at,
            position=payout.position,
        )


class PayoutPage(PageOut[PayoutSummaryOut]):
    pass


@router.get(
    "/me/top-ups",
    summary="My top-ups",
    description="The caller's top-ups, newest first, each with where its payment stands. "
    "Send the `position` of `POST /accounts/me/top-ups` as `X-Prep-Min-Position` to see "
    "the one just made.",
    responses=query_responses(401, 422, 503),
)
def my_top_ups(
    user: CurrentUser, payments: PaymentQueriesDep, _: PaymentsReadModel, page: PageParams
) -> TopUpPage:
    return TopUpPage.of(payments.top_ups(user.viewer, page), TopUpSummaryOut.of)


@router.get(
    "/me/top-ups/{top_up_id}",
    summary="One of my top-ups",
    description="404 (`top_up_not_found`) for a top-up that is not the caller's, as for "
    "one that does not exist.",
    responses=query_responses(401, 404, 422, 503),
)
def my_top_up(
    top_up_id: UUID, user: CurrentUser, payments: PaymentQueriesDep, _: PaymentsReadModel
) -> TopUpSummaryOut:
    return TopUpSummaryOut.of(payments.top_up(user.viewer, top_up_id))


@router.get(
    "/me/payouts",
    summary="My payouts and refunds",
    description="The caller's payouts (hosts) and refunds to the card (customers' "
    "withdrawals), newest first, each with where the provider's transfer stands.",
    responses=query_responses(401, 422, 503),
)
def my_payouts(
    user: CurrentUser, payments: PaymentQueriesDep, _: PaymentsReadModel, page: PageParams
) -> PayoutPage:
    return PayoutPage.of(payments.payouts(user.viewer, page), PayoutSummaryOut.of)


@router.get(
    "/me/payouts/{payout_id}",
    summary="One of my payouts or refunds",
    description="404 (`payout_not_found`) for a payout that is not the caller's, as for "
    "one that does not exist.",
    responses=query_responses(401, 404, 422, 503),
)
def my_payout(
    payout_id: UUID, user: CurrentUser, payments: PaymentQueriesDep, _: PaymentsReadModel
) -> PayoutSummaryOut:
    return PayoutSummaryOut.of(payments.payout(user.viewer, payout_id))
