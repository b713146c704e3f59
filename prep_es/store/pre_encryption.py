"""Stores written by the release before personal data was encrypted, and how each of
their stored events becomes one of this release.

That release kept every personal field in plain text, and derived the id of an email's
claim from the plain email (``derived_id("email", email)``), as it did the scope of the
Idempotency-Keys a registration was sent with (``anonymous:<claim id>:register_user``).
This release keys claims by an HMAC of the email made with the store's own secret
(``EmailClaim.create_id(email_digest=...)``), so an old claim and a new one of the same
email are different aggregates: run on an old store, this release would let every email
registered before be registered again. :func:`first_email_claim` finds such a store;
``open_application`` refuses it; ``prep-es store migrate`` copies it into a new store
(see ``prep_es.store.store_migration``), each event transformed by
:class:`PreEncryptionTransform`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import orjson
from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from psycopg.rows import tuple_row
from psycopg.sql import SQL

from aggregates.base import derived_id
from aggregates.idempotency import IdempotencyRecord, key_message, scope_message
from aggregates.user import EmailClaim
from prep_es.store.postgres_recorders import (
    AppendOnlyPostgresApplicationRecorder,
    qualified_table,
)
from prep_es.store.sqlite_recorders import AppendOnlySQLiteApplicationRecorder

CLAIM_TOPIC: Final = EmailClaim.EmailClaimed.TOPIC
IDEMPOTENCY_TOPIC: Final = IdempotencyRecord.IdempotencyKeyRecorded.TOPIC
CLAIM_TOPIC_PREFIX: Final = "EmailClaim."
PLAINTEXT_CLAIM_KIND: Final = "email"
"""What the release before encryption derived a claim's id from, with the plain email."""
ANONYMOUS_SCOPE_PREFIX: Final = "anonymous:"
CLASS_VERSION_KEY: Final = "class_version"


class UnmigratedStore(Exception):
    """The event store was written by the release before encryption: this release must
    not run on it (see the module's docstring); ``prep-es store migrate`` copies it."""


class NotPreEncryptionStore(Exception):
    """A source of ``prep-es store migrate`` holds an event the release before
    encryption never wrote (a keyed claim, a sealed field): it is no such store."""


def first_email_claim(recorder: ApplicationRecorder) -> dict[str, Any] | None:
    """The stored state of the first email claim in notification order, or None.

    What it costs: the events table read in notification-id order (its index on
    PostgreSQL, its rowid order on SQLite) up to the first ``EmailClaimed`` event, which
    in any store with users is among its first few events (a registration writes one;
    the first user is registered before anything else can happen) — a few page reads at
    every start, the same on a store of a million events as on one of ten. Only a store
    with events and no registration at all is read whole, and such a store is tiny.

    The first claim is enough: the release before encryption wrote only plaintext claims
    and this one refuses to run on its stores, so no store holds both kinds unless both
    releases wrote to it at once (an operator's mistake this check does not look for).
    """
    if isinstance(recorder, AppendOnlyPostgresApplicationRecorder):
        statement = SQL(
            "SELECT state FROM {events} WHERE topic = %s ORDER BY notification_id LIMIT 1"
        ).format(events=qualified_table(recorder.datastore, recorder.events_table_name))
        with (
            recorder.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(statement, (CLAIM_TOPIC,))
            row = cursor.fetchone()
    else:
        assert isinstance(recorder, AppendOnlySQLiteApplicationRecorder), recorder
        with recorder.datastore.transaction(commit=False) as sqlite_cursor:
            sqlite_cursor.execute(
                f"SELECT state FROM {recorder.events_table_name} WHERE topic = ? "
                "ORDER BY rowid LIMIT 1",
                (CLAIM_TOPIC,),
            )
            row = sqlite_cursor.fetchone()
    if row is None:
        return None
    state = orjson.loads(bytes(row[0]))
    assert isinstance(state, dict), state
    return state


def is_plaintext_claim(state: dict[str, Any]) -> bool:
    """Whether a stored ``EmailClaimed`` state is the release before encryption's (v1:
    the plain email, no digest)."""
    return "email" in state and "email_digest" not in state


def plaintext_claim_id(email: str) -> UUID:
    """The id the release before encryption gave the claim of ``email``."""
    return derived_id(PLAINTEXT_CLAIM_KIND, email)


@dataclass(frozen=True)
class Transformed:
    """A stored event of the old store, in the stored form this release writes (its
    personal fields still plain: the target's mapper seals them)."""

    stored: StoredEvent
    moved: bool
    """Its aggregate id changed (a claim, or an idempotency record)."""


class PreEncryptionTransform:
    """One stored event of the release before encryption → the same event as this
    release stores it. Every event keeps its aggregate id, version, topic, timestamp and
    metadata, except:

    - ``EmailClaim.EmailClaimed`` (v1, the plain email and the user's id) becomes v2
      (the email's digest and the holder's, made with the target store's secret), at
      the id this release derives from the email's digest;
    - ``IdempotencyRecord.IdempotencyKeyRecorded`` keeps its scope and key as keyed
      hashes, at the id derived from them (a registration's scope, which named the plain
      email's claim id, names the keyed claim's id before it is hashed); every record
      gains the ``subject_id`` whose key seals its result
      (the caller, or the user a registration created) and the ``joint_subject_ids`` of
      the other people its result names (a booking's customer, a user), as this release
      records them; its request fingerprint (a plain SHA-256) is keyed with the target
      store's secret, as this release makes it (``commands.processor``), so a retry of an
      old key is still recognised.

    Stateless: each event is transformed from its own stored state, so a copy stopped
    half-way resumes anywhere. Raises :class:`NotPreEncryptionStore` for an event that
    release never wrote."""

    def __init__(
        self, email_digest: Callable[[str], str], keyed_digest: Callable[[bytes], str]
    ) -> None:
        self._email_digest = email_digest
        self._keyed_digest = keyed_digest

    def transform(self, stored: StoredEvent) -> Transformed:
        topic = stored.topic
        if topic == CLAIM_TOPIC:
            return self._claim(stored)
        if topic.startswith(CLAIM_TOPIC_PREFIX):
            raise NotPreEncryptionStore(
                f"{stored.originator_id} v{stored.originator_version} is a {topic} event, "
                "which the release before encryption never wrote"
            )
        if topic == IDEMPOTENCY_TOPIC:
            return self._idempotency_record(stored)
        return Transformed(stored, moved=False)

    def keyed_claim_id(self, email: str) -> UUID:
        """The id of ``email``'s claim in the target store."""
        return EmailClaim.create_id(email_digest=self._email_digest(email))

    def _claim(self, stored: StoredEvent) -> Transformed:
        state = _state(stored)
        if not is_plaintext_claim(state):
            raise NotPreEncryptionStore(
                f"the email claim {stored.originator_id} is already keyed: this store was "
                "written by a release that encrypts personal data, and needs no migration"
            )
        email = state.pop("email")
        if not isinstance(email, str) or plaintext_claim_id(email) != stored.originator_id:
            raise NotPreEncryptionStore(
                f"the email claim {stored.originator_id} does not have the id its email "
                "derives: it was not written by the release before encryption"
            )
        try:
            holder = UUID(str(state.pop("user_id")))
        except (KeyError, ValueError):
            raise NotPreEncryptionStore(
                f"the email claim {stored.originator_id} does not name its user"
            ) from None
        digest = self._email_digest(email)
        state["email_digest"] = digest
        state["holder"] = self._keyed_digest(EmailClaim.holder_message(holder))
        state[CLASS_VERSION_KEY] = EmailClaim.EmailClaimed.class_version
        return Transformed(
            _stored(stored, EmailClaim.create_id(email_digest=digest), state), moved=True
        )

    def _idempotency_record(self, stored: StoredEvent) -> Transformed:
        state = _state(stored)
        scope, key, result = state.get("scope"), state.get("key"), state.get("result")
        if not (isinstance(scope, str) and isinstance(key, str) and isinstance(result, dict)):
            raise NotPreEncryptionStore(
                f"the idempotency record {stored.originator_id} lacks its scope, key or result"
            )
        if IdempotencyRecord.create_id(scope=scope, key=key) != stored.originator_id:
            raise NotPreEncryptionStore(
                f"the idempotency record {stored.originator_id} does not have the id its "
                "scope and key derive"
            )
        subject = _subject_of(state, result)
        state["subject_id"] = subject
        state["joint_subject_ids"] = _people_named_by(result, subject)
        request_hash = state.get("request_hash")
        try:
            plain_fingerprint = bytes.fromhex(str(request_hash))
        except ValueError:
            raise NotPreEncryptionStore(
                f"the idempotency record {stored.originator_id} has no SHA-256 fingerprint"
            ) from None
        state["request_hash"] = self._keyed_digest(plain_fingerprint)
        moved_scope = self._moved_scope(scope, result, stored)
        state["scope"] = self._keyed_digest(scope_message(moved_scope or scope))
        state["key"] = self._keyed_digest(key_message(key))
        record_id = IdempotencyRecord.create_id(scope=state["scope"], key=state["key"])
        return Transformed(_stored(stored, record_id, state), moved=True)

    def _moved_scope(self, scope: str, result: dict[str, Any], stored: StoredEvent) -> str | None:
        """The scope of this release for an anonymous scope that named a plain email's
        claim (``anonymous:<claim id>:<command>``), or None for a user's scope."""
        if not scope.startswith(ANONYMOUS_SCOPE_PREFIX):
            return None
        named, _, command = scope.removeprefix(ANONYMOUS_SCOPE_PREFIX).partition(":")
        email = result.get("email")
        if not isinstance(email, str) or str(plaintext_claim_id(email)) != named:
            raise NotPreEncryptionStore(
                f"the idempotency record {stored.originator_id} has an anonymous scope that "
                "is not its email's claim: this migration does not know how to move it"
            )
        return f"{ANONYMOUS_SCOPE_PREFIX}{self.keyed_claim_id(email)}:{command}"


def _subject_of(state: dict[str, Any], result: dict[str, Any]) -> str | None:
    """As ``commands.processor`` records it: the caller, or for a caller not signed in
    the user the command created."""
    metadata = state.get("metadata") or {}
    actor = metadata.get("actor_id")
    if actor is not None:
        return str(actor)
    created = result.get("id")
    try:
        return None if created is None else str(UUID(str(created)))
    except ValueError:
        return None


def _people_named_by(result: dict[str, Any], subject: str | None) -> list[str]:
    """As ``commands.processor`` records them: the people a result names besides its
    subject, by the result types that name people (a booking's ``customer_id``, a
    user's ``id`` beside their ``email``)."""
    named = [result.get("customer_id"), result.get("id") if "email" in result else None]
    people: list[str] = []
    for person in named:
        try:
            found = None if person is None else str(UUID(str(person)))
        except ValueError:
            found = None
        if found is not None and found != subject and found not in people:
            people.append(found)
    return people


def _state(stored: StoredEvent) -> dict[str, Any]:
    state = orjson.loads(stored.state)
    if not isinstance(state, dict):
        raise NotPreEncryptionStore(
            f"{stored.originator_id} v{stored.originator_version}: state is not a JSON object"
        )
    return state


def _stored(stored: StoredEvent, originator_id: UUID | str, state: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=orjson.dumps(state),
    )
