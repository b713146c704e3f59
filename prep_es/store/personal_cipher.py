"""Personal fields sealed in stored events and snapshots, and opened again on load.

A personal field (see ``aggregates.personal``) is stored as an envelope in place of its
value::

    "email": {"personal_v1": "<base64url of nonce + AES-256-GCM ciphertext>",
              "subject": "<the subject's id>"}

The plaintext is the value's JSON; the associated data is the event's id (aggregate id and
version) and the field's name, so an envelope copied into another event or field does not
open. A field about several people (see ``PERSONAL_JOINT_SUBJECTS``) names the others under
``"joint"``, and is sealed with a key derived (HKDF-SHA256) from all of their keys: it
opens only while none of them is erased.

A field whose subject's key is destroyed opens as ``None``, and is named among the
erased fields. A stored value that is not an envelope (an event written before encryption,
not yet migrated) is read as it is.
"""

from __future__ import annotations

import base64
import binascii
import functools
import secrets
from collections.abc import Iterable
from typing import Any, Final
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel

from aggregates.personal import (
    ACTOR_SUBJECT,
    ORIGINATOR_SUBJECT,
    personal_fields,
    personal_joint_subjects_field,
    personal_subject_field,
)
from prep_es.store.personal_keys import NONCE_BYTES, DataKeys

ENVELOPE_KEY: Final = "personal_v1"
SUBJECT_KEY: Final = "subject"
JOINT_KEY: Final = "joint"
SNAPSHOT_FIELD_PREFIX: Final = "snapshot:"


class UnreadableEnvelope(Exception):
    """An envelope whose key exists but which does not open: tampered or misplaced."""


def is_envelope(value: Any) -> bool:
    return type(value) is dict and ENVELOPE_KEY in value and SUBJECT_KEY in value


def personal_attributes(aggregate_class: type[Any]) -> tuple[frozenset[str], str]:
    """The personal attributes of an aggregate class and the attribute naming their
    subject (see ``aggregates.personal``)."""
    names: frozenset[str] = getattr(aggregate_class, "PERSONAL_ATTRIBUTES", frozenset())
    subject: str = getattr(aggregate_class, "PERSONAL_SUBJECT_ATTRIBUTE", "_id")
    return names, subject


class PersonalDataCipher:
    """Seals and opens the personal fields of stored states with the subjects' keys."""

    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys

    def seal_event(
        self, event_class: type[BaseModel], state: dict[str, Any], originator_id: UUID, version: int
    ) -> None:
        """Encrypt ``state``'s personal fields in place (``state`` as stored: JSON-native,
        without the originator's id and version)."""
        names = personal_fields(event_class)
        if not names:
            return
        subject: UUID | None = None
        joint: tuple[UUID, ...] = ()
        for name in names:
            value = state.get(name)
            if value is None or value == "" or is_envelope(value):
                continue  # an empty text says nothing about anyone
            if subject is None:
                subject = subject_of(event_class, state, originator_id)
                joint = joint_subjects_of(event_class, state, subject)
            context = _context(originator_id, version, name)
            state[name] = self._seal(subject, value, context, joint)

    def open_event(
        self,
        state: dict[str, Any],
        originator_id: UUID,
        version: int,
        names: Iterable[str] | None = None,
    ) -> frozenset[str]:
        """Decrypt every envelope among ``state``'s fields (or among ``names``, the
        fields that may hold one) in place; the names of those whose key is destroyed,
        now ``None``."""
        erased: set[str] = set()
        prefix = f"{originator_id}:{version}:"
        for name in list(state) if names is None else names:
            value = state.get(name)
            if type(value) is dict and ENVELOPE_KEY in value:
                opened = self._open(value, f"{prefix}{name}".encode())
                if opened is _ERASED:
                    state[name] = None
                    erased.add(name)
                else:
                    state[name] = opened
        return frozenset(erased)

    def seal_snapshot(
        self, aggregate_class: type[Any], state: dict[str, Any], originator_id: UUID, version: int
    ) -> None:
        """Encrypt, in place, the personal attributes in a snapshot's aggregate state."""
        names, subject_attribute = personal_attributes(aggregate_class)
        if not names:
            return
        subject = UUID(str(state.get(subject_attribute) or originator_id))
        for name in names:
            value = state.get(name)
            if value is None or is_envelope(value):
                continue
            context = _context(originator_id, version, SNAPSHOT_FIELD_PREFIX + name)
            state[name] = self._seal(subject, value, context)

    def open_snapshot(
        self, state: dict[str, Any], originator_id: UUID, version: int
    ) -> frozenset[str]:
        erased: set[str] = set()
        for name, value in state.items():
            if type(value) is dict and ENVELOPE_KEY in value:
                context = _context(originator_id, version, SNAPSHOT_FIELD_PREFIX + name)
                opened = self._open(value, context)
                state[name] = None if opened is _ERASED else opened
                if opened is _ERASED:
                    erased.add(name)
        return frozenset(erased)

    def _seal(
        self, subject: UUID, value: Any, context: bytes, joint: tuple[UUID, ...] = ()
    ) -> dict[str, Any]:
        key = self.keys.for_writing(subject)
        if joint:
            key = _joint_key([key, *(self.keys.for_writing(other) for other in joint)])
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, orjson.dumps(value), context)
        envelope: dict[str, Any] = {
            ENVELOPE_KEY: base64.urlsafe_b64encode(nonce + sealed).decode(),
            SUBJECT_KEY: str(subject),
        }
        if joint:
            envelope[JOINT_KEY] = [str(other) for other in joint]
        return envelope

    def _open(self, envelope: dict[str, Any], context: bytes) -> Any:
        try:
            subject = _subject_id(str(envelope[SUBJECT_KEY]))
            joint = [_subject_id(str(other)) for other in envelope.get(JOINT_KEY) or ()]
            blob = base64.urlsafe_b64decode(str(envelope[ENVELOPE_KEY]))
        except (ValueError, TypeError, binascii.Error, KeyError) as error:
            raise UnreadableEnvelope(f"malformed personal data envelope: {error}") from None
        if joint:
            keys = [self.keys.for_reading(each) for each in (subject, *joint)]
            if any(each is None for each in keys):
                return _ERASED
            cipher = AESGCM(_joint_key([each for each in keys if each is not None]))
        else:
            found = self.keys.cipher_for_reading(subject)
            if found is None:
                return _ERASED
            cipher = found
        try:
            plain = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
        except InvalidTag:
            raise UnreadableEnvelope(
                f"a personal field of {subject} does not open where it is stored"
            ) from None
        return orjson.loads(plain)


_ERASED: Final = object()


@functools.lru_cache(maxsize=65_536)
def _subject_id(text: str) -> UUID:
    """A subject's id from its envelope: parsed once per subject, not once per field."""
    return UUID(text)


def subject_of(event_class: type[BaseModel], state: dict[str, Any], originator_id: UUID) -> UUID:
    """Whose personal data ``state`` (an event of ``event_class``, as stored) holds."""
    field = personal_subject_field(event_class)
    if field == ORIGINATOR_SUBJECT:
        return originator_id
    if field == ACTOR_SUBJECT:
        actor = (state.get("metadata") or {}).get("actor_id")
    else:
        actor = state.get(field)
    return originator_id if actor is None else UUID(str(actor))


def joint_subjects_of(
    event_class: type[BaseModel], state: dict[str, Any], subject: UUID
) -> tuple[UUID, ...]:
    """The further subjects of ``state``'s personal fields, ``subject`` left out."""
    field = personal_joint_subjects_field(event_class)
    if field is None:
        return ()
    others = (UUID(str(other)) for other in state.get(field) or ())
    return tuple(dict.fromkeys(other for other in others if other != subject))


def _joint_key(keys: list[bytes]) -> bytes:
    """One key from the keys of every subject of a field, in the envelope's order."""
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=b"prep-es joint key").derive(
        b"".join(keys)
    )


def _context(originator_id: UUID, version: int, name: str) -> bytes:
    return f"{originator_id}:{version}:{name}".encode()
