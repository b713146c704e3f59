"""Payments: top-ups and payouts as their owners follow them, and every provider
notification as admins audit it.

Three tables:

- ``top_ups``: one row per top-up — amount, payment method, status as the provider
  told it, the provider's payment reference and failure code, and ``credited``, set by
  the account's ``TopUpCredited`` (saved with the top-up's success), so a succeeded
  top-up that was never credited would show.
- ``payouts``: one row per payout, a host's (``method`` ``payout``) or a customer's
  refund to the card of one top-up (``refund``): destination or top-up, the provider's
  transfer reference, status and failure code.
- ``payment_notifications``: one row per verified notification, with the ``outcome``
  of applying it (applied, already known, amount mismatch, …).

Rows are keyed by their aggregate's id; a top-up's or payout's row changes only for an
event of a later version than it has (``version``), so an event delivered again
changes nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aggregates.account import Account
from aggregates.payment_notification import PaymentNotification
from aggregates.payout import Payout, PayoutStatus
from aggregates.top_up import TopUp, TopUpStatus
from projections.base import Projection, fold
from projections.database import Sql


class PaymentsProjection(Projection):
    name: ClassVar[str] = "payments"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("top_ups", "payouts", "payment_notifications")

    def create_tables(self, sql: Sql) -> None:
        identifier, time, money, number, flag = (
            self.column("id"),
            self.column("time"),
            self.column("money"),
            self.column("int"),
            self.column("bool"),
        )
        sql.execute(
            f"CREATE TABLE {self.table('top_ups')} ("
            f"id {identifier} PRIMARY KEY, "
            f"owner_id {identifier} NOT NULL, "
            f"amount_cents {money} NOT NULL, "
            "payment_method text NOT NULL, "
            "provider text NOT NULL, "
            "status text NOT NULL, "
            "payment_reference text, "
            "failure_code text, "
            f"credited {flag} NOT NULL, "
            f"requested_at {time} NOT NULL, "
            f"updated_at {time} NOT NULL, "
            f"version {number} NOT NULL, "
            f"position {number} NOT NULL)"
        )
        sql.execute(
            f"CREATE TABLE {self.table('payouts')} ("
            f"id {identifier} PRIMARY KEY, "
            f"owner_id {identifier} NOT NULL, "
            "method text NOT NULL, "
            f"amount_cents {money} NOT NULL, "
            "provider text NOT NULL, "
            "destination text, "
            f"top_up_id {identifier}, "
            "payment_reference text, "
            "transfer_reference text, "
            "status text NOT NULL, "
            "failure_code text, "
            f"requested_at {time} NOT NULL, "
            f"updated_at {time} NOT NULL, "
            f"version {number} NOT NULL, "
            f"position {number} NOT NULL)"
        )
        sql.execute(
            f"CREATE TABLE {self.table('payment_notifications')} ("
            f"id {identifier} PRIMARY KEY, "
            "provider text NOT NULL, "
            "event_id text NOT NULL, "
            "event_type text NOT NULL, "
            "subject text, "
            f"subject_id {identifier}, "
            "reference text, "
            "status text, "
            f"amount_cents {money}, "
            "currency text, "
            "failure_code text, "
            "outcome text NOT NULL, "
            f"occurred_at {time} NOT NULL, "
            f"received_at {time} NOT NULL, "
            f"position {number} NOT NULL)"
        )

    def create_indexes(self, sql: Sql) -> None:
        for table in ("top_ups", "payouts"):
            physical = self.table(table)
            sql.execute(f"CREATE INDEX {physical}_owner ON {physical} (owner_id, requested_at, id)")
        notifications = self.table("payment_notifications")
        sql.execute(f"CREATE INDEX {notifications}_received ON {notifications} (received_at, id)")
        sql.execute(
            f"CREATE INDEX {notifications}_outcome ON {notifications} (outcome, received_at, id)"
        )

    # --- top-ups -------------------------------------------------------------------

    @fold(TopUp.TopUpRequested)
    def _top_up_requested(self, event: TopUp.TopUpRequested, position: int, sql: Sql) -> None:
        requested_at = self.time_value(event.timestamp)
        sql.execute(
            f"INSERT INTO {self.table('top_ups')} (id, owner_id, amount_cents, payment_method, "
            "provider, status, payment_reference, failure_code, credited, requested_at, "
            "updated_at, version, position) "
            "VALUES (%s, %s, %s, %s, %s, %s, NULL, NULL, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                self.id_value(event.owner_id),
                event.amount_cents,
                event.payment_method,
                event.provider,
                TopUpStatus.REQUIRES_PAYMENT.value,
                False,
                requested_at,
                requested_at,
                event.originator_version,
                position,
            ),
        )

    @fold(TopUp.TopUpProcessing)
    def _top_up_processing(self, event: TopUp.TopUpProcessing, position: int, sql: Sql) -> None:
        self._update(
            sql,
            "top_ups",
            event,
            position,
            status=TopUpStatus.PROCESSING.value,
            payment_reference=event.payment_reference,
        )

    @fold(TopUp.TopUpSucceeded)
    def _top_up_succeeded(self, event: TopUp.TopUpSucceeded, position: int, sql: Sql) -> None:
        self._update(
            sql,
            "top_ups",
            event,
            position,
            status=TopUpStatus.SUCCEEDED.value,
            payment_reference=event.payment_reference,
            failure_code=None,
        )

    @fold(TopUp.TopUpFailed)
    def _top_up_failed(self, event: TopUp.TopUpFailed, position: int, sql: Sql) -> None:
        self._update(
            sql,
            "top_ups",
            event,
            position,
            status=event.status,
            payment_reference=event.payment_reference or None,
            failure_code=event.failure_code,
        )

    @fold(Account.TopUpCredited)
    def _top_up_credited(self, event: Account.TopUpCredited, position: int, sql: Sql) -> None:
        # The account's event, not the top-up's: its version is not the row's.
        sql.execute(
            f"UPDATE {self.table('top_ups')} SET credited = %s WHERE id = %s",
            (True, self.id_value(event.top_up_id)),
        )

    # --- payouts -------------------------------------------------------------------

    @fold(Payout.PayoutRequested)
    def _payout_requested(self, event: Payout.PayoutRequested, position: int, sql: Sql) -> None:
        requested_at = self.time_value(event.timestamp)
        sql.execute(
            f"INSERT INTO {self.table('payouts')} (id, owner_id, method, amount_cents, "
            "provider, destination, top_up_id, payment_reference, transfer_reference, status, "
            "failure_code, requested_at, updated_at, version, position) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, NULL, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                self.id_value(event.owner_id),
                event.method,
                event.amount_cents,
                event.provider,
                event.destination,
                None if event.top_up_id is None else self.id_value(event.top_up_id),
                event.payment_reference,
                PayoutStatus.PENDING.value,
                requested_at,
                requested_at,
                event.originator_version,
                position,
            ),
        )

    @fold(Payout.PayoutSubmitted)
    def _payout_submitted(self, event: Payout.PayoutSubmitted, position: int, sql: Sql) -> None:
        self._update(sql, "payouts", event, position, transfer_reference=event.transfer_reference)

    @fold(Payout.PayoutPaid)
    def _payout_paid(self, event: Payout.PayoutPaid, position: int, sql: Sql) -> None:
        self._update(
            sql,
            "payouts",
            event,
            position,
            status=PayoutStatus.PAID.value,
            transfer_reference=event.transfer_reference,
        )

    @fold(Payout.PayoutFailed)
    def _payout_failed(self, event: Payout.PayoutFailed, position: int, sql: Sql) -> None:
        self._update(
            sql,
            "payouts",
            event,
            position,
            status=event.status,
            transfer_reference=event.transfer_reference,
            failure_code=event.failure_code,
        )

    # --- notifications -------------------------------------------------------------

    @fold(PaymentNotification.PaymentNotificationReceived)
    def _notification_received(
        self, event: PaymentNotification.PaymentNotificationReceived, position: int, sql: Sql
    ) -> None:
        sql.execute(
            f"INSERT INTO {self.table('payment_notifications')} (id, provider, event_id, "
            "event_type, subject, subject_id, reference, status, amount_cents, currency, "
            "failure_code, outcome, occurred_at, received_at, position) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                event.provider,
                event.event_id,
                event.event_type,
                event.subject,
                None if event.subject_id is None else self.id_value(event.subject_id),
                event.reference,
                event.status,
                event.amount_cents,
                event.currency,
                event.failure_code,
                event.outcome,
                self.time_value(event.occurred_at),
                self.time_value(event.timestamp),
                position,
            ),
        )

    def _update(
        self,
        sql: Sql,
        table: str,
        event: TopUp.Event | Payout.Event,
        position: int,
        **changes: Any,
    ) -> None:
        """Change the aggregate's row unless it has this event's version already."""
        changes["updated_at"] = self.time_value(event.timestamp)
        changes["version"] = event.originator_version
        changes["position"] = position
        assignments = ", ".join(f"{column} = %s" for column in changes)
        sql.execute(
            f"UPDATE {self.table(table)} SET {assignments} WHERE id = %s AND version < %s",
            (*changes.values(), self.id_value(event.originator_id), event.originator_version),
        )
