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

from collections.abc import Iterable, Mapping
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
class _LedgerRecord:
    """A top-up or a payout as the event store tells it. ``booked_cents`` is what the
    ledger credited of a top-up, or posted of a payout; only a payout is ever voided."""

    requested_at: datetime
    reference: str | None = None
    booked_cents: int = 0
    voided: bool = False


@dataclass
class _Ledger:
    """What the event store says of every top-up and payout."""

    top_ups: dict[UUID, _LedgerRecord] = field(default_factory=dict)
    payouts: dict[UUID, _LedgerRecord] = field(default_factory=dict)

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
            self.top_ups[event.originator_id] = _LedgerRecord(event.requested_at)
        elif isinstance(event, TopUp.TopUpProcessing | TopUp.TopUpSucceeded):
            self.top_ups[event.originator_id].reference = event.payment_reference
        elif isinstance(event, TopUp.TopUpFailed):
            self.top_ups[event.originator_id].reference = event.payment_reference or None
        elif isinstance(event, Account.TopUpCredited):
            record = self.top_ups.get(event.top_up_id)
            if record is not None:
                record.booked_cents += event.amount_cents
        elif isinstance(event, Payout.PayoutRequested):
            self.payouts[event.originator_id] = _LedgerRecord(event.requested_at)
        elif isinstance(event, Payout.PayoutSubmitted | Payout.PayoutPaid):
            self.payouts[event.originator_id].reference = event.transfer_reference
        elif isinstance(event, Payout.PayoutFailed):
            if event.transfer_reference is not None:
                self.payouts[event.originator_id].reference = event.transfer_reference
        elif isinstance(event, Account.PayoutPosted):
            payout = self.payouts.get(event.payout_id)
            if payout is not None:
                payout.booked_cents += event.amount_cents
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
        *_differences(_TOP_UPS, ledger.top_ups, map(_ProviderRecord.of_payment, payments), since),
        *_differences(_PAYOUTS, ledger.payouts, map(_ProviderRecord.of_transfer, transfers), since),
    ]
    return Reconciliation(
        provider=provider.name,
        test_mode=provider.test_mode,
        since=since,
        payments_checked=len(payments),
        transfers_checked=len(transfers),
        differences=differences,
    )


@dataclass(frozen=True)
class _Subject:
    """The words of one side of a reconciliation (top-ups against the provider's
    payments, or payouts against its transfers): the comparison itself is one."""

    name: Literal["top_up", "payout"]
    ledger_record: str
    provider_record: str
    completed: str
    """What the provider did to a payment or transfer the ledger should book."""
    booked: str
    """What the ledger did to a top-up or payout the provider completed."""
    not_booked_yet: str
    unknown: DifferenceKind
    not_booked: DifferenceKind
    booked_without_provider: DifferenceKind


_TOP_UPS: Final = _Subject(
    name="top_up",
    ledger_record="top-up",
    provider_record="payment",
    completed="confirmed",
    booked="credited",
    not_booked_yet="not credited",
    unknown="payment_unknown",
    not_booked="payment_not_credited",
    booked_without_provider="credit_without_payment",
)
_PAYOUTS: Final = _Subject(
    name="payout",
    ledger_record="payout",
    provider_record="transfer",
    completed="paid",
    booked="posted",
    not_booked_yet="but still pending",
    unknown="transfer_unknown",
    not_booked="transfer_not_posted",
    booked_without_provider="posted_without_transfer",
)


@dataclass(frozen=True)
class _ProviderRecord:
    """A provider's payment or transfer, as the comparison reads either."""

    reference: str
    ledger_id: UUID | None
    """The top-up's or payout's id, from the provider's metadata."""
    amount_cents: int
    completed: bool
    """Succeeded (a payment) or paid (a transfer)."""
    status: str

    @classmethod
    def of_payment(cls, payment: ProviderPayment) -> _ProviderRecord:
        return cls(
            reference=payment.reference,
            ledger_id=payment.top_up_id,
            amount_cents=payment.amount_cents,
            completed=payment.status == PaymentStatus.SUCCEEDED,
            status=payment.status.value,
        )

    @classmethod
    def of_transfer(cls, transfer: ProviderTransfer) -> _ProviderRecord:
        return cls(
            reference=transfer.reference,
            ledger_id=transfer.payout_id,
            amount_cents=transfer.amount_cents,
            completed=transfer.status == TransferStatus.PAID,
            status=transfer.status.value,
        )


def _differences(
    subject: _Subject,
    records: Mapping[UUID, _LedgerRecord],
    provided: Iterable[_ProviderRecord],
    since: datetime | None,
) -> Iterable[Difference]:
    seen: set[UUID] = set()
    for item in provided:
        record = None if item.ledger_id is None else records.get(item.ledger_id)
        if record is None:
            if item.completed:
                detail = f"{subject.completed}, for no {subject.ledger_record}"
                yield _difference(subject, subject.unknown, item, None, None, detail)
            continue
        assert item.ledger_id is not None
        seen.add(item.ledger_id)
        if item.completed and not record.booked_cents:
            state = "but voided back to the account" if record.voided else subject.not_booked_yet
            detail = f"{subject.completed}, {state}"
            yield _difference(subject, subject.not_booked, item, item.ledger_id, 0, detail)
        elif item.completed and record.booked_cents != item.amount_cents:
            yield _difference(
                subject,
                "amount_differs",
                item,
                item.ledger_id,
                record.booked_cents,
                f"{subject.booked} another amount than the provider {subject.completed}",
            )
        elif not item.completed and record.booked_cents:
            yield _difference(
                subject,
                subject.booked_without_provider,
                item,
                item.ledger_id,
                record.booked_cents,
                f"{subject.booked}, but the provider's {subject.provider_record} is {item.status}",
            )
    for ledger_id, record in records.items():
        if ledger_id in seen or not record.booked_cents:
            continue
        if since is not None and record.requested_at < since:
            continue
        yield Difference(
            kind=subject.booked_without_provider,
            subject=subject.name,
            id=ledger_id,
            reference=record.reference,
            ledger_cents=record.booked_cents,
            provider_cents=None,
            detail=f"{subject.booked}, but the provider has no such {subject.provider_record}",
        )


def _difference(
    subject: _Subject,
    kind: DifferenceKind,
    item: _ProviderRecord,
    ledger_id: UUID | None,
    ledger_cents: int | None,
    detail: str,
) -> Difference:
    return Difference(
        kind=kind,
        subject=subject.name,
        id=ledger_id,
        reference=item.reference,
        ledger_cents=ledger_cents,
        provider_cents=item.amount_cents,
        detail=detail,
    )
