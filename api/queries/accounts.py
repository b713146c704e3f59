"""Account queries over HTTP: the caller's own balance and statement. (The trial
balance is in ``api.queries.admin.ledger``.)"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import AccountQueriesDep, AccountsReadModel, CurrentUser, PageParams
from api.queries.params import query_responses
from api.schemas import MoneyOut, PageOut, money
from queries.accounts import AccountBalance, CounterAccount, StatementEntry

router = APIRouter(prefix="/accounts", tags=["accounts"])


class AccountOut(BaseModel):
    """The caller's account. ``available`` is ``balance`` minus ``held`` (money set
    aside for pending and confirmed bookings): what can be booked or paid out."""

    account_id: UUID
    owner_id: UUID
    balance: MoneyOut = Field(examples=["500.00"])
    held: MoneyOut = Field(examples=["100.00"])
    available: MoneyOut = Field(examples=["400.00"])
    updated_at: datetime

    @classmethod
    def of(cls, account: AccountBalance) -> AccountOut:
        return cls(
            account_id=account.account_id,
            owner_id=account.owner_id,
            balance=money(account.balance_cents),
            held=money(account.held_cents),
            available=money(account.available_cents),
            updated_at=account.updated_at,
        )


class StatementEntryOut(BaseModel):
    """One movement on the account, with the account's figures after it."""

    id: UUID
    account_id: UUID
    position: int = Field(description="The event store position of the movement.")
    recorded_at: datetime
    kind: str = Field(
        description="What happened: top_up (a provider-confirmed payment in), payout "
        "(a host's payout sent), refund (a withdrawal sent back to a card), "
        "payout_voided (a payout or refund that failed, back on the account), "
        "hold_placed, hold_adjusted, hold_released, hold_captured, commission, "
        "payment_received (a host's share of a captured booking), or deposit (before "
        "top-ups).",
        examples=["top_up"],
    )
    amount: MoneyOut = Field(
        description="The signed change of the balance (0.00 for holds).", examples=["250.00"]
    )
    held_delta: MoneyOut = Field(
        description="The signed change of the held amount.", examples=["0.00"]
    )
    balance_after: MoneyOut = Field(examples=["750.00"])
    held_after: MoneyOut = Field(examples=["100.00"])
    available_after: MoneyOut = Field(examples=["650.00"])
    counter_account: CounterAccount | None = Field(
        description="The other side of a money movement: `payments_in` (top-ups), "
        "`payouts_in_transit` (payouts and refunds, and their voids), `platform_revenue`, "
        "`payments` (deposits and payouts before top-ups), or another `user`'s account; "
        "null for holds.",
        examples=["payments_in"],
    )
    counter_account_id: UUID | None
    booking_id: UUID | None = Field(description="The booking it belongs to, if any.")

    @classmethod
    def of(cls, entry: StatementEntry) -> StatementEntryOut:
        return cls(
            id=entry.id,
            account_id=entry.account_id,
            position=entry.position,
            recorded_at=entry.recorded_at,
            kind=entry.kind,
            amount=money(entry.amount_cents),
            held_delta=money(entry.held_delta_cents),
            balance_after=money(entry.balance_after_cents),
            held_after=money(entry.held_after_cents),
            available_after=money(entry.available_after_cents),
            counter_account=entry.counter_account,
            counter_account_id=entry.counter_account_id,
            booking_id=entry.booking_id,
        )


class StatementPage(PageOut[StatementEntryOut]):
    pass


@router.get(
    "/me",
    summary="My balance",
    description="The caller's balance, held amount and available amount. 404 "
    "(`account_not_found`) until the accounts read model has seen the account opened "
    "(send `X-Prep-Min-Position` after registering to wait for it).",
    responses=query_responses(401, 404, 422, 503),
)
def my_account(user: CurrentUser, accounts: AccountQueriesDep, _: AccountsReadModel) -> AccountOut:
    return AccountOut.of(accounts.account(user.viewer))


@router.get(
    "/me/entries",
    summary="My statement",
    description="The caller's account statement, newest first: every top-up credited, "
    "payout or refund sent (and voided), hold placed, adjusted, released or captured, and "
    "payment received, each with the account's figures after it.",
    responses=query_responses(401, 422, 503),
)
def my_statement(
    user: CurrentUser, accounts: AccountQueriesDep, _: AccountsReadModel, page: PageParams
) -> StatementPage:
    return StatementPage.of(accounts.entries(user.viewer, page), StatementEntryOut.of)
