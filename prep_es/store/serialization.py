"""How domain events become stored rows and back: pydantic models, explicit topics, orjson.

The stored form of an event is ``(originator_id, originator_version, topic, state)``:

- ``topic`` is the event class's explicit ``TOPIC`` (``"Booking.BookingRequested"``), never
  a module path, so classes can move between modules without rewriting history.
- ``state`` is the JSON (orjson) of the event's fields in pydantic's JSON mode, minus the
  originator id and version (they are columns), plus ``"class_version": N`` when the
  class is at version N > 1.

Personal fields (``aggregates.personal``) are sealed with their subject's data key before
the state is encoded, and opened again before it is upcast (see
:mod:`prep_es.store.personal_cipher`).

Reading upcasts old states step by step with the class's static
``upcast_v{n}_v{n+1}(state: dict) -> None`` methods, as eventsourcing's own
:class:`~eventsourcing.persistence.Mapper` does, then validates the result with the
model: a stored event that no longer fits its class fails loudly, not silently.
"""

from __future__ import annotations

from typing import Any, Final, cast
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    Cipher,
    Compressor,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import TopicError, get_topic, resolve_topic
from pydantic import BaseModel, ValidationError

from aggregates.base import AggregateSnapshot
from aggregates.personal import ERASED_CONTEXT, personal_fields
from prep_es.store.personal_cipher import PersonalDataCipher, UnreadableEnvelope

CLASS_VERSION_KEY: Final = "class_version"
_ORIGINATOR_FIELDS: Final = frozenset({"originator_id", "originator_version"})


class OrjsonTranscoder(Transcoder):
    """Bytes <-> JSON-native values, with orjson. Pydantic has already reduced the
    event to JSON-native values, so no custom transcodings are needed."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


class PydanticMapper(Mapper[UUID]):
    """Maps pydantic domain events (see ``aggregates.base.DomainEvent``) to stored events.

    The library's whole-store cipher and compression are not supported: the store holds
    JSON, inspectable with SQL, in which only personal fields are sealed, each with its
    own subject's key (``personal``; without it, personal fields are stored as they are,
    which only tools reading a store written before encryption do).
    """

    def __init__(
        self,
        transcoder: Transcoder,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
        personal: PersonalDataCipher | None = None,
    ) -> None:
        if compressor is not None or cipher is not None:
            msg = "PydanticMapper stores plain JSON: no compressor or cipher may be configured"
            raise ValueError(msg)
        super().__init__(transcoder=transcoder)
        self.personal = personal
        self._event_classes: dict[str, tuple[type[BaseModel], int]] = {}

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        assert isinstance(domain_event, BaseModel), domain_event
        event_class = type(domain_event)
        state = domain_event.model_dump(mode="json", exclude=set(_ORIGINATOR_FIELDS))
        class_version: int = getattr(event_class, "class_version", 1)
        if class_version > 1:
            state[CLASS_VERSION_KEY] = class_version
        if self.personal is not None:
            self._seal(domain_event, state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(event_class),
            state=self.transcoder.encode(state),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        event_class, class_version = self._event_class(stored_event)
        try:
            state = self.transcoder.decode(stored_event.state)
        except orjson.JSONDecodeError as error:
            raise MapperDeserialisationError(_failure(stored_event, str(error))) from error
        if not isinstance(state, dict):
            msg = _failure(stored_event, "state is not a JSON object")
            raise MapperDeserialisationError(msg)

        erased = self._open(stored_event, event_class, class_version, state)
        from_version: int = state.pop(CLASS_VERSION_KEY, 1)
        if from_version > class_version:
            msg = _failure(
                stored_event,
                f"stored at class version {from_version}, newer than this code's {class_version}",
            )
            raise MapperDeserialisationError(msg)
        while from_version < class_version:
            upcaster = f"upcast_v{from_version}_v{from_version + 1}"
            try:
                getattr(event_class, upcaster)(state)
            except Exception as error:  # any failing upcaster: re-raised with the event's identity
                msg = _failure(stored_event, f"{upcaster} failed: {error!r}")
                raise MapperDeserialisationError(msg) from error
            from_version += 1

        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        try:
            # What ``model_validate`` runs, without its wrapper: a fifth of a decode.
            if erased:
                state["erased_fields"] = erased
                domain_event = event_class.__pydantic_validator__.validate_python(
                    state, context=ERASED_CONTEXT
                )
            else:
                domain_event = event_class.__pydantic_validator__.validate_python(state)
        except ValidationError as error:
            raise MapperDeserialisationError(_failure(stored_event, str(error))) from error
        return cast(DomainEventProtocol[UUID], domain_event)

    def _seal(self, domain_event: BaseModel, state: dict[str, Any]) -> None:
        assert self.personal is not None
        originator_id: UUID = getattr(domain_event, "originator_id")  # noqa: B009
        version: int = getattr(domain_event, "originator_version")  # noqa: B009
        if isinstance(domain_event, AggregateSnapshot):
            aggregate_class = resolve_topic(domain_event.topic)
            self.personal.seal_snapshot(aggregate_class, state["state"], originator_id, version)
        else:
            self.personal.seal_event(type(domain_event), state, originator_id, version)

    def _open(
        self,
        stored_event: StoredEvent,
        event_class: type[BaseModel],
        class_version: int,
        state: dict[str, Any],
    ) -> frozenset[str]:
        """Open ``state``'s sealed fields in place; the names of the erased ones. A state
        stored at the class's version has them under the class's personal fields; an
        older one is searched whole (a field may have been renamed since)."""
        if self.personal is None:
            return frozenset()
        is_snapshot = event_class is AggregateSnapshot
        if not (is_snapshot or personal_fields(event_class)):
            return frozenset()
        originator_id = stored_event.originator_id
        version = stored_event.originator_version
        assert isinstance(originator_id, UUID), originator_id
        try:
            if is_snapshot:
                self.personal.open_snapshot(state["state"], originator_id, version)
                return frozenset()
            current = state.get(CLASS_VERSION_KEY, 1) == class_version
            names = personal_fields(event_class) if current else None
            return self.personal.open_event(state, originator_id, version, names)
        except UnreadableEnvelope as error:
            raise MapperDeserialisationError(_failure(stored_event, str(error))) from error

    def _event_class(self, stored_event: StoredEvent) -> tuple[type[BaseModel], int]:
        """The model class of the stored event's topic and the class version it is at,
        found once per topic: replays decode hundreds of thousands of events, and asking
        a model class for an attribute it lacks (``class_version``) goes through
        pydantic's metaclass, which cost a tenth of a decode."""
        topic = stored_event.topic
        found = self._event_classes.get(topic)
        if found is not None:
            return found
        try:
            event_class = resolve_topic(topic)
        except TopicError as error:
            raise MapperDeserialisationError(
                _failure(stored_event, f"unknown topic ({error})")
            ) from error
        if not (isinstance(event_class, type) and issubclass(event_class, BaseModel)):
            msg = _failure(stored_event, f"topic resolves to {event_class!r}, not a model")
            raise MapperDeserialisationError(msg)
        class_version: int = getattr(event_class, "class_version", 1)
        found = self._event_classes[topic] = (event_class, class_version)
        return found


def _failure(stored_event: StoredEvent, reason: str) -> str:
    return (
        f"Failed to deserialise stored event with topic {stored_event.topic!r}, "
        f"originator_id {stored_event.originator_id} and "
        f"originator_version {stored_event.originator_version}: {reason}"
    )
