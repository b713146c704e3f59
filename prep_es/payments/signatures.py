"""Signed notifications, in Stripe's scheme: ``t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The HMAC covers ``"<t>.<payload>"`` under the endpoint's secret, so a payload cannot be
changed nor its timestamp moved without the secret; the timestamp bounds how long a
captured notification can be replayed. Several ``v1`` entries may stand in one header
(while a secret is being rolled over): one matching is enough. Errors never echo the
secret nor the signature they were given.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Final

from aggregates.payment_provider import NotificationRejected

SIGNATURE_SCHEME: Final = "v1"
SIGNATURE_HEADER_LENGTH_MAX: Final = 4096
"""Longer headers are refused unread: a real one holds a timestamp and a few digests."""
SIGNATURES_PER_HEADER_MAX: Final = 16


def signature_of(payload: bytes, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<payload>"`` under ``secret``."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The signature header of ``payload`` made at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},{SIGNATURE_SCHEME}={signature_of(payload, secret, timestamp)}"


def verify(
    payload: bytes, header: str | None, secret: str, now: datetime, tolerance_s: int
) -> None:
    """Return if ``header`` signs ``payload`` under ``secret`` at a time within
    ``tolerance_s`` of ``now``; otherwise raise :class:`NotificationRejected` with code
    ``signature_missing``, ``invalid_signature`` (malformed, or no ``v1`` matches) or
    ``stale_signature`` (signed too long before or after ``now``)."""
    if header is None or not header.strip():
        raise NotificationRejected(
            "the notification carries no signature", code="signature_missing"
        )
    timestamp, signatures = _parse(header)
    expected = signature_of(payload, secret, timestamp).encode()
    # Compare with every candidate, never stopping early, each in constant time (as
    # bytes: compare_digest refuses a str that is not ASCII).
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise NotificationRejected(
            "the notification's signature does not match its payload", code="invalid_signature"
        )
    if abs(now.timestamp() - timestamp) > tolerance_s:
        raise NotificationRejected(
            f"the notification was signed more than {tolerance_s} s away from now",
            code="stale_signature",
        )


def _parse(header: str) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` signatures of a header; other schemes are skipped."""
    if len(header) > SIGNATURE_HEADER_LENGTH_MAX:
        raise _malformed()
    timestamps: list[int] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            raise _malformed()
        if key == "t":
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise _malformed()
            timestamps.append(int(value))
        elif key == SIGNATURE_SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not signatures or len(signatures) > SIGNATURES_PER_HEADER_MAX:
        raise _malformed()
    return timestamps[0], signatures


def _malformed() -> NotificationRejected:
    return NotificationRejected(
        "the notification's signature header is malformed", code="invalid_signature"
    )
