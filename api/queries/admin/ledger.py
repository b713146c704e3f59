"""The ledger's trial balance."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import AccountQueriesDep, AccountsReadModel, AdminUser, PageParams
from api.queries.params import query_responses
from api.schemas import MoneyOut, money
from queries.accounts import CounterAccount, TrialBalance

router = APIRouter(prefix="/admin", tags=["admin"])


class TrialBalanceLineOut(BaseModel):
    account_id: UUID
    account: CounterAccount = Field(
        description="A system account — `payments_in` (money the payment provider "
        "confirmed paid in), `payouts_in_transit` (payouts and refunds sent and not yet "
        "confirmed paid or failed), `payments_out` (what the provider confirmed paid out), "
        "`platform_revenue`, or `payments` (deposits and payouts made before top-ups) — or "
        "`user`, a user's account.",
        examples=["user"],
    )
    owner_id: UUID | None = Field(description="The user, for a user's account.")
    owner_name: str | None = Field(
        description="The user's full name (`erased user` once they were erased), or the "
        "system account's name.",
        examples=["Ana Lopez"],
    )
    balance: MoneyOut = Field(examples=["250.00"])


class TrialBalanceOut(BaseModel):
    """Every account with a movement (one page of them) and the sum of all their
    balances, which double entry keeps at zero."""

    items: list[TrialBalanceLineOut] = Field(
        description="The system accounts with a movement (`payments_in`, "
        "`payouts_in_transit`, `payments_out`, `platform_revenue`, `payments`), then user "
        "accounts by owner name."
    )
    total: int = Field(description="Accounts in all pages.", examples=[12])
    limit: int = Field(examples=[20])
    offset: int = Field(examples=[0])
    sum: MoneyOut = Field(
        description="The sum of every account's balance: always 0.00.", examples=["0.00"]
    )
    balanced: bool = Field(description="Whether `sum` is zero.")

    @classmethod
    def of(cls, trial: TrialBalance) -> TrialBalanceOut:
        return cls(
            items=[
                TrialBalanceLineOut(
                    account_id=line.account_id,
                    account=line.account,
                    owner_id=line.owner_id,
                    owner_name=line.owner_name,
                    balance=money(line.balance_cents),
                )
                for line in trial.lines
            ],
            total=trial.accounts_total,
            limit=trial.limit,
            offset=trial.offset,
            sum=money(trial.total_cents),
            balanced=trial.total_cents == 0,
        )


@router.get(
    "/ledger/trial-balance",
    summary="Trial balance",
    description="Per-account balances summed from the double-entry ledger, and their sum, "
    "which is zero: `payments_in` is negative by what the payment provider confirmed "
    "paid in, `payments_out` positive by what it confirmed paid out, and "
    "`payouts_in_transit` holds what is on its way out.",
    responses=query_responses(401, 403, 422, 503),
)
def trial_balance(
    admin: AdminUser, accounts: AccountQueriesDep, _: AccountsReadModel, page: PageParams
) -> TrialBalanceOut:
    return TrialBalanceOut.of(accounts.trial_balance(admin.viewer, page))
