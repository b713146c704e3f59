"""Stored events: explicit topics, plain JSON state, upcasting, loud failures."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from uuid import uuid4

import orjson
import pytest
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from eventsourcing.utils import register_topic

from aggregates.base import DomainEvent, EventMetadata, recording_metadata
from prep_es.store.eventstore import PrepApplication, open_application
from prep_es.store.serialization import OrjsonTranscoder, PydanticMapper
from tests.store.counter import Counter
from tests.support import store_settings

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


class Renamed(DomainEvent):
    """v2 renamed ``name`` to ``full_name``."""

    TOPIC: ClassVar[str] = "StoreTest.Renamed"
    class_version: ClassVar[int] = 2
    full_name: str

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["full_name"] = state.pop("name")


register_topic(Renamed.TOPIC, Renamed)


@pytest.fixture
def mapper() -> PydanticMapper:
    return PydanticMapper(transcoder=OrjsonTranscoder())


def test_events_are_stored_under_their_explicit_topic_as_plain_json(
    application: PrepApplication,
) -> None:
    counter = Counter(label="oven")
    counter.increment(5)
    application.save(counter)

    stored = application.events.recorder.select_events(counter.id)

    assert [event.topic for event in stored] == [
        "StoreTest.CounterStarted",
        "StoreTest.CounterIncremented",
    ]
    state = orjson.loads(stored[1].state)
    assert state.keys() == {"timestamp", "metadata", "amount"}
    assert state["amount"] == 5
    assert orjson.loads(stored[0].state)["originator_topic"] == "StoreTest.Counter"


def test_a_saved_event_reads_back_equal(application: PrepApplication) -> None:
    actor_id = uuid4()
    with recording_metadata(EventMetadata(actor_id=actor_id, request_id="request-1")):
        counter = Counter(label="oven")
        counter.increment(3)
    pending = counter.collect_events()
    application.save(*pending)

    stored = list(application.events.get(counter.id))

    assert stored == pending
    assert isinstance(stored[1], Counter.CounterIncremented)
    assert stored[1].metadata.actor_id == actor_id


def test_stored_events_load_after_their_classes_move(sqlite_url: str) -> None:
    app = open_application(store_settings(sqlite_url))
    counter = Counter(label="moved")
    counter.increment(4)
    counter.increment(1)
    app.save(counter)
    app.close()

    # A fresh interpreter that never imports tests.store.counter: the same topics now
    # name differently called classes in another module (__main__). Attribute names stay:
    # a snapshot (one was taken at version 3) holds aggregate state by attribute name.
    script = textwrap.dedent(
        f"""
        import json
        from typing import ClassVar
        from uuid import UUID

        from eventsourcing.domain import event

        from aggregates.base import Aggregate, AggregateCreated
        from prep_es.store.eventstore import open_application
        from prep_es.store.settings import Settings

        class Tally(Aggregate):
            TOPIC: ClassVar[str] = "StoreTest.Counter"

            class Event(Aggregate.Event):
                pass

            class TallyOpened(Event, AggregateCreated):
                TOPIC: ClassVar[str] = "StoreTest.CounterStarted"
                label: str

            class TallyRaised(Event):
                TOPIC: ClassVar[str] = "StoreTest.CounterIncremented"
                amount: int

            @event(TallyOpened)
            def __init__(self, label: str) -> None:
                self.label = label
                self.value = 0

            @event(TallyRaised)
            def _raised(self, amount: int) -> None:
                self.value += amount

        app = open_application(Settings(database_url={sqlite_url!r}))
        tally = app.repository.get(UUID({str(counter.id)!r}))
        events = list(app.events.get(tally.id))
        print(json.dumps({{
            "aggregate": f"{{type(tally).__module__}}:{{type(tally).__qualname__}}",
            "events": [type(event).__qualname__ for event in events],
            "label": tally.label,
            "value": tally.value,
            "version": tally.version,
        }}))
        app.close()
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {
        "aggregate": "__main__:Tally",
        "events": ["Tally.TallyOpened", "Tally.TallyRaised", "Tally.TallyRaised"],
        "label": "moved",
        "value": 5,
        "version": 3,
    }


def test_class_version_is_stored_and_old_versions_are_upcast(mapper: PydanticMapper) -> None:
    originator_id = uuid4()
    timestamp = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    current = Renamed(
        originator_id=originator_id,
        originator_version=1,
        timestamp=timestamp,
        full_name="Ada",
    )
    assert orjson.loads(mapper.to_stored_event(current).state)["class_version"] == 2

    version_1 = StoredEvent(
        originator_id=originator_id,
        originator_version=1,
        topic=Renamed.TOPIC,
        state=orjson.dumps({"timestamp": timestamp.isoformat(), "metadata": {}, "name": "Ada"}),
    )

    assert mapper.to_domain_event(version_1) == current


@pytest.mark.parametrize(
    ("topic", "state", "reason"),
    [
        ("StoreTest.Renamed", b"{not json", "unexpected character"),
        ("StoreTest.Renamed", b"[1, 2]", "not a JSON object"),
        ("StoreTest.NoSuchEvent", b"{}", "unknown topic"),
        ("StoreTest.Renamed", b'{"timestamp": "2025-01-01T00:00:00Z"}', "upcast_v1_v2 failed"),
        (
            "StoreTest.Renamed",
            b'{"timestamp": "2025-01-01T00:00:00Z", "class_version": 2}',
            "full_name",
        ),
        (
            "StoreTest.Renamed",
            b'{"timestamp": "2025-01-01T00:00:00Z", "full_name": "A", "class_version": 3}',
            "newer than this code",
        ),
    ],
)
def test_undecodable_events_fail_loudly(
    mapper: PydanticMapper, topic: str, state: bytes, reason: str
) -> None:
    stored = StoredEvent(originator_id=uuid4(), originator_version=1, topic=topic, state=state)

    with pytest.raises(MapperDeserialisationError, match=reason):
        mapper.to_domain_event(stored)


def test_mapper_refuses_compression_and_encryption() -> None:
    with pytest.raises(ValueError, match="plain JSON"):
        PydanticMapper(transcoder=OrjsonTranscoder(), compressor=ZlibCompressor())
