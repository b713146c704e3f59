"""Signing and verifying notifications in Stripe's scheme."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aggregates.payment_provider import NotificationRejected
from prep_es.payments.signatures import sign, signature_of, verify
from tests.support import START_OF_TESTS

SECRET = "a" * 32 + "b" * 32
PAYLOAD = b'{"id": "evt_sandbox_1", "type": "payment_intent.succeeded"}'
SIGNED_AT = int(START_OF_TESTS.timestamp())
TOLERANCE_S = 300


def rejection_code(payload: bytes, header: str | None, secret: str = SECRET) -> str:
    with pytest.raises(NotificationRejected) as caught:
        verify(payload, header, secret, START_OF_TESTS, TOLERANCE_S)
    return caught.value.code


def test_a_signed_payload_verifies() -> None:
    header = sign(PAYLOAD, SECRET, SIGNED_AT)

    assert header == f"t={SIGNED_AT},v1={signature_of(PAYLOAD, SECRET, SIGNED_AT)}"
    verify(PAYLOAD, header, SECRET, START_OF_TESTS, TOLERANCE_S)


def test_a_tampered_payload_is_refused() -> None:
    header = sign(PAYLOAD, SECRET, SIGNED_AT)

    assert rejection_code(PAYLOAD.replace(b"succeeded", b"failed"), header) == "invalid_signature"


def test_another_secret_is_refused() -> None:
    header = sign(PAYLOAD, "c" * 64, SIGNED_AT)

    assert rejection_code(PAYLOAD, header) == "invalid_signature"


def test_a_moved_timestamp_is_refused() -> None:
    signature = signature_of(PAYLOAD, SECRET, SIGNED_AT)

    assert rejection_code(PAYLOAD, f"t={SIGNED_AT + 1},v1={signature}") == "invalid_signature"


@pytest.mark.parametrize("offset_s", [-TOLERANCE_S - 1, TOLERANCE_S + 1])
def test_a_signature_too_old_or_from_the_future_is_stale(offset_s: int) -> None:
    header = sign(PAYLOAD, SECRET, SIGNED_AT + offset_s)

    assert rejection_code(PAYLOAD, header) == "stale_signature"


@pytest.mark.parametrize("offset_s", [-TOLERANCE_S, TOLERANCE_S])
def test_a_signature_at_the_edge_of_the_tolerance_verifies(offset_s: int) -> None:
    verify(
        PAYLOAD, sign(PAYLOAD, SECRET, SIGNED_AT + offset_s), SECRET, START_OF_TESTS, TOLERANCE_S
    )


def test_a_stale_forgery_is_refused_as_invalid_not_stale() -> None:
    header = sign(PAYLOAD, "c" * 64, SIGNED_AT - 10 * TOLERANCE_S)

    assert rejection_code(PAYLOAD, header) == "invalid_signature"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_header_is_refused(header: str | None) -> None:
    assert rejection_code(PAYLOAD, header) == "signature_missing"


@pytest.mark.parametrize(
    "header",
    [
        "nonsense",
        f"v1={signature_of(PAYLOAD, SECRET, SIGNED_AT)}",
        f"t={SIGNED_AT}",
        f"t={SIGNED_AT},t={SIGNED_AT},v1={signature_of(PAYLOAD, SECRET, SIGNED_AT)}",
        f"t=-{SIGNED_AT},v1={signature_of(PAYLOAD, SECRET, SIGNED_AT)}",
        f"t=１２,v1={signature_of(PAYLOAD, SECRET, SIGNED_AT)}",
        f"t={SIGNED_AT},v1=é",
        f"t={SIGNED_AT}," + ",".join(["v1=00"] * 17),
        f"t={SIGNED_AT},v1=" + "0" * 5000,
    ],
)
def test_a_malformed_header_is_refused(header: str) -> None:
    assert rejection_code(PAYLOAD, header) == "invalid_signature"


def test_one_matching_signature_among_several_is_enough() -> None:
    good = signature_of(PAYLOAD, SECRET, SIGNED_AT)
    rolled_over = signature_of(PAYLOAD, "d" * 64, SIGNED_AT)

    verify(
        PAYLOAD, f"t={SIGNED_AT},v1={rolled_over},v1={good},v0=ignored", SECRET, START_OF_TESTS, 5
    )
    assert (
        rejection_code(PAYLOAD, f"t={SIGNED_AT},v1={rolled_over},v0={good}") == "invalid_signature"
    )


def test_a_refusal_never_echoes_the_secret_or_the_signature() -> None:
    signature = signature_of(PAYLOAD, SECRET, SIGNED_AT)
    header = f"t={SIGNED_AT + 1},v1={signature}"

    with pytest.raises(NotificationRejected) as caught:
        verify(PAYLOAD, header, SECRET, START_OF_TESTS + timedelta(hours=1), TOLERANCE_S)

    assert SECRET not in str(caught.value)
    assert signature not in str(caught.value)
