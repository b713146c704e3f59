"""Account commands over HTTP: top-ups through the payment provider, payouts to hosts,
withdrawals back to the cards, and a host's payout destination. Money enters only when
the provider confirms a top-up (``api.commands.payments``, the webhook)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, StringConstraints

from aggregates.payment_provider import TransferMethod
from aggregates.payout import PayoutStatus
from aggregates.top_up import TopUpStatus
from api.commands.execution import execute
from api.deps import Command, PayoutCommandsDep, TopUpCommandsDep
from api.problems import problem_response
from api.schemas import (
    MoneyIn,
    MoneyOut,
    PositionField,
    RequestBody,
    cents,
    money,
    problems,
)
from commands.payouts import (
    AccountFigures,
    PayoutsRequested,
    PayoutState,
    RequestPayout,
    SetPayoutDestination,
)
from commands.top_ups import RequestTopUp, TopUpState

router = APIRouter(prefix="/accounts", tags=["accounts"])


class AmountBody(RequestBody):
    amount: MoneyIn


class TopUpBody(RequestBody):
    amount: MoneyIn
    payment_method: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="A payment method id from the provider's client library (`pm_...`; in "
        "the sandbox, a Stripe test id such as `pm_card_visa`). Never a card number.",
        examples=["pm_card_visa"],
    )


class PayoutDestinationBody(RequestBody):
    destination: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="Where payouts go: a Stripe connected account id (`acct_...`); any "
        "name in the sandbox (one starting with `fail` makes its payouts fail).",
        examples=["acct_1Example"],
    )


class TopUpOut(BaseModel):
    """A top-up and where its payment stands. The account is credited once, when the
    provider's signed notification confirms the payment (`status` `succeeded`)."""

    id: UUID
    amount: MoneyOut
    payment_method: str
    status: TopUpStatus
    failure_code: str | None = Field(description="Why the provider declined, if it did.")
    payment_reference: str | None = Field(description="The provider's id of the payment.")
    provider: str
    test_mode: bool = Field(description="True when no real money moves (the sandbox).")
    position: PositionField

    @classmethod
    def of(cls, top_up: TopUpState, position: int) -> TopUpOut:
        return cls(
            id=top_up.id,
            amount=money(top_up.amount_cents),
            payment_method=top_up.payment_method,
            status=top_up.status,
            failure_code=top_up.failure_code,
            payment_reference=top_up.payment_reference,
            provider=top_up.provider,
            test_mode=top_up.test_mode,
            position=position,
        )


class PayoutOut(BaseModel):
    """Money on its way out through the provider: `pending` until it says it paid
    (`paid`) or failed (`failed`, `canceled`: the amount is back on the account)."""

    id: UUID
    amount: MoneyOut
    method: TransferMethod = Field(
        description="`payout` to the host's destination, `refund` to a top-up's card."
    )
    status: PayoutStatus
    destination: str | None
    top_up_id: UUID | None = Field(description="The top-up a refund goes back to.")
    transfer_reference: str | None = Field(description="The provider's id of the transfer.")
    failure_code: str | None
    provider: str

    @classmethod
    def of(cls, payout: PayoutState) -> PayoutOut:
        return cls(
            id=payout.id,
            amount=money(payout.amount_cents),
            method=payout.method,
            status=payout.status,
            destination=payout.destination,
            top_up_id=payout.top_up_id,
            transfer_reference=payout.transfer_reference,
            failure_code=payout.failure_code,
            provider=payout.provider,
        )


class AccountFiguresOut(BaseModel):
    account_id: UUID
    balance: MoneyOut
    held: MoneyOut = Field(description="Held for active bookings.")
    available: MoneyOut = Field(description="balance − held: what can be spent or paid out.")
    payout_destination: str | None

    @classmethod
    def of(cls, figures: AccountFigures) -> AccountFiguresOut:
        return cls(
            account_id=figures.account_id,
            balance=money(figures.balance_cents),
            held=money(figures.held_cents),
            available=money(figures.available_cents),
            payout_destination=figures.payout_destination,
        )


class AccountFiguresAnswer(AccountFiguresOut):
    position: PositionField

    @classmethod
    def answer(cls, figures: AccountFigures, position: int) -> AccountFiguresAnswer:
        return cls(**AccountFiguresOut.of(figures).model_dump(), position=position)


class PayoutsOut(BaseModel):
    """The payouts a request made (a withdrawal may refund several top-ups, newest
    first), and the account's figures once their amount was reserved."""

    payouts: list[PayoutOut]
    account: AccountFiguresOut
    test_mode: bool = Field(description="True when no real money moves (the sandbox).")
    position: PositionField

    @classmethod
    def of(cls, requested: PayoutsRequested, position: int) -> PayoutsOut:
        return cls(
            payouts=[PayoutOut.of(payout) for payout in requested.payouts],
            account=AccountFiguresOut.of(requested.account),
            test_mode=requested.test_mode,
            position=position,
        )


@router.post(
    "/me/top-ups",
    status_code=202,
    summary="Top up the account",
    description="Customers only. Pays `amount` with a payment method id from the provider "
    "and answers with the top-up, usually `processing`: the account is credited once, when "
    "the provider's signed notification confirms the payment (`succeeded`); a declined "
    "card ends it `failed` with a `failure_code`. Limits per top-up and per UTC day apply "
    "(declined tries count). Send an `Idempotency-Key`: a retry never pays twice, and a "
    "retry after a 503 from the provider submits the payment then.",
    responses=problems(401, 403, 422, 503),
)
async def request_top_up(
    body: TopUpBody, top_ups: TopUpCommandsDep, context: Command, response: Response
) -> TopUpOut:
    return await execute(
        top_ups.request_top_up,
        RequestTopUp(amount_cents=cents(body.amount), payment_method=body.payment_method),
        context,
        response,
        TopUpOut.of,
    )


@router.put(
    "/me/payout-destination",
    summary="Set where payouts go",
    description="Hosts only. The provider must know the destination.",
    responses=problems(401, 403, 422),
)
async def set_payout_destination(
    body: PayoutDestinationBody, payouts: PayoutCommandsDep, context: Command, response: Response
) -> AccountFiguresAnswer:
    return await execute(
        payouts.set_payout_destination,
        SetPayoutDestination(destination=body.destination),
        context,
        response,
        AccountFiguresAnswer.answer,
    )


@router.post(
    "/me/payouts",
    status_code=201,
    summary="Request a payout",
    description="Hosts only, once a payout destination is set (409 before). Takes `amount` "
    "out of the available balance at once (402 beyond it) and sends it through the "
    "provider: `pending` until the provider says it paid, or back on the account if it "
    "fails. Send an `Idempotency-Key`.",
    responses=problems(401, 402, 403, 409, 422, 503),
)
async def request_payout(
    body: AmountBody, payouts: PayoutCommandsDep, context: Command, response: Response
) -> PayoutsOut:
    return await execute(
        payouts.request_payout,
        RequestPayout(amount_cents=cents(body.amount)),
        context,
        response,
        PayoutsOut.of,
    )


@router.post(
    "/me/withdrawals",
    status_code=201,
    summary="Withdraw to the card",
    description="Customers only. Sends `amount` of the available balance (402 beyond it) "
    "back to the cards it came from, as refunds of the newest top-ups first; 409 "
    "`not_refundable` for money that came from no top-up. Each refund is `pending` until "
    "the provider says it paid. Send an `Idempotency-Key`.",
    responses=problems(401, 402, 403, 409, 422, 503),
)
async def request_withdrawal(
    body: AmountBody, payouts: PayoutCommandsDep, context: Command, response: Response
) -> PayoutsOut:
    return await execute(
        payouts.request_withdrawal,
        RequestPayout(amount_cents=cents(body.amount)),
        context,
        response,
        PayoutsOut.of,
    )


@router.post(
    "/me/deposits",
    status_code=410,
    deprecated=True,
    summary="Deposits are gone: top up",
    description="Answers 410 `deposits_removed`. Money enters only through the payment "
    "provider: `POST /api/v1/accounts/me/top-ups`.",
    responses=problems(410),
    response_class=Response,
)
async def deposit_funds() -> Response:
    return problem_response(
        None,
        status=410,
        code="deposits_removed",
        detail="deposits are gone: money enters only through the payment provider; "
        "POST /api/v1/accounts/me/top-ups {amount, payment_method}",
        instance="/api/v1/accounts/me/deposits",
        headers={"Link": '</api/v1/accounts/me/top-ups>; rel="successor-version"'},
    )
