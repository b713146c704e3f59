"""Accounts: balances, statements and the double-entry ledger of user accounts.

Three tables:

- ``accounts``: one row per user account — balance, held, available, as of its last
  event (``version``).
- ``entries``: the statement. One row per movement seen from a user account, with the
  account's figures after it. A capture is two movements for the customer (the host's
  share to the host's account, the commission to platform revenue); a hold placed,
  adjusted or released moves no money but changes what is held.
- ``ledger``: double-entry lines, from which the trial balance sums each account,
  including the system accounts that are not aggregates (``payments_in``,
  ``payouts_in_transit``, ``payments_out``, ``platform_revenue``, and the old
  ``payments``). Each movement is recorded once, from the event that carries both
  sides, so every event's lines net to zero and so does every committed state:

      TopUpCredited    user +amount                payments_in −amount
      PayoutReserved   user −amount                payouts_in_transit +amount
      PayoutPosted     payouts_in_transit −amount  payments_out +amount
      PayoutVoided     payouts_in_transit −amount  user +amount
      HoldCaptured     customer −captured          host +payee, platform_revenue +commission
      PaymentReceived  (none: the host side of the capture above)
      FundsDeposited   user +amount                payments −amount   (before top-ups)
      PayoutRequested  user −amount                payments +amount   (before top-ups)

  Statement entries by kind: ``top_up`` (TopUpCredited), ``payout`` or ``refund``
  (PayoutReserved: a refund to the card has a ``top_up_id``), ``payout_voided``
  (PayoutVoided, either method); PayoutPosted has none, as the money left the user's
  account at reservation — it still advances the account row's version.

  ``payments_in`` is negative by what providers confirmed paid in, ``payments_out``
  positive by what they confirmed paid out, ``payouts_in_transit`` holds what was
  reserved and is not yet posted or voided.

A small ``owners`` table keeps each user's full name for the trial balance, as of the
user's latest event (``version``): NULL once the user was erased (queries show
"erased user"). An erased user's events read with their name erased, so a rebuild writes
NULL from the registration on, and ends with the row an erasure leaves.

An event whose ``originator_version`` the account row already has is skipped whole,
so a retried batch changes nothing; rows depend only on events in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, ClassVar
from uuid import UUID

from aggregates.account import (
    PAYMENTS_ACCOUNT_ID,
    PAYMENTS_IN_ACCOUNT_ID,
    PAYMENTS_OUT_ACCOUNT_ID,
    PAYOUTS_IN_TRANSIT_ACCOUNT_ID,
    PLATFORM_REVENUE_ACCOUNT_ID,
    Account,
)
from aggregates.base import uncached_derived_id
from aggregates.user import User
from projections.base import Projection, fold
from projections.database import Sql, uuid_from_row

ENTRY_KINDS = (
    "top_up",
    "payout",
    "refund",
    "payout_voided",
    "deposit",
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
    version: ClassVar[int] = 3
    """2: top-ups and two-phase payouts (a generation of 1 never asked for them). 3:
    owners' names follow rectification and erasure; no email."""
    tables: ClassVar[tuple[str, ...]] = ("accounts", "entries", "ledger", "owners")

    def create_tables(self, sql: Sql) -> None:
        identifier, time, money, number = (
            self.column("id"),
            self.column("time"),
            self.column("money"),
            self.column("int"),
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
        sql.execute(
            f"CREATE TABLE {self.table('owners')} ("
            f"user_id {identifier} PRIMARY KEY, "
            "full_name text, "
            f"version {number} NOT NULL)"
        )

    def create_indexes(self, sql: Sql) -> None:
        ledger = self.table("ledger")
        sql.execute(f"CREATE INDEX {ledger}_account ON {ledger} (account_id)")

    ACCOUNT_COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("account_id", "id"),
        ("owner_id", "id"),
        ("balance_cents", "money"),
        ("held_cents", "money"),
        ("available_cents", "money"),
        ("opened_at", "time"),
        ("updated_at", "time"),
        ("version", "int"),
        ("position", "int"),
    )
    ENTRY_COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("id", "id"),
        ("account_id", "id"),
        ("position", "int"),
        ("line", "int"),
        ("recorded_at", "time"),
        ("kind", "text"),
        ("amount_cents", "money"),
        ("held_delta_cents", "money"),
        ("balance_after_cents", "money"),
        ("held_after_cents", "money"),
        ("counter_account_id", "id"),
        ("booking_id", "id"),
    )
    LEDGER_COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("position", "int"),
        ("line", "int"),
        ("recorded_at", "time"),
        ("account_id", "id"),
        ("amount_cents", "money"),
        ("kind", "text"),
        ("booking_id", "id"),
    )

    # Every fold is batched: the accounts a batch touches are read in one query,
    # changed in memory in event order (an event whose version the account already
    # has is skipped whole), and each changed row is written once; owners, entries
    # and ledger lines go in one insert each.

    def load_batch(self, sql: Sql, events: Sequence[Any]) -> AccountsBatch:
        account_ids = {event.originator_id for event in events if isinstance(event, Account.Event)}
        rows = self.load_rows(
            sql, "accounts", [name for name, _ in self.ACCOUNT_COLUMNS], "account_id", account_ids
        )
        accounts = {}
        for row in rows:
            account = _AccountRow(*(row[name] for name, _ in self.ACCOUNT_COLUMNS))
            accounts[uuid_from_row(account.account_id)] = account
        return AccountsBatch(accounts)

    OWNER_COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("user_id", "id"),
        ("full_name", "text"),
        ("version", "int"),
    )

    def write_batch(self, sql: Sql, batch: AccountsBatch) -> None:
        self.upsert_rows(
            sql,
            "owners",
            self.OWNER_COLUMNS,
            "user_id",
            [
                (self.id_value(user_id), full_name, version)
                for user_id, (full_name, version) in batch.owners.items()
            ],
            where=f" WHERE {self.table('owners')}.version < excluded.version",
        )
        self.insert_rows(
            sql,
            "entries",
            self.ENTRY_COLUMNS,
            batch.entries,
            on_conflict="ON CONFLICT (id) DO NOTHING",
        )
        self.insert_rows(
            sql,
            "ledger",
            self.LEDGER_COLUMNS,
            batch.ledger,
            on_conflict="ON CONFLICT (position, line) DO NOTHING",
        )
        self.upsert_rows(
            sql,
            "accounts",
            self.ACCOUNT_COLUMNS,
            "account_id",
            [
                batch.accounts[account_id].row()
                for account_id in sorted(batch.changed, key=attrgetter("int"))
            ],
            kept=("owner_id", "opened_at"),
            where=f" WHERE {self.table('accounts')}.version < excluded.version",
        )

    @fold(User.UserRegistered, User.FullNameChanged, batched=True)
    def _owner_named(
        self,
        event: User.UserRegistered | User.FullNameChanged,
        position: int,
        batch: AccountsBatch,
    ) -> None:
        batch.name_owner(event, event.full_name)

    @fold(User.UserErased, batched=True)
    def _owner_erased(self, event: User.UserErased, position: int, batch: AccountsBatch) -> None:
        batch.name_owner(event, None)

    @fold(Account.AccountOpened, batched=True)
    def _opened(self, event: Account.AccountOpened, position: int, batch: AccountsBatch) -> None:
        recorded_at = self.time_value(event.timestamp)
        if event.originator_id in batch.accounts:
            return
        batch.accounts[event.originator_id] = _AccountRow(
            self.id_value(event.originator_id),
            self.id_value(event.owner_id),
            0,
            0,
            0,
            recorded_at,
            recorded_at,
            event.originator_version,
            position,
        )
        batch.changed.add(event.originator_id)

    @fold(Account.FundsDeposited, batched=True)
    def _deposited(
        self, event: Account.FundsDeposited, position: int, batch: AccountsBatch
    ) -> None:
        self._move(
            batch,
            event,
            position,
            [
                Movement(
                    "deposit",
                    event.amount_cents,
                    0,
                    PAYMENTS_ACCOUNT_ID,
                    None,
                    entry_id=event.entry_id,
                )
            ],
            [
                LedgerLine(event.originator_id, event.amount_cents, "deposit"),
                LedgerLine(PAYMENTS_ACCOUNT_ID, -event.amount_cents, "deposit"),
            ],
        )

    @fold(Account.PayoutRequested, batched=True)
    def _payout(self, event: Account.PayoutRequested, position: int, batch: AccountsBatch) -> None:
        self._move(
            batch,
            event,
            position,
            [
                Movement(
                    "payout",
                    -event.amount_cents,
                    0,
                    PAYMENTS_ACCOUNT_ID,
                    None,
                    entry_id=event.entry_id,
                )
            ],
            [
                LedgerLine(event.originator_id, -event.amount_cents, "payout"),
                LedgerLine(PAYMENTS_ACCOUNT_ID, event.amount_cents, "payout"),
            ],
        )

    @fold(Account.TopUpCredited, batched=True)
    def _top_up_credited(
        self, event: Account.TopUpCredited, position: int, batch: AccountsBatch
    ) -> None:
        self._move(
            batch,
            event,
            position,
            [Movement("top_up", event.amount_cents, 0, PAYMENTS_IN_ACCOUNT_ID, None)],
            [
                LedgerLine(event.originator_id, event.amount_cents, "top_up"),
                LedgerLine(PAYMENTS_IN_ACCOUNT_ID, -event.amount_cents, "top_up"),
            ],
        )

    @fold(Account.PayoutReserved, batched=True)
    def _payout_reserved(
        self, event: Account.PayoutReserved, position: int, batch: AccountsBatch
    ) -> None:
        kind = "payout" if event.top_up_id is None else "refund"
        self._move(
            batch,
            event,
            position,
            [Movement(kind, -event.amount_cents, 0, PAYOUTS_IN_TRANSIT_ACCOUNT_ID, None)],
            [
                LedgerLine(event.originator_id, -event.amount_cents, kind),
                LedgerLine(PAYOUTS_IN_TRANSIT_ACCOUNT_ID, event.amount_cents, kind),
            ],
        )

    @fold(Account.PayoutPosted, batched=True)
    def _payout_posted(
        self, event: Account.PayoutPosted, position: int, batch: AccountsBatch
    ) -> None:
        self._move(
            batch,
            event,
            position,
            [],  # the user's money left at reservation; this moves it on between systems
            [
                LedgerLine(PAYOUTS_IN_TRANSIT_ACCOUNT_ID, -event.amount_cents, "payout_posted"),
                LedgerLine(PAYMENTS_OUT_ACCOUNT_ID, event.amount_cents, "payout_posted"),
            ],
        )

    @fold(Account.PayoutVoided, batched=True)
    def _payout_voided(
        self, event: Account.PayoutVoided, position: int, batch: AccountsBatch
    ) -> None:
        self._move(
            batch,
            event,
            position,
            [Movement("payout_voided", event.amount_cents, 0, PAYOUTS_IN_TRANSIT_ACCOUNT_ID, None)],
            [
                LedgerLine(PAYOUTS_IN_TRANSIT_ACCOUNT_ID, -event.amount_cents, "payout_voided"),
                LedgerLine(event.originator_id, event.amount_cents, "payout_voided"),
            ],
        )

    @fold(Account.HoldPlaced, batched=True)
    def _hold_placed(self, event: Account.HoldPlaced, position: int, batch: AccountsBatch) -> None:
        self._move(
            batch,
            event,
            position,
            [Movement("hold_placed", 0, event.amount_cents, None, event.hold_id)],
            [],
        )

    @fold(Account.HoldAdjusted, batched=True)
    def _hold_adjusted(
        self, event: Account.HoldAdjusted, position: int, batch: AccountsBatch
    ) -> None:
        delta = event.amount_cents - event.previous_amount_cents
        self._move(
            batch, event, position, [Movement("hold_adjusted", 0, delta, None, event.hold_id)], []
        )

    @fold(Account.HoldReleased, batched=True)
    def _hold_released(
        self, event: Account.HoldReleased, position: int, batch: AccountsBatch
    ) -> None:
        self._move(
            batch,
            event,
            position,
            [Movement("hold_released", 0, -event.amount_cents, None, event.hold_id)],
            [],
        )

    @fold(Account.HoldCaptured, batched=True)
    def _hold_captured(
        self, event: Account.HoldCaptured, position: int, batch: AccountsBatch
    ) -> None:
        assert event.payee_cents + event.commission_cents == event.captured_cents, event
        hold_total = event.captured_cents + event.released_cents
        movements = [
            Movement(
                "hold_captured",
                -event.payee_cents,
                -hold_total,
                event.payee_account_id,
                event.hold_id,
            )
        ]
        if event.commission_cents:
            movements.append(
                Movement(
                    "commission",
                    -event.commission_cents,
                    0,
                    PLATFORM_REVENUE_ACCOUNT_ID,
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
        self._move(batch, event, position, movements, [line for line in lines if line.amount_cents])

    @fold(Account.PaymentReceived, batched=True)
    def _payment_received(
        self, event: Account.PaymentReceived, position: int, batch: AccountsBatch
    ) -> None:
        self._move(
            batch,
            event,
            position,
            [
                Movement(
                    "payment_received",
                    event.amount_cents,
                    0,
                    event.payer_account_id,
                    event.hold_id,
                )
            ],
            [],  # the ledger took this movement from the payer's HoldCaptured
        )

    def _move(
        self,
        batch: AccountsBatch,
        event: Account.Event,
        position: int,
        movements: list[Movement],
        lines: list[LedgerLine],
    ) -> None:
        """Apply ``movements`` to the event's account, in order, with their statement
        entries and the event's ledger ``lines``; nothing if the account has the
        event's version already."""
        recorded_at = self.time_value(event.timestamp)
        account = batch.accounts.get(event.originator_id)
        assert account is not None, f"account {event.originator_id} was never opened"
        if int(account.version) >= event.originator_version:
            return
        balance, held = int(account.balance_cents), int(account.held_cents)
        account_id = account.account_id
        for line, movement in enumerate(movements):
            balance += movement.amount_cents
            held += movement.held_delta_cents
            assert held >= 0 and balance >= held, (event, balance, held)
            entry_id = movement.entry_id or entry_id_of(
                event.originator_id, event.originator_version, line
            )
            batch.entries.append(
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
        assert sum(line.amount_cents for line in lines) == 0, lines
        batch.ledger.extend(
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
        )
        account.balance_cents = balance
        account.held_cents = held
        account.available_cents = balance - held
        account.updated_at = recorded_at
        account.version = event.originator_version
        account.position = position
        batch.changed.add(event.originator_id)


def entry_id_of(account_id: UUID, version: int, line: int) -> UUID:
    """The id of line ``line`` of the statement entries the account's event at
    ``version`` made: derived once per entry, so not through ``derived_id``'s cache,
    which every new entry only missed."""
    return uncached_derived_id("account-entry", account_id, version, line)


@dataclass
class _AccountRow:
    """An ``accounts`` row in memory, its values as the database stores them."""

    account_id: Any
    owner_id: Any
    balance_cents: int
    held_cents: int
    available_cents: int
    opened_at: Any
    updated_at: Any
    version: int
    position: int

    def row(self) -> tuple[Any, ...]:
        return (
            self.account_id,
            self.owner_id,
            self.balance_cents,
            self.held_cents,
            self.available_cents,
            self.opened_at,
            self.updated_at,
            self.version,
            self.position,
        )


@dataclass
class AccountsBatch:
    """What a batch's events change: the accounts they touch (by id), the owners,
    statement entries and ledger lines they add."""

    accounts: dict[UUID, _AccountRow]
    changed: set[UUID] = field(default_factory=set)
    owners: dict[UUID, tuple[str | None, int]] = field(default_factory=dict)
    """Per user whose name the batch changed: the latest name (None: erased) and the
    version of the user's event that gave it."""
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    ledger: list[tuple[Any, ...]] = field(default_factory=list)

    def name_owner(self, event: User.Event, full_name: str | None) -> None:
        self.owners[event.originator_id] = (full_name, event.originator_version)
