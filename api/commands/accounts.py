"""Account commands over HTTP: deposits into one's own account, payouts to hosts."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from api.commands.execution import execute
from api.deps import AccountCommandsDep, Command
from api.schemas import (
    MoneyIn,
    MoneyOut,
    PositionField,
    RequestBody,
    cents,
    money,
    problems,
)
from commands.accounts import AccountEntry, DepositFunds, RequestPayout

router = APIRouter(prefix="/accounts", tags=["accounts"])


class AmountBody(RequestBody):
    amount: MoneyIn


class EntryOut(BaseModel):
    """The movement made, with the account's figures after it."""

    id: UUID
    account_id: UUID
    kind: Literal["deposit", "payout"]
    amount: MoneyOut
    balance: MoneyOut
    held: MoneyOut = Field(description="Held for active bookings.")
    available: MoneyOut = Field(description="balance − held: what can be spent or paid out.")
    position: PositionField

    @classmethod
    def of(cls, entry: AccountEntry, position: int) -> EntryOut:
        return cls(
            id=entry.id,
            account_id=entry.account_id,
            kind=entry.kind,
            amount=money(entry.amount_cents),
            balance=money(entry.balance_cents),
            held=money(entry.held_cents),
            available=money(entry.available_cents),
            position=position,
        )


@router.post(
    "/me/deposits",
    status_code=201,
    summary="Deposit funds",
    description="Credits the caller's account from the external payments account, as a "
    "payment provider's webhook would. Send an `Idempotency-Key` so a retried deposit "
    "is made once.",
    responses=problems(401, 403, 422),
)
async def deposit_funds(
    body: AmountBody, accounts: AccountCommandsDep, context: Command, response: Response
) -> EntryOut:
    return await execute(
        accounts.deposit_funds,
        DepositFunds(amount_cents=cents(body.amount)),
        context,
        response,
        EntryOut.of,
    )


@router.post(
    "/me/payouts",
    status_code=201,
    summary="Request a payout",
    description="Hosts only. Pays out of the available balance to the external payments "
    "account; 402 beyond it.",
    responses=problems(401, 402, 403, 422),
)
async def request_payout(
    body: AmountBody, accounts: AccountCommandsDep, context: Command, response: Response
) -> EntryOut:
    return await execute(
        accounts.request_payout,
        RequestPayout(amount_cents=cents(body.amount)),
        context,
        response,
        EntryOut.of,
    )
