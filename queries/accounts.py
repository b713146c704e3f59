"""Account queries over the ``accounts`` read model: a user's own balance and
statement, and the admins' trial balance.

Statements are newest first (as bank statements and Stripe's balance transactions
are); each entry carries the account's balance and held amount after it, so a page
reads on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel

from aggregates.account import SYSTEM_ACCOUNT_NAMES
from aggregates.errors import NotFound, PermissionDenied
from projections.accounts import AccountsProjection
from projections.database import ReadDatabase, Row, Sql, uuid_from_row, uuid_parameter
from queries.base import (
    BATCH_ROWS,
    ERASED_USER_NAME,
    BatchRow,
    Page,
    PageRequest,
    Viewer,
    keyset_rows,
)

ACCOUNTS = AccountsProjection.view("accounts")
ENTRIES = AccountsProjection.view("entries")
LEDGER = AccountsProjection.view("ledger")
OWNERS = AccountsProjection.view("owners")

CounterAccount = Literal[
    "payments_in", "payouts_in_transit", "payments_out", "platform_revenue", "payments", "user"
]
SYSTEM_ACCOUNTS_IN_ORDER: tuple[CounterAccount, ...] = (
    "payments_in",
    "payouts_in_transit",
    "payments_out",
    "platform_revenue",
    "payments",
)
"""The system accounts as the trial balance lists them, before users' accounts:
money in, on its way out, out, earned, then the account of stores written before
top-ups."""
assert set(SYSTEM_ACCOUNT_NAMES.values()) == set(SYSTEM_ACCOUNTS_IN_ORDER)
_SYSTEM_ACCOUNTS: dict[UUID, CounterAccount] = {
    account_id: name
    for name in SYSTEM_ACCOUNTS_IN_ORDER
    for account_id, system_name in SYSTEM_ACCOUNT_NAMES.items()
    if system_name == name
}


class AccountBalance(BaseModel):
    account_id: UUID
    owner_id: UUID
    balance_cents: int
    held_cents: int
    available_cents: int
    updated_at: datetime


class StatementEntry(BaseModel):
    """One movement on the account, with the account's figures after it.

    ``amount_cents`` is the signed change of the balance; ``held_delta_cents`` the
    change of the held amount (holds move no money). ``counter_account`` is the other
    side of a money movement: a clearing account (``payments_in`` for a top-up,
    ``payouts_in_transit`` for a payout or refund and its void), ``platform_revenue``,
    the old external ``payments`` account (deposits and payouts of stores written before
    top-ups), or another ``user``'s account (``counter_account_id``); ``None`` for
    holds."""

    id: UUID
    account_id: UUID
    position: int
    recorded_at: datetime
    kind: str
    amount_cents: int
    held_delta_cents: int
    balance_after_cents: int
    held_after_cents: int
    available_after_cents: int
    counter_account: CounterAccount | None
    counter_account_id: UUID | None
    booking_id: UUID | None


class TrialBalanceLine(BaseModel):
    account_id: UUID
    account: CounterAccount
    """Any name but ``user`` is a system account (``SYSTEM_ACCOUNTS_IN_ORDER``)."""
    owner_id: UUID | None
    owner_name: str | None
    balance_cents: int


class TrialBalance(BaseModel):
    """Every account with a movement, and the sum of their balances: zero in a
    double-entry ledger. ``lines`` is one page of ``accounts_total`` accounts — the
    system accounts with a movement (``SYSTEM_ACCOUNTS_IN_ORDER``), then user accounts
    by owner name (those of erased users last, named ``ERASED_USER_NAME``);
    ``total_cents`` sums all of them."""

    lines: list[TrialBalanceLine]
    accounts_total: int
    total_cents: int
    limit: int
    offset: int


def _counter_account(account_id: UUID | None) -> CounterAccount | None:
    if account_id is None:
        return None
    return _SYSTEM_ACCOUNTS.get(account_id, "user")


class AccountQueries:
    def __init__(self, database: ReadDatabase) -> None:
        self._database = database

    def account(self, viewer: Viewer) -> AccountBalance:
        """The viewer's own account; 404 (``account_not_found``) until the read model
        has seen it opened."""
        account = self.find_account(viewer)
        if account is None:
            raise NotFound("no account for this user yet", code="account_not_found")
        return account

    def find_account(self, viewer: Viewer) -> AccountBalance | None:
        """The viewer's own account, if the read model has seen it opened."""
        with self._database.reading() as sql:
            row = sql.fetchone(
                "SELECT account_id, owner_id, balance_cents, held_cents, available_cents, "
                f"updated_at FROM {ACCOUNTS} WHERE owner_id = %s",
                (uuid_parameter(self._database.dialect, viewer.user_id),),
            )
        return None if row is None else AccountBalance.model_validate(row)

    def every_entry(
        self, viewer: Viewer, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[StatementEntry]:
        """The viewer's whole statement, oldest first, read ``batch_rows`` at a time
        (see :func:`queries.base.keyset_batches`)."""
        owner = uuid_parameter(self._database.dialect, viewer.user_id)

        def batch(after: BatchRow | None) -> list[Row]:
            following, params = "", []
            if after is not None:
                following = "AND (e.position, e.line) > (%s, %s) "
                params = [after["position"], after["line"]]
            with self._database.reading() as sql:
                return sql.fetchall(
                    "SELECT e.id, e.account_id, e.position, e.line, e.recorded_at, e.kind, "
                    "e.amount_cents, e.held_delta_cents, e.balance_after_cents, "
                    "e.held_after_cents, e.counter_account_id, e.booking_id "
                    f"FROM {ENTRIES} e WHERE e.account_id = "
                    f"(SELECT account_id FROM {ACCOUNTS} WHERE owner_id = %s) {following}"
                    "ORDER BY e.position, e.line LIMIT %s",
                    (owner, *params, batch_rows),
                )

        for row in keyset_rows(batch, batch_rows):
            yield _statement_entry(row)

    def entries(self, viewer: Viewer, page: PageRequest | None = None) -> Page[StatementEntry]:
        """The viewer's own statement, newest first."""
        page = page or PageRequest()
        where = f"e.account_id = (SELECT account_id FROM {ACCOUNTS} WHERE owner_id = %s)"
        with self._database.reading() as sql:
            rows = sql.fetchall(
                "SELECT e.id, e.account_id, e.position, e.recorded_at, e.kind, e.amount_cents, "
                "e.held_delta_cents, e.balance_after_cents, e.held_after_cents, "
                "e.counter_account_id, e.booking_id, count(*) OVER () AS total "
                f"FROM {ENTRIES} e WHERE {where} "
                "ORDER BY e.position DESC, e.line DESC LIMIT %s OFFSET %s",
                (uuid_parameter(self._database.dialect, viewer.user_id), page.limit, page.offset),
            )
            total = self._total(
                sql,
                rows,
                page,
                f"SELECT count(*) FROM {ENTRIES} e WHERE {where}",
                (uuid_parameter(self._database.dialect, viewer.user_id),),
            )
        return Page[StatementEntry](
            items=[_statement_entry(row) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    def trial_balance(self, viewer: Viewer, page: PageRequest | None = None) -> TrialBalance:
        """Per-account balances summed from the ledger, and their total (0). Admins
        only (403 for anyone else)."""
        page = page or PageRequest(limit=100)
        if not viewer.is_admin:
            raise PermissionDenied("only admins see the trial balance")
        # Window functions run after GROUP BY and before LIMIT: the counts and sums
        # cover every account, the rows one page — all from one snapshot.
        dialect = self._database.dialect
        ranks = " ".join(f"WHEN %s THEN {rank}" for rank in range(len(SYSTEM_ACCOUNTS_IN_ORDER)))
        with self._database.reading() as sql:
            rows = sql.fetchall(
                "SELECT l.account_id, a.owner_id, o.full_name AS owner_name, "
                "o.user_id AS named_owner_id, "
                "sum(l.amount_cents) AS balance_cents, "
                "count(*) OVER () AS accounts_total, "
                "sum(sum(l.amount_cents)) OVER () AS total_cents, "
                f"CASE l.account_id {ranks} ELSE {len(SYSTEM_ACCOUNTS_IN_ORDER)} END AS rank "
                f"FROM {LEDGER} l LEFT JOIN {ACCOUNTS} a ON a.account_id = l.account_id "
                f"LEFT JOIN {OWNERS} o ON o.user_id = a.owner_id "
                "GROUP BY l.account_id, a.owner_id, o.full_name, o.user_id "
                # Erased owners (no name) last on both backends, which sort NULL apart.
                "ORDER BY rank, o.full_name IS NULL, o.full_name, l.account_id "
                "LIMIT %s OFFSET %s",
                (
                    *(uuid_parameter(dialect, account_id) for account_id in _SYSTEM_ACCOUNTS),
                    page.limit,
                    page.offset,
                ),
            )
            if rows:
                accounts_total = int(rows[0]["accounts_total"])
                total_cents = int(rows[0]["total_cents"])
            else:
                summary = sql.fetchone(
                    "SELECT count(DISTINCT account_id) AS accounts_total, "
                    f"COALESCE(sum(amount_cents), 0) AS total_cents FROM {LEDGER}"
                )
                assert summary is not None
                accounts_total = int(summary["accounts_total"])
                total_cents = int(summary["total_cents"])
        return TrialBalance(
            lines=[_trial_balance_line(row) for row in rows],
            accounts_total=accounts_total,
            total_cents=total_cents,
            limit=page.limit,
            offset=page.offset,
        )

    @staticmethod
    def _total(
        sql: Sql, rows: list[Row], page: PageRequest, count: str, params: tuple[Any, ...]
    ) -> int:
        """The total that came with the page, or counted alone past its end."""
        if rows:
            return int(rows[0]["total"])
        return int(sql.scalar(count, params)) if page.offset else 0


def _statement_entry(row: Row) -> StatementEntry:
    counter = row["counter_account_id"]
    counter_account_id = None if counter is None else uuid_from_row(counter)
    return StatementEntry.model_validate(
        {
            **row,
            "available_after_cents": row["balance_after_cents"] - row["held_after_cents"],
            "counter_account": _counter_account(counter_account_id),
            "counter_account_id": counter_account_id,
        }
    )


def _trial_balance_line(row: Row) -> TrialBalanceLine:
    account_id = uuid_from_row(row["account_id"])
    account = _counter_account(account_id)
    assert account is not None
    return TrialBalanceLine(
        account_id=account_id,
        account=account,
        owner_id=row["owner_id"],
        owner_name=_owner_name(row) or SYSTEM_ACCOUNT_NAMES.get(account_id),
        balance_cents=int(row["balance_cents"]),
    )


def _owner_name(row: Row) -> str | None:
    """The owner's name; ``ERASED_USER_NAME`` for an owner who was erased (known, with
    no name)."""
    if row["named_owner_id"] is not None and row["owner_name"] is None:
        return ERASED_USER_NAME
    return str(row["owner_name"]) if row["owner_name"] is not None else None
