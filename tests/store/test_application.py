"""PrepApplication on both backends: position, snapshots, conflicts, configuration."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from prep_es.store.eventstore import PrepApplication, datastore_of, open_application
from prep_es.store.postgres_recorders import PrepPostgresFactory
from prep_es.store.settings import Settings
from prep_es.store.sqlite_recorders import PrepSQLiteFactory
from tests.store.counter import SNAPSHOT_INTERVAL, Counter
from tests.support import store_settings


def test_position_is_zero_when_empty_then_the_latest_notification_id(
    application: PrepApplication,
) -> None:
    assert application.position() == 0

    counter = Counter(label="a")
    counter.increment(1)
    application.save(counter)

    assert application.position() == 2
    notifications = application.notification_log.select(start=1, limit=10)
    assert [notification.id for notification in notifications] == [1, 2]


def test_long_histories_load_from_a_snapshot(settings: Settings) -> None:
    app = open_application(settings)
    counter = Counter(label="busy")
    for amount in range(1, 2 * SNAPSHOT_INTERVAL + 2):
        counter.increment(amount)
    app.save(counter)
    assert app.snapshots is not None
    snapshots = list(app.snapshots.get(counter.id))
    app.close()

    assert [snapshot.originator_version for snapshot in snapshots] == [
        SNAPSHOT_INTERVAL,
        2 * SNAPSHOT_INTERVAL,
    ]

    reopened = open_application(settings)
    loaded: Counter = reopened.repository.get(counter.id)
    reopened.close()

    assert (loaded.label, loaded.value, loaded.version) == (
        counter.label,
        counter.value,
        counter.version,
    )


def test_the_latest_events_are_the_last_snapshot_and_the_events_after_it(
    settings: Settings,
) -> None:
    """What an aggregate is rebuilt from, read at once (PostgreSQL: one statement)."""
    app = open_application(settings)
    try:
        counter = Counter(label="busy")
        for amount in range(1, 2 * SNAPSHOT_INTERVAL + 2):
            counter.increment(amount)
        app.save(counter)
        fresh = Counter(label="new")
        app.save(fresh)

        latest = app.latest_events_of([counter.id])[counter.id]
        assert counter.version == 2 * SNAPSHOT_INTERVAL + 2  # created, then the increments
        assert [event.originator_version for event in latest] == [
            2 * SNAPSHOT_INTERVAL,
            2 * SNAPSHOT_INTERVAL + 1,
            2 * SNAPSHOT_INTERVAL + 2,
        ]
        rebuilt = None
        for event in latest:
            rebuilt = event.mutate(rebuilt)  # type: ignore[attr-defined]
        assert isinstance(rebuilt, Counter)
        assert (rebuilt.value, rebuilt.version) == (counter.value, counter.version)
        assert [
            event.originator_version for event in app.latest_events_of([fresh.id])[fresh.id]
        ] == [1]
        unknown = uuid4()
        assert app.latest_events_of([unknown]) == {unknown: []}
    finally:
        app.close()


def test_two_writers_of_one_version_conflict(settings: Settings) -> None:
    first = open_application(settings)
    second = open_application(settings)
    try:
        counter = Counter(label="contended")
        first.save(counter)
        copy_one: Counter = first.repository.get(counter.id)
        copy_two: Counter = second.repository.get(counter.id)
        copy_one.increment(1)
        copy_two.increment(2)
        first.save(copy_one)

        with pytest.raises(IntegrityError):
            second.save(copy_two)

        assert second.repository.get(counter.id).value == 1
    finally:
        first.close()
        second.close()


def test_process_environment_does_not_configure_the_store(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("PREP_ES_PERSISTENCE_MODULE", "eventsourcing.popo")
    monkeypatch.setenv("MAPPER_TOPIC", "eventsourcing.persistence:Mapper")

    app = open_application(settings)
    try:
        assert isinstance(app.factory, PrepPostgresFactory | PrepSQLiteFactory)
        assert type(app.mapper).__name__ == "PydanticMapper"
    finally:
        app.close()


@pytest.mark.postgres
def test_close_closes_the_connection_pool(fresh_postgres_url: str) -> None:
    app = open_application(store_settings(fresh_postgres_url, postgres_pool_size=3))
    datastore = datastore_of(app)
    assert app.position() == 0
    assert datastore.pool.max_size == 3  # type: ignore[union-attr]

    app.close()

    assert datastore.pool.closed


def test_memory_database_is_shared_by_the_pool() -> None:
    app = open_application(store_settings("sqlite:///:memory:"))
    try:
        counter = Counter(label="memory")
        app.save(counter)
        assert app.repository.get(counter.id).label == "memory"
        assert app.position() == 1
    finally:
        app.close()


@pytest.mark.postgres
def test_a_subscription_sees_appends_made_right_after_it_starts(fresh_postgres_url: str) -> None:
    app = open_application(store_settings(fresh_postgres_url))
    try:
        with ThreadPoolExecutor(max_workers=1) as executor:
            for _ in range(20):
                with app.recorder.subscribe(gt=app.position()) as subscription:
                    counter = Counter(label="followed")
                    app.save(counter)
                    received = executor.submit(next, subscription)
                    try:
                        notification = received.result(timeout=5)
                    finally:
                        subscription.stop()
                assert notification.originator_id == counter.id
    finally:
        app.close()
