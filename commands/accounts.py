"""Account commands: deposits (as a payment provider's webhook would call them) and
payouts."""

from __future__ import annotations

from typing import Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict

from aggregates.account import Account
from commands.context import CommandContext, require_role
from commands.processor import CommandProcessor, Executed
from commands.unit_of_work import UnitOfWork


class DepositFunds(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount_cents: int


class RequestPayout(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount_cents: int


class AccountEntry(BaseModel):
    """One movement of money, with the account's figures after it."""

    id: UUID
    account_id: UUID
    kind: Literal["deposit", "payout"]
    amount_cents: int
    balance_cents: int
    held_cents: int
    available_cents: int


class AccountCommands:
    def __init__(self, processor: CommandProcessor) -> None:
        self._processor = processor

    def deposit_funds(
        self, command: DepositFunds, context: CommandContext
    ) -> Executed[AccountEntry]:
        owner = require_role(context, "customer", "host", "admin", "analyst")

        def decide(unit: UnitOfWork) -> AccountEntry:
            account = unit.account_of(owner.user_id)
            entry_id = uuid4()
            account.deposit(entry_id, command.amount_cents)
            return _entry(account, entry_id, "deposit", command.amount_cents)

        return self._processor.execute("deposit_funds", context, command, AccountEntry, decide)

    def request_payout(
        self, command: RequestPayout, context: CommandContext
    ) -> Executed[AccountEntry]:
        host = require_role(context, "host")

        def decide(unit: UnitOfWork) -> AccountEntry:
            account = unit.account_of(host.user_id)
            entry_id = uuid4()
            account.request_payout(entry_id, command.amount_cents)
            return _entry(account, entry_id, "payout", command.amount_cents)

        return self._processor.execute("request_payout", context, command, AccountEntry, decide)


def _entry(
    account: Account, entry_id: UUID, kind: Literal["deposit", "payout"], amount_cents: int
) -> AccountEntry:
    return AccountEntry(
        id=entry_id,
        account_id=account.id,
        kind=kind,
        amount_cents=amount_cents,
        balance_cents=account.balance_cents,
        held_cents=account.held_cents,
        available_cents=account.available_cents,
    )
