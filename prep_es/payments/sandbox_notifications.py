"""The sandbox's notifications: Stripe-shaped JSON events, written and read.

An event is ``{"id": "evt_sandbox_…", "type": …, "created": <unix s>, "livemode": false,
"data": {"object": {…}}}``; the object is a ``payment_intent``, a ``refund`` or a
``transfer``, carrying Prep ES's id in its ``metadata``. Reading maps an event to the
port's :class:`ProviderNotification`; anything that is not such an event (once its
signature has been checked) is refused as ``malformed_notification``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson

from aggregates.payment_provider import (
    CURRENCY,
    NotificationRejected,
    NotificationSubject,
    PaymentStatus,
    ProviderNotification,
    TransferStatus,
)

PROVIDER_NAME: Final = "sandbox"
EVENT_ID_PREFIX: Final = "evt_sandbox_"

PAYMENT_EVENT_TYPES: Final[Mapping[PaymentStatus, str]] = {
    PaymentStatus.PROCESSING: "payment_intent.processing",
    PaymentStatus.SUCCEEDED: "payment_intent.succeeded",
    PaymentStatus.FAILED: "payment_intent.payment_failed",
    PaymentStatus.CANCELED: "payment_intent.canceled",
}
_PAYMENT_STATUSES: Final = {
    event_type: status for status, event_type in PAYMENT_EVENT_TYPES.items()
}
_STRIPE_PAYMENT_STATUSES: Final[Mapping[PaymentStatus, str]] = {
    PaymentStatus.PROCESSING: "processing",
    PaymentStatus.SUCCEEDED: "succeeded",
    PaymentStatus.FAILED: "requires_payment_method",
    PaymentStatus.CANCELED: "canceled",
}
"""What a PaymentIntent's ``status`` says, as Stripe spells it (a declined one waits for
another payment method)."""

_REFUND_STATUSES: Final[Mapping[TransferStatus, str]] = {
    TransferStatus.PENDING: "pending",
    TransferStatus.PAID: "succeeded",
    TransferStatus.FAILED: "failed",
    TransferStatus.CANCELED: "canceled",
}
_TRANSFER_STATUSES_OF_REFUNDS: Final = {text: status for status, text in _REFUND_STATUSES.items()}
TRANSFER_EVENT_TYPES: Final[Mapping[TransferStatus, str]] = {
    TransferStatus.PENDING: "transfer.created",
    TransferStatus.PAID: "transfer.paid",
    TransferStatus.FAILED: "transfer.failed",
    TransferStatus.CANCELED: "transfer.reversed",
}
_TRANSFER_STATUSES: Final = {
    event_type: status for status, event_type in TRANSFER_EVENT_TYPES.items()
}
REFUND_EVENT_TYPES: Final = ("refund.created", "refund.updated")


def new_event_id() -> str:
    return EVENT_ID_PREFIX + secrets.token_hex(12)


def _event(event_id: str, event_type: str, created_s: float, data: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created": int(created_s),
            "livemode": False,
            "data": {"object": data},
        }
    )


def payment_event(
    event_id: str,
    status: PaymentStatus,
    created_s: float,
    *,
    reference: str,
    top_up_id: UUID,
    amount_cents: int,
    failure_code: str | None,
) -> bytes:
    return _event(
        event_id,
        PAYMENT_EVENT_TYPES[status],
        created_s,
        {
            "id": reference,
            "object": "payment_intent",
            "amount": amount_cents,
            "currency": CURRENCY,
            "status": _STRIPE_PAYMENT_STATUSES[status],
            "metadata": {"top_up_id": str(top_up_id)},
            "last_payment_error": None if failure_code is None else {"code": failure_code},
        },
    )


def refund_event(
    event_id: str,
    status: TransferStatus,
    created_s: float,
    *,
    reference: str,
    payout_id: UUID,
    amount_cents: int,
    payment_reference: str,
    failure_code: str | None,
) -> bytes:
    event_type = "refund.created" if status is TransferStatus.PENDING else "refund.updated"
    return _event(
        event_id,
        event_type,
        created_s,
        {
            "id": reference,
            "object": "refund",
            "amount": amount_cents,
            "currency": CURRENCY,
            "status": _REFUND_STATUSES[status],
            "payment_intent": payment_reference,
            "metadata": {"payout_id": str(payout_id)},
            "failure_reason": failure_code,
        },
    )


def transfer_event(
    event_id: str,
    status: TransferStatus,
    created_s: float,
    *,
    reference: str,
    payout_id: UUID,
    amount_cents: int,
    destination: str,
    failure_code: str | None,
) -> bytes:
    return _event(
        event_id,
        TRANSFER_EVENT_TYPES[status],
        created_s,
        {
            "id": reference,
            "object": "transfer",
            "amount": amount_cents,
            "currency": CURRENCY,
            "destination": destination,
            "metadata": {"payout_id": str(payout_id)},
            "failure_code": failure_code,
        },
    )


def read_event(payload: bytes) -> ProviderNotification:
    """The notification a verified ``payload`` carries; ``NotificationRejected``
    (``malformed_notification``) if it is no sandbox event."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _malformed("the notification is not JSON") from None
    if not isinstance(event, dict):
        raise _malformed("the notification is not a JSON object")
    event_id = event.get("id")
    event_type = event.get("type")
    created = event.get("created")
    data = event.get("data")
    if not isinstance(event_id, str) or not event_id.startswith(EVENT_ID_PREFIX):
        raise _malformed("the notification has no sandbox event id")
    if not isinstance(event_type, str) or not isinstance(created, int) or isinstance(created, bool):
        raise _malformed("the notification has no type or creation time")
    if event.get("livemode") is not False:
        raise _malformed("the sandbox sends test-mode notifications only")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise _malformed("the notification has no data object")
    subject_object: dict[str, Any] = data["object"]
    try:
        occurred_at = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        raise _malformed("the notification's creation time is out of range") from None
    subject, subject_id, status, failure_code = _subject_of(event_type, subject_object)
    reference = subject_object.get("id")
    amount_cents = subject_object.get("amount")
    currency = subject_object.get("currency")
    if reference is not None and not isinstance(reference, str):
        raise _malformed("the notification's object id is not a string")
    if amount_cents is not None and not _is_integer(amount_cents):
        raise _malformed("the notification's amount is not an integer")
    if currency is not None and not isinstance(currency, str):
        raise _malformed("the notification's currency is not a string")
    return ProviderNotification(
        provider=PROVIDER_NAME,
        event_id=event_id,
        event_type=event_type,
        occurred_at=occurred_at,
        subject=subject,
        subject_id=subject_id,
        reference=reference,
        status=status,
        amount_cents=amount_cents,
        currency=currency,
        failure_code=failure_code,
    )


def _subject_of(
    event_type: str, subject_object: dict[str, Any]
) -> tuple[NotificationSubject | None, UUID | None, str | None, str | None]:
    """Subject, Prep ES's id, status and failure code of an event's object."""
    if event_type in _PAYMENT_STATUSES:
        error = subject_object.get("last_payment_error")
        failure_code = _text(error.get("code")) if isinstance(error, dict) else None
        return (
            NotificationSubject.PAYMENT,
            _metadata_id(subject_object, "top_up_id"),
            _PAYMENT_STATUSES[event_type].value,
            failure_code,
        )
    if event_type in REFUND_EVENT_TYPES:
        status_text = subject_object.get("status")
        refund_status = (
            _TRANSFER_STATUSES_OF_REFUNDS.get(status_text) if isinstance(status_text, str) else None
        )
        if refund_status is None:
            raise _malformed("the refund's status is unknown")
        return (
            NotificationSubject.TRANSFER,
            _metadata_id(subject_object, "payout_id"),
            refund_status.value,
            _text(subject_object.get("failure_reason")),
        )
    if event_type in _TRANSFER_STATUSES:
        return (
            NotificationSubject.TRANSFER,
            _metadata_id(subject_object, "payout_id"),
            _TRANSFER_STATUSES[event_type].value,
            _text(subject_object.get("failure_code")),
        )
    return None, None, None, None


def _metadata_id(subject_object: dict[str, Any], key: str) -> UUID | None:
    metadata = subject_object.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _malformed("the notification's metadata is not an object")
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise _malformed(f"the notification's {key} is not a UUID")


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _malformed("the notification's failure code is not a string")


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _malformed(detail: str) -> NotificationRejected:
    return NotificationRejected(detail, code="malformed_notification")
