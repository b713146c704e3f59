"""Reconciliation: the payment provider's records against the ledger's.

The ledger's side is read from the event store itself (top-ups and payouts, and the
accounts' credits, posts and voids), never from a read model that may lag; the
provider's from its API (the sandbox's tables, or Stripe's). Every difference is one of:

- ``payment_not_credited``: the provider confirmed a payment the ledger never credited;
- ``payment_unknown``: the provider confirmed a payment for no top-up of the ledger;
- ``credit_without_payment``: the ledger credited a top-up the provider has no
  confirmed payment for;
- ``amount_differs``: a credit, post or transfer of another amount than the provider's;
- ``transfer_not_posted``: the provider paid a payout or refund the ledger did not post
  (still pending, or voided back to the account);
- ``transfer_unknown``: the provider paid a transfer for no payout of the ledger;
- ``posted_without_transfer``: the ledger posted a payout the provider did not pay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal
from uuid import UUID

from eventsourcing.utils import get_topic
from pydantic import BaseModel

from aggregates.account import Account
from aggregates.payment_provider import (
    PaymentProvider,
    PaymentStatus,
    ProviderPayment,
    ProviderTransfer,
    TransferStatus,
)
from aggregates.payout import Payout
from aggregates.top_up import TopUp
from commands.store import CommandStore

READ_BATCH_SIZE: Final = 1000

DifferenceKind = Literal[
    "payment_not_credited",
    "payment_unknown",
    "credit_without_payment",
    "amount_differs",
    "transfer_not_posted",
    "transfer_unknown",
    "posted_without_transfer",
]


class Difference(BaseModel):
    kind: DifferenceKind
    subject: Literal["top_up", "payout"]
    id: UUID | None
    """The top-up's or payout's id (``None``: the ledger has none)."""
    reference: str | None
    """The provider's id of the payment or transfer."""
    ledger_cents: int | None
    provider_cents: int | None
    detail: str


class Reconciliation(BaseModel):
    provider: str
    test_mode: bool
    since: datetime | None
    payments_checked: int
    transfers_checked: int
    differences: list[Difference]


LEDGER_TOPICS: Final = tuple(
    get_topic(event_class)
    for event_class in (
        TopUp.TopUpRequested,
        TopUp.TopUpProcessing,
        TopUp.TopUpSucceeded,
        TopUp.TopUpFailed,
        Account.TopUpCredited,
        Payout.PayoutRequested,
        Payout.PayoutSubmitted,
        Payout.PayoutPaid,
        Payout.PayoutFailed,
        Account.PayoutPosted,
        Account.PayoutVoided,
    )
)
"""The events the ledger's side of a reconciliation is read from."""


@dataclass
class _TopUpRecord:
    amount_cents: int
    requested_at: datetime
    reference: str | None = None
    credited_cents: int = 0


@dataclass
class _PayoutRecord:
    amount_cents: int
    requested_at: datetime
    reference: str | None = None
    posted_cents: int = 0
    voided: bool = False


@dataclass
class _Ledger:
    """What the event store says of every top-up and payout."""

    top_ups: dict[UUID, _TopUpRecord] = field(default_factory=dict)
    payouts: dict[UUID, _PayoutRecord] = field(default_factory=dict)

    @classmethod
    def read(cls, store: CommandStore) -> _Ledger:
        ledger = cls()
        position = 0
        while True:
            notifications = store.notifications(position, None, READ_BATCH_SIZE, LEDGER_TOPICS)
            for notification in notifications:
                ledger._apply(store.mapper.to_domain_event(notification))
                position = notification.id
            if len(notifications) < READ_BATCH_SIZE:
                return ledger

    def _apply(self, event: object) -> None:
        if isinstance(event, TopUp.TopUpRequested):
            self.top_ups[event.originator_id] = _TopUpRecord(event.amount_cents, event.requested_at)
        elif isinstance(event, TopUp.TopUpProcessing | TopUp.TopUpSucceeded):
            self.top_ups[event.originator_id].reference = event.payment_reference
        elif isinstance(event, TopUp.TopUpFailed):
            self.top_ups[event.originator_id].reference = event.payment_reference or None
        elif isinstance(event, Account.TopUpCredited):
            record = self.top_ups.get(event.top_up_id)
            if record is not None:
                record.credited_cents += event.amount_cents
        elif isinstance(event, Payout.PayoutRequested):
            self.payouts[event.originator_id] = _PayoutRecord(
                event.amount_cents, event.requested_at
            )
        elif isinstance(event, Payout.PayoutSubmitted | Payout.PayoutPaid):
            self.payouts[event.originator_id].reference = event.transfer_reference
        elif isinstance(event, Payout.PayoutFailed):
            if event.transfer_reference is not None:
                self.payouts[event.originator_id].reference = event.transfer_reference
        elif isinstance(event, Account.PayoutPosted):
            payout = self.payouts.get(event.payout_id)
            if payout is not None:
                payout.posted_cents += event.amount_cents
        elif isinstance(event, Account.PayoutVoided):
            payout = self.payouts.get(event.payout_id)
            if payout is not None:
                payout.voided = True


def reconcile(
    store: CommandStore, provider: PaymentProvider, since: datetime | None = None
) -> Reconciliation:
    """Every difference between the provider's payments and transfers made since
    ``since`` (all with ``None``) and the ledger's top-ups and payouts asked since then."""
    ledger = _Ledger.read(store)
    payments = list(provider.payments_since(since))
    transfers = list(provider.transfers_since(since))
    differences = [
        *_payment_differences(ledger, payments, since),
        *_transfer_differences(ledger, transfers, since),
    ]
    return Reconciliation(
        provider=provider.name,
        test_mode=provider.test_mode,
        since=since,
        payments_checked=len(payments),
        transfers_checked=len(transfers),
        differences=differences,
    )


def _payment_differences(
    ledger: _Ledger, payments: Sequence[ProviderPayment], since: datetime | None
) -> Iterable[Difference]:
    seen: set[UUID] = set()
    for payment in payments:
        succeeded = payment.status == PaymentStatus.SUCCEEDED
        record = None if payment.top_up_id is None else ledger.top_ups.get(payment.top_up_id)
        if record is None:
            if succeeded:
                yield _payment("payment_unknown", payment, None, None, "confirmed, for no top-up")
            continue
        assert payment.top_up_id is not None
        seen.add(payment.top_up_id)
        if succeeded and not record.credited_cents:
            yield _payment(
                "payment_not_credited", payment, payment.top_up_id, 0, "confirmed, not credited"
            )
        elif succeeded and record.credited_cents != payment.amount_cents:
            yield _payment(
                "amount_differs",
                payment,
                payment.top_up_id,
                record.credited_cents,
                "credited another amount than the provider confirmed",
            )
        elif not succeeded and record.credited_cents:
            yield _payment(
                "credit_without_payment",
                payment,
                payment.top_up_id,
                record.credited_cents,
                f"credited, but the provider's payment is {payment.status.value}",
            )
    for top_up_id, record in ledger.top_ups.items():
        if top_up_id in seen or not record.credited_cents:
            continue
        if since is not None and record.requested_at < since:
            continue
        yield Difference(
            kind="credit_without_payment",
            subject="top_up",
            id=top_up_id,
            reference=record.reference,
            ledger_cents=record.credited_cents,
            provider_cents=None,
            detail="credited, but the provider has no such payment",
        )


def _transfer_differences(
    ledger: _Ledger, transfers: Sequence[ProviderTransfer], since: datetime | None
) -> Iterable[Difference]:
    seen: set[UUID] = set()
    for transfer in transfers:
        paid = transfer.status == TransferStatus.PAID
        record = None if transfer.payout_id is None else ledger.payouts.get(transfer.payout_id)
        if record is None:
            if paid:
                yield _transfer("transfer_unknown", transfer, None, None, "paid, for no payout")
            continue
        assert transfer.payout_id is not None
        seen.add(transfer.payout_id)
        if paid and not record.posted_cents:
            state = "voided back to the account" if record.voided else "still pending"
            yield _transfer(
                "transfer_not_posted", transfer, transfer.payout_id, 0, f"paid, but {state}"
            )
        elif paid and record.posted_cents != transfer.amount_cents:
            yield _transfer(
                "amount_differs",
                transfer,
                transfer.payout_id,
                record.posted_cents,
                "posted another amount than the provider paid",
            )
        elif not paid and record.posted_cents:
            yield _transfer(
                "posted_without_transfer",
                transfer,
                transfer.payout_id,
                record.posted_cents,
                f"posted, but the provider's transfer is {transfer.status.value}",
            )
    for payout_id, record in ledger.payouts.items():
        if payout_id in seen or not record.posted_cents:
            continue
        if since is not None and record.requested_at < since:
            continue
        yield Difference(
            kind="posted_without_transfer",
            subject="payout",
            id=payout_id,
            reference=record.reference,
            ledger_cents=record.posted_cents,
            provider_cents=None,
            detail="posted, but the provider has no such transfer",
        )


def _payment(
    kind: DifferenceKind,
    payment: ProviderPayment,
    top_up_id: UUID | None,
    ledger_cents: int | None,
    detail: str,
) -> Difference:
    return Difference(
        kind=kind,
        subject="top_up",
        id=top_up_id,
        reference=payment.reference,
        ledger_cents=ledger_cents,
        provider_cents=payment.amount_cents,
        detail=detail,
    )


def _transfer(
    kind: DifferenceKind,
    transfer: ProviderTransfer,
    payout_id: UUID | None,
    ledger_cents: int | None,
    detail: str,
) -> Difference:
    return Difference(
        kind=kind,
        subject="payout",
        id=payout_id,
        reference=transfer.reference,
        ledger_cents=ledger_cents,
        provider_cents=transfer.amount_cents,
        detail=detail,
    )
