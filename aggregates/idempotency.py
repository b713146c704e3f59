"""Idempotency records: a command's key, a hash of its request, and its result.

The record's id is derived from the key's scope (caller and command) and the key, so
two concurrent first uses of one key both write version 1 of the same aggregate and
only one commits; the other retries, finds the record and returns its result.

Neither the scope nor the key is stored, nor derives the id, as sent: both are keyed
hashes made by the store with its secret (``CommandStore.keyed_digest`` of
:func:`scope_message` and :func:`key_message`). A registration's scope names the claim
of the email registered: in clear, or derived from clear values, it would tie the user
the record names (``subject_id``) to whoever registers that email after their erasure.

An Idempotency-Key is a token of :data:`IDEMPOTENCY_KEY_CHARACTERS`: it is also the
correlation id of the events its command stores, shown in the audit trail, so it must
not be able to carry an email or a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Final
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated, derived_id
from aggregates.errors import IdempotencyKeyReused, InvalidRequest
from aggregates.personal import Personal

IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255
IDEMPOTENCY_KEY_CHARACTERS: Final = "A-Z a-z 0-9 . _ ~ : + / = -"
"""What an Idempotency-Key is made of (a UUID, a base64 or hex string, a
``name:number`` token): no '@', no space."""
_IDEMPOTENCY_KEY_PATTERN: Final = re.compile(
    rf"[A-Za-z0-9._~:+/=-]{{1,{IDEMPOTENCY_KEY_LENGTH_MAX}}}", re.ASCII
)
SCOPE_LABEL: Final = b"idempotency-scope:"
KEY_LABEL: Final = b"idempotency-key:"


def check_idempotency_key(key: str) -> None:
    if not _IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        raise InvalidRequest(
            f"Idempotency-Key has 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} characters among "
            f"{IDEMPOTENCY_KEY_CHARACTERS}",
            code="invalid_idempotency_key",
        )


def scope_message(scope: str) -> bytes:
    """What the keyed hash stored as a record's ``scope`` is made of."""
    return SCOPE_LABEL + scope.encode()


def key_message(key: str) -> bytes:
    """What the keyed hash stored as a record's ``key`` is made of."""
    return KEY_LABEL + key.encode()


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
        """The keyed hash of the key's scope (see the module's docstring)."""
        key: str
        """The keyed hash of the Idempotency-Key."""
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
        """The id of the record of ``key`` in ``scope``: both keyed hashes."""
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
