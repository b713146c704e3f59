"""Idempotency records: a command's key, a hash of its request, and its result.

The record's id is derived from the key's scope (caller and command) and the key, so
two concurrent first uses of one key both write version 1 of the same aggregate and
only one commits; the other retries, finds the record and returns its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated, derived_id
from aggregates.errors import IdempotencyKeyReused, InvalidRequest
from aggregates.personal import Personal

IDEMPOTENCY_KEY_LENGTH_MAX = 255


def check_idempotency_key(key: str) -> None:
    if not 0 < len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key has 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable characters",
            code="invalid_idempotency_key",
        )


class IdempotencyRecord(Aggregate):
    """The first result of a command sent under one idempotency key."""

    TOPIC: ClassVar[str] = "IdempotencyRecord"

    class Event(Aggregate.Event):
        pass

    class IdempotencyKeyRecorded(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "IdempotencyRecord.IdempotencyKeyRecorded"
        PERSONAL_SUBJECT: ClassVar[str] = "subject_id"
        PERSONAL_JOINT_SUBJECTS: ClassVar[str] = "joint_subject_ids"
        scope: str
        key: str
        request_hash: str
        """The request's fingerprint, keyed with the store's secret."""
        result: Personal[dict[str, Any]]
        """The answer, which may name people: sealed with the key of ``subject_id`` (the
        caller, or the user the command created) and of everyone in
        ``joint_subject_ids`` (a booking's customer, whose notes it holds)."""
        subject_id: UUID | None = None
        joint_subject_ids: list[UUID] = []

    @staticmethod
    def create_id(scope: str, key: str, **_: Any) -> UUID:
        return derived_id("idempotency", scope, key)

    @event(IdempotencyKeyRecorded)
    def __init__(
        self,
        scope: str,
        key: str,
        request_hash: str,
        result: dict[str, Any],
        subject_id: UUID | None = None,
        joint_subject_ids: Sequence[UUID] = (),
    ) -> None:
        self.scope = scope
        self.key = key
        self.request_hash = request_hash
        self.result: dict[str, Any] | None = result
        """None once its subject is erased."""
        self.subject_id = subject_id
        self.joint_subject_ids = list(joint_subject_ids)

    def check_same_request(self, request_hash: str) -> dict[str, Any]:
        """The recorded result, if ``request_hash`` is the recorded request's."""
        if request_hash != self.request_hash:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
        if self.result is None:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used by a user since erased; send a new key"
            )
        return self.result
