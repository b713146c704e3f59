"""Accounts: balances, statements and the double-entry ledger of user accounts.

Three tables:

- ``accounts``: one row per user account — balance, held, available, as of its last
  event (``version``).
- ``entries``: the statement. One row per movement seen from a user account, with the
  account's figures after it. A capture is two movements for the customer (the host's
  share to the host's account, the commission to platform revenue); a hold placed,
  adjusted or released moves no money but changes what is held.
- ``ledger``: double-entry lines, from which the trial balance sums each account,
  including the two system accounts that are not aggregates (``payments``,
  ``platform_revenue``). Each movement is recorded once, from the event that carries
  both sides, so every event's lines net to zero and so does every committed state:

      FundsDeposited   user +amount               payments −amount
      PayoutRequested  user −amount               payments +amount
      HoldCaptured     customer −captured         host +payee, platform_revenue +commission
      PaymentReceived  (none: the host side of the capture above)

A small ``owners`` table keeps each user's name and email for the trial balance.

An event whose ``originator_version`` the account row already has is skipped whole,
so a retried batch changes nothing; rows depend only on events in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from typing import Any, ClassVar
from uuid import UUID

from aggregates.account import PAYMENTS_ACCOUNT_ID, PLATFORM_REVENUE_ACCOUNT_ID, Account
from aggregates.base import derived_id
from aggregates.user import User
from projections.base import Projection
from projections.database import Sql

ENTRY_KINDS = (
    "deposit",
    "payout",
    "hold_placed",
    "hold_adjusted",
    "hold_released",
    "hold_captured",
    "commission",
    "payment_received",
)


@dataclass(frozen=True)
class Movement:
    """One statement entry of a user account: the change in balance and in held, and
    with whom (``counter_account_id``; ``None`` when no money moved)."""

    kind: str
    amount_cents: int
    held_delta_cents: int
    counter_account_id: UUID | None
    booking_id: UUID | None
    entry_id: UUID | None = None
    """The id the command gave the entry (deposits and payouts); others derive one."""


@dataclass(frozen=True)
class LedgerLine:
    account_id: UUID
    amount_cents: int
    kind: str
    booking_id: UUID | None = None


class AccountsProjection(Projection):
    name: ClassVar[str] = "accounts"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("accounts", "entries", "ledger", "owners")
    event_types: ClassVar[tuple[type[Any], ...]] = (
        User.UserRegistered,
        Account.AccountOpened,
        Account.FundsDeposited,
        Account.PayoutRequested,
        Account.HoldPlaced,
        Account.HoldAdjusted,
        Account.HoldReleased,
        Account.HoldCaptured,
        Account.PaymentReceived,
    )

    def create_tables(self, sql: Sql) -> None:
        identifier, time, money, number = (
            self.column("id"), self.column("time"), self.column("money"), self.column("int")
        )
        accounts = self.table("accounts")
        sql.execute(
            f"CREATE TABLE {accounts} ("
            f"account_id {identifier} PRIMARY KEY, "
            f"owner_id {identifier} NOT NULL UNIQUE, "
            f"balance_cents {money} NOT NULL, "
            f"held_cents {money} NOT NULL, "
            f"available_cents {money} NOT NULL, "
            f"opened_at {time} NOT NULL, "
            f"updated_at {time} NOT NULL, "
            f"version {number} NOT NULL, "
            f"position {number} NOT NULL)"
        )
        entries = self.table("entries")
        sql.execute(
            f"CREATE TABLE {entries} ("
            f"id {identifier} PRIMARY KEY, "
            f"account_id {identifier} NOT NULL, "
            f"position {number} NOT NULL, "
            f"line {number} NOT NULL, "
            f"recorded_at {time} NOT NULL, "
            "kind text NOT NULL, "
            f"amount_cents {money} NOT NULL, "
            f"held_delta_cents {money} NOT NULL, "
            f"balance_after_cents {money} NOT NULL, "
            f"held_after_cents {money} NOT NULL, "
            f"counter_account_id {identifier}, "
            f"booking_id {identifier}, "
            "UNIQUE (account_id, position, line))"
        )
        ledger = self.table("ledger")
        sql.execute(
            f"CREATE TABLE {ledger} ("
            f"position {number} NOT NULL, "
            f"line {number} NOT NULL, "
            f"recorded_at {time} NOT NULL, "
            f"account_id {identifier} NOT NULL, "
            f"amount_cents {money} NOT NULL, "
            "kind text NOT NULL, "
            f"booking_id {identifier}, "
            "PRIMARY KEY (position, line))"
        )
        sql.execute(f"CREATE INDEX {ledger}_account ON {ledger} (account_id)")
        sql.execute(
            f"CREATE TABLE {self.table('owners')} ("
            f"user_id {identifier} PRIMARY KEY, "
            "full_name text NOT NULL, "
            "email text NOT NULL)"
        )

    @singledispatchmethod
    def apply(self, event: Any, position: int, sql: Sql) -> None:
        """Only the registered event types are asked for; anything else is a bug."""
        raise AssertionError(f"{self.name} does not follow {type(event).__name__}")

    @apply.register
    def _user_registered(self, event: User.UserRegistered, position: int, sql: Sql) -> None:
        sql.execute(
            f"INSERT INTO {self.table('owners')} (user_id, full_name, email) "
            "VALUES (%s, %s, %s) ON CONFLICT (user_id) DO NOTHING",
            (self.id_value(event.originator_id), event.full_name, event.email),
        )

    @apply.register
    def _opened(self, event: Account.AccountOpened, position: int, sql: Sql) -> None:
        recorded_at = self.time_value(event.timestamp)
        sql.execute(
            f"INSERT INTO {self.table('accounts')} (account_id, owner_id, balance_cents, "
            "held_cents, available_cents, opened_at, updated_at, version, position) "
            "VALUES (%s, %s, 0, 0, 0, %s, %s, %s, %s) ON CONFLICT (account_id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                self.id_value(event.owner_id),
                recorded_at,
                recorded_at,
                event.originator_version,
                position,
            ),
        )

    @apply.register
    def _deposited(self, event: Account.FundsDeposited, position: int, sql: Sql) -> None:
        self._record(
            event, position, sql,
            [Movement("deposit", event.amount_cents, 0, PAYMENTS_ACCOUNT_ID, None,
                      entry_id=event.entry_id)],
            [
                LedgerLine(event.originator_id, event.amount_cents, "deposit"),
                LedgerLine(PAYMENTS_ACCOUNT_ID, -event.amount_cents, "deposit"),
            ],
        )

    @apply.register
    def _payout(self, event: Account.PayoutRequested, position: int, sql: Sql) -> None:
        self._record(
            event, position, sql,
            [Movement("payout", -event.amount_cents, 0, PAYMENTS_ACCOUNT_ID, None,
                      entry_id=event.entry_id)],
            [
                LedgerLine(event.originator_id, -event.amount_cents, "payout"),
                LedgerLine(PAYMENTS_ACCOUNT_ID, event.amount_cents, "payout"),
            ],
        )

    @apply.register
    def _hold_placed(self, event: Account.HoldPlaced, position: int, sql: Sql) -> None:
        self._record(
            event, position, sql,
            [Movement("hold_placed", 0, event.amount_cents, None, event.hold_id)],
            [],
        )

    @apply.register
    def _hold_adjusted(self, event: Account.HoldAdjusted, position: int, sql: Sql) -> None:
        delta = event.amount_cents - event.previous_amount_cents
        self._record(
            event, position, sql, [Movement("hold_adjusted", 0, delta, None, event.hold_id)], []
        )

    @apply.register
    def _hold_released(self, event: Account.HoldReleased, position: int, sql: Sql) -> None:
        self._record(
            event, position, sql,
            [Movement("hold_released", 0, -event.amount_cents, None, event.hold_id)],
            [],
        )

    @apply.register
    def _hold_captured(self, event: Account.HoldCaptured, position: int, sql: Sql) -> None:
        assert event.payee_cents + event.commission_cents == event.captured_cents, event
        hold_total = event.captured_cents + event.released_cents
        movements = [
            Movement(
                "hold_captured", -event.payee_cents, -hold_total, event.payee_account_id,
                event.hold_id,
            )
        ]
        if event.commission_cents:
            movements.append(
                Movement(
                    "commission", -event.commission_cents, 0, PLATFORM_REVENUE_ACCOUNT_ID,
                    event.hold_id,
                )
            )
        lines = [
            LedgerLine(event.originator_id, -event.captured_cents, "hold_captured", event.hold_id),
            LedgerLine(event.payee_account_id, event.payee_cents, "hold_captured", event.hold_id),
            LedgerLine(
                PLATFORM_REVENUE_ACCOUNT_ID, event.commission_cents, "commission", event.hold_id
            ),
        ]
        self._record(event, position, sql, movements, [line for line in lines if line.amount_cents])

    @apply.register
    def _payment_received(
        self, event: Account.PaymentReceived, position: int, sql: Sql
    ) -> None:
        self._record(
            event, position, sql,
            [
                Movement(
                    "payment_received", event.amount_cents, 0, event.payer_account_id,
                    event.hold_id,
                )
            ],
            [],  # the ledger took this movement from the payer's HoldCaptured
        )

    def _record(
        self,
        event: Account.Event,
        position: int,
        sql: Sql,
        movements: list[Movement],
        lines: list[LedgerLine],
    ) -> None:
        """Apply ``movements`` to the account in order (one statement entry each, with
        the figures after it) and add ``lines`` to the ledger, unless the account row
        already has this event's version."""
        account_id = self.id_value(event.originator_id)
        row = sql.fetchone(
            f"SELECT balance_cents, held_cents, version FROM {self.table('accounts')} "
            "WHERE account_id = %s",
            (account_id,),
        )
        assert row is not None, f"account {event.originator_id} was never opened"
        if int(row["version"]) >= event.originator_version:
            return
        balance, held = int(row["balance_cents"]), int(row["held_cents"])
        recorded_at = self.time_value(event.timestamp)
        entries = []
        for line, movement in enumerate(movements):
            balance += movement.amount_cents
            held += movement.held_delta_cents
            assert held >= 0 and balance >= held, (event, balance, held)
            entry_id = movement.entry_id or derived_id(
                "account-entry", event.originator_id, event.originator_version, line
            )
            entries.append(
                (
                    self.id_value(entry_id),
                    account_id,
                    position,
                    line,
                    recorded_at,
                    movement.kind,
                    movement.amount_cents,
                    movement.held_delta_cents,
                    balance,
                    held,
                    None
                    if movement.counter_account_id is None
                    else self.id_value(movement.counter_account_id),
                    None if movement.booking_id is None else self.id_value(movement.booking_id),
                )
            )
        sql.executemany(
            f"INSERT INTO {self.table('entries')} (id, account_id, position, line, "
            "recorded_at, kind, amount_cents, held_delta_cents, balance_after_cents, "
            "held_after_cents, counter_account_id, booking_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            entries,
        )
        self._post(position, recorded_at, lines, sql)
        sql.execute(
            f"UPDATE {self.table('accounts')} SET balance_cents = %s, held_cents = %s, "
            "available_cents = %s, updated_at = %s, version = %s, position = %s "
            "WHERE account_id = %s",
            (
                balance,
                held,
                balance - held,
                recorded_at,
                event.originator_version,
                position,
                account_id,
            ),
        )

    def _post(
        self, position: int, recorded_at: datetime | str, lines: list[LedgerLine], sql: Sql
    ) -> None:
        assert sum(line.amount_cents for line in lines) == 0, lines
        sql.executemany(
            f"INSERT INTO {self.table('ledger')} (position, line, recorded_at, account_id, "
            "amount_cents, kind, booking_id) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (position, line) DO NOTHING",
            [
                (
                    position,
                    number,
                    recorded_at,
                    self.id_value(line.account_id),
                    line.amount_cents,
                    line.kind,
                    None if line.booking_id is None else self.id_value(line.booking_id),
                )
                for number, line in enumerate(lines)
            ],
        )
