"""Stripe's webhook events, read into the port's :class:`ProviderNotification`.

``read_event`` reads a payload whose signature the provider has already verified
(``StripeProvider.read_notification``):

    payment_intent.processing|succeeded|payment_failed|canceled
        payment, top_up_id from metadata, status from the type, failure code from
        ``last_payment_error`` (``failure_code_of``: Stripe's ``decline_code`` when it says
        more than ``generic_decline``, else its ``code``)
    refund.created|updated|failed, charge.refund.updated
        transfer, payout_id from metadata, status from the Refund's (``failed`` for
        refund.failed), failure code from ``failure_reason``
    transfer.created      transfer paid (a transfer to a connected account is complete
                          when made)
    transfer.reversed     transfer failed (``transfer_reversed``)
    any other type        subject and status ``None``: recorded, changes nothing

A missing or malformed id in the metadata gives ``subject_id`` ``None``. A payload that is
not a JSON Stripe event is refused as ``malformed_notification``. ``signature_timestamp_s``
reads when a verified header was signed. The Refund statuses, the failure-code rule and
the value readers serve the provider too, for what its calls answer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from aggregates.payment_provider import (
    NOTIFICATION_AMOUNT_CENTS_MAX,
    NotificationRejected,
    NotificationSubject,
    PaymentStatus,
    ProviderNotification,
    TransferStatus,
)

PROVIDER_NAME: Final = "stripe"
_GENERIC_DECLINE_CODE: Final = "generic_decline"
_EVENT_CREATED_S_MAX: Final = 2**33
"""Past any event's creation time (the year 2242): a larger one is no Stripe event."""

_PAYMENT_STATUS_OF_EVENT: Final = {
    "payment_intent.processing": PaymentStatus.PROCESSING,
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELED,
}
_REFUND_EVENTS: Final = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
_TRANSFER_STATUS_OF_EVENT: Final = {
    "transfer.created": TransferStatus.PAID,
    "transfer.reversed": TransferStatus.FAILED,
}
REFUND_STATUSES: Final = {
    "succeeded": TransferStatus.PAID,
    "pending": TransferStatus.PENDING,
    "requires_action": TransferStatus.PENDING,
    "failed": TransferStatus.FAILED,
    "canceled": TransferStatus.CANCELED,
}


def read_event(text: str) -> ProviderNotification:
    """The notification a verified payload tells of."""
    return _notification_of(_event_of(text))


def signature_timestamp_s(header: str) -> int:
    """The ``t=`` of a header the SDK has just verified, read as the SDK reads it."""
    for item in header.split(","):
        parts = item.split("=", 2)
        if parts[0] == "t":
            return int(parts[1])
    raise AssertionError("a verified signature header without a timestamp")


def failure_code_of(code: str | None, decline_code: str | None) -> str:
    """A failed payment's code: the decline code when it says more than
    ``generic_decline``, else Stripe's error code."""
    if decline_code and decline_code != _GENERIC_DECLINE_CODE:
        return decline_code
    return code or decline_code or "payment_failed"


def text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def uuid_or_none(value: object) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def time_of(created_s: int) -> datetime:
    return datetime.fromtimestamp(created_s, UTC)


def _event_of(text: str) -> dict[str, Any]:
    """The event a signed payload holds: a JSON object with an id, a type, a creation
    time and the object it is about."""
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's stack
        event = None
    if not (
        isinstance(event, dict)
        and event.get("object") == "event"
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and _is_count(event.get("created"), _EVENT_CREATED_S_MAX)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise NotificationRejected(
            "the signed payload is not a Stripe event", code="malformed_notification"
        )
    return event


def _notification_of(event: dict[str, Any]) -> ProviderNotification:
    event_type: str = event["type"]
    subject: dict[str, Any] = event["data"]["object"]
    metadata = subject.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    reference = subject.get("id") if isinstance(subject.get("id"), str) else None
    amount = subject.get("amount")
    amount_cents = amount if _is_count(amount, NOTIFICATION_AMOUNT_CENTS_MAX) else None
    currency = subject.get("currency") if isinstance(subject.get("currency"), str) else None
    common = {
        "provider": PROVIDER_NAME,
        "event_id": event["id"],
        "event_type": event_type,
        "occurred_at": time_of(event["created"]),
        "reference": reference,
        "amount_cents": amount_cents,
        "currency": currency,
    }
    if event_type in _PAYMENT_STATUS_OF_EVENT:
        status = _PAYMENT_STATUS_OF_EVENT[event_type]
        failure_code = None
        if status is PaymentStatus.FAILED:
            error = subject.get("last_payment_error")
            error = error if isinstance(error, dict) else {}
            failure_code = failure_code_of(
                text_or_none(error.get("code")), text_or_none(error.get("decline_code"))
            )
        return ProviderNotification(
            **common,
            subject=NotificationSubject.PAYMENT,
            subject_id=uuid_or_none(metadata.get("top_up_id")),
            status=status,
            failure_code=failure_code,
        )
    if event_type in _REFUND_EVENTS:
        refund_status = (
            TransferStatus.FAILED
            if event_type == "refund.failed"
            else REFUND_STATUSES.get(
                text_or_none(subject.get("status")) or "", TransferStatus.PENDING
            )
        )
        return ProviderNotification(
            **common,
            subject=NotificationSubject.TRANSFER,
            subject_id=uuid_or_none(metadata.get("payout_id")),
            status=refund_status,
            failure_code=(
                text_or_none(subject.get("failure_reason")) or "refund_failed"
                if refund_status is TransferStatus.FAILED
                else None
            ),
        )
    if event_type in _TRANSFER_STATUS_OF_EVENT:
        transfer_status = _TRANSFER_STATUS_OF_EVENT[event_type]
        if transfer_status is TransferStatus.FAILED and subject.get(
            "amount_reversed"
        ) != subject.get("amount"):
            # Reversed in part: the payout was paid, and what came back is no void of it.
            return ProviderNotification(**common, subject=None, subject_id=None, status=None)
        return ProviderNotification(
            **common,
            subject=NotificationSubject.TRANSFER,
            subject_id=uuid_or_none(metadata.get("payout_id")),
            status=transfer_status,
            failure_code=(
                "transfer_reversed" if transfer_status is TransferStatus.FAILED else None
            ),
        )
    return ProviderNotification(**common, subject=None, subject_id=None, status=None)


def _is_count(value: object, most: int) -> bool:
    """A whole number from 0 to ``most`` (JSON's ``true`` is no number)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most
