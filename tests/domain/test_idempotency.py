"""Idempotency records: derived ids, same key with a different request, key shape."""

from __future__ import annotations

import pytest

from aggregates.base import derived_id
from aggregates.errors import IdempotencyKeyReused, InvalidRequest
from aggregates.idempotency import IdempotencyRecord, check_idempotency_key
from tests.domain.scenario import given, raises_code, refused, then

SCOPE = "user:1:request_booking"
RESULT = {"id": "b-1", "status": "pending"}


def recorded() -> IdempotencyRecord:
    return IdempotencyRecord(scope=SCOPE, key="key-1", request_hash="hash-a", result=RESULT)


def test_record_the_first_result() -> None:
    record = recorded()
    then(
        record,
        (
            IdempotencyRecord.IdempotencyKeyRecorded,
            {"scope": SCOPE, "key": "key-1", "request_hash": "hash-a", "result": RESULT},
        ),
    )
    assert record.result == RESULT


def test_id_is_derived_from_scope_and_key() -> None:
    assert recorded().id == recorded().id == derived_id("idempotency", SCOPE, "key-1")
    assert recorded().id == IdempotencyRecord.create_id(SCOPE, "key-1")
    other_key = IdempotencyRecord(scope=SCOPE, key="key-2", request_hash="hash-a", result={})
    other_scope = IdempotencyRecord(
        scope="user:2:request_booking", key="key-1", request_hash="hash-a", result={}
    )
    assert len({recorded().id, other_key.id, other_scope.id}) == 3


def test_same_request_passes() -> None:
    record = given(*recorded().collect_events())
    record.check_same_request("hash-a")
    then(record)


def test_same_key_with_a_different_request_is_refused() -> None:
    record = given(*recorded().collect_events())
    with refused(record, IdempotencyKeyReused, "idempotency_key_reused"):
        record.check_same_request("hash-b")


@pytest.mark.parametrize(
    "key",
    ["k", "x" * 255, "550e8400-e29b-41d4-a716-446655440000", "signup:3", "aGVsbG8+/w==", "a.b_c~d"],
)
def test_valid_keys(key: str) -> None:
    check_idempotency_key(key)


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "tab\there", "new\nline", "ada@example.com", "Ada Lovelace", "café", "a;b"],
)
def test_invalid_keys(key: str) -> None:
    with raises_code(InvalidRequest, "invalid_idempotency_key"):
        check_idempotency_key(key)
