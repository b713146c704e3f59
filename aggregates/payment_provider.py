"""The payment provider port: what Prep ES asks of whoever moves real money.

Money enters the ledger only as a provider's confirmed payment of a top-up, and leaves it
only as a provider's transfer: a payout to a host's connected account or a refund to the
card a customer topped up with. Card numbers never reach Prep ES: a client gets a payment
method id (``pm_...``) from the provider's own client library and hands over only that.

Adapters (the in-process ``sandbox``, ``stripe``) implement :class:`PaymentProvider`; the
command side speaks only this vocabulary. Every call that creates something at the
provider passes Prep ES's own id as the provider's idempotency key, so a retry after a
lost answer never makes a second payment or transfer.

    PaymentProviderError          the provider could not be asked (503, retry later)
    NotificationRejected          a notification failed its check (400, nothing recorded)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from aggregates.errors import DomainError, InvalidRequest

CURRENCY = "usd"
"""The one currency of the ledger, as providers spell it."""
NOTIFICATION_TEXT_LENGTH_MAX = 255
NOTIFICATION_AMOUNT_CENTS_MAX = 10**12


class PaymentStatus(StrEnum):
    """Where the provider's payment for a top-up stands."""

    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class TransferStatus(StrEnum):
    """Where a payout or refund stands at the provider."""

    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"


class TransferMethod(StrEnum):
    """How money leaves: to a host's payout destination, or back to a customer's card."""

    PAYOUT = "payout"
    REFUND = "refund"


class NotificationSubject(StrEnum):
    PAYMENT = "payment"
    TRANSFER = "transfer"


@dataclass(frozen=True)
class ProviderPayment:
    """The provider's record of the payment made for one top-up."""

    reference: str
    """The provider's id of the payment (a Stripe PaymentIntent id)."""
    top_up_id: UUID | None
    """Prep ES's top-up, from the payment's metadata (``None``: not made by Prep ES)."""
    amount_cents: int
    currency: str
    status: PaymentStatus
    created_at: datetime
    failure_code: str | None = None


@dataclass(frozen=True)
class ProviderTransfer:
    """The provider's record of one payout or refund."""

    reference: str
    payout_id: UUID | None
    method: TransferMethod
    amount_cents: int
    currency: str
    status: TransferStatus
    created_at: datetime
    failure_code: str | None = None


@dataclass(frozen=True)
class ProviderNotification:
    """A verified notification: the provider tells what became of a payment or transfer.

    ``event_id`` is the provider's id of the notification: the same event delivered five
    times has one id. ``subject_id`` is Prep ES's top-up or payout id, read from the
    metadata Prep ES gave the provider; ``status`` is a :class:`PaymentStatus` for a
    payment and a :class:`TransferStatus` for a transfer, ``None`` for an event type
    that changes nothing here (recorded all the same)."""

    provider: str
    event_id: str
    event_type: str
    occurred_at: datetime
    subject: NotificationSubject | None
    subject_id: UUID | None
    reference: str | None
    status: str | None
    amount_cents: int | None
    currency: str | None
    failure_code: str | None = None


class PaymentProviderError(DomainError):
    """The provider could not be reached or answered with an error of its own; nothing
    was decided, and the same request may be sent again."""

    default_code = "payment_provider_unavailable"


class NotificationRejected(DomainError):
    """A notification is unsigned, wrongly signed, too old (a replay), meant for another
    provider, or not a notification at all; ``code`` says which."""

    default_code = "invalid_signature"


class PayoutDestinationRefused(InvalidRequest):
    """The provider knows no payout destination of that name."""

    default_code = "payout_destination_invalid"


def check_notification(notification: ProviderNotification) -> None:
    """``NotificationRejected`` (``malformed_notification``) unless every value of a
    verified notification is one the ledger can keep: texts short and printable (no NUL,
    no control characters, which no read model could store), an amount in range. Signed
    does not mean sane: a provider's bug, or a leaked secret, must not stop a projector."""
    texts = (
        notification.event_id,
        notification.event_type,
        notification.reference,
        notification.status,
        notification.currency,
        notification.failure_code,
    )
    for text in texts:
        if text is not None and (
            len(text) > NOTIFICATION_TEXT_LENGTH_MAX or not text.isprintable()
        ):
            raise NotificationRejected(
                f"a notification's texts are printable and at most "
                f"{NOTIFICATION_TEXT_LENGTH_MAX} characters",
                code="malformed_notification",
            )
    if not notification.event_id:
        raise NotificationRejected("a notification has an id", code="malformed_notification")
    amount = notification.amount_cents
    if amount is not None and not 0 <= amount <= NOTIFICATION_AMOUNT_CENTS_MAX:
        raise NotificationRejected(
            "a notification's amount is out of range", code="malformed_notification"
        )


class PaymentProvider(Protocol):
    """A payment provider, as the command side uses it. Each method is one call to the
    provider; implementations are thread-safe."""

    @property
    def name(self) -> str:
        """``sandbox`` or ``stripe``: the ``{provider}`` of the webhook route."""
        ...

    @property
    def test_mode(self) -> bool:
        """Whether no real money moves (the sandbox; Stripe with a test key)."""
        ...

    def create_payment(
        self, top_up_id: UUID, amount_cents: int, payment_method: str
    ) -> ProviderPayment:
        """Charge ``payment_method`` for a top-up (idempotent per ``top_up_id``). A decline
        is a payment with status ``failed`` and a ``failure_code``, not an error."""
        ...

    def find_payment(self, reference: str) -> ProviderPayment | None: ...

    def refund_payment(
        self, payout_id: UUID, payment_reference: str, amount_cents: int
    ) -> ProviderTransfer:
        """Refund part of a payment to its card (idempotent per ``payout_id``)."""
        ...

    def send_payout(self, payout_id: UUID, destination: str, amount_cents: int) -> ProviderTransfer:
        """Pay a host's payout destination (idempotent per ``payout_id``)."""
        ...

    def check_payout_destination(self, destination: str) -> None:
        """``PayoutDestinationRefused`` unless payouts can be sent to ``destination``."""
        ...

    def read_notification(
        self, payload: bytes, headers: Mapping[str, str], now: datetime
    ) -> ProviderNotification:
        """The notification ``payload`` carries, once its signature (in ``headers``,
        lower-case names) is verified and no older than the tolerance at ``now``;
        otherwise ``NotificationRejected``."""
        ...

    def payments_since(self, since: datetime | None) -> Iterable[ProviderPayment]:
        """Every payment made since ``since`` (all with ``None``), for reconciliation."""
        ...

    def transfers_since(self, since: datetime | None) -> Iterable[ProviderTransfer]: ...
