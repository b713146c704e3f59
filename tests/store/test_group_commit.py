"""Group commit on real PostgreSQL: concurrent appends share a transaction, each stays
atomic, and a losing append fails alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from prep_es.eventstore import AppendOnlyPostgresApplicationRecorder, open_application
from prep_es.group_commit import ExpectedVersions, GroupCommit
from prep_es.settings import Settings

pytestmark = pytest.mark.postgres


@pytest.fixture
def recorder(fresh_postgres_url: str) -> Iterator[AppendOnlyPostgresApplicationRecorder]:
    app = open_application(Settings(database_url=fresh_postgres_url))
    assert isinstance(app.recorder, AppendOnlyPostgresApplicationRecorder)
    yield app.recorder
    app.close()


def stream(length: int) -> list[StoredEvent]:
    originator_id = uuid4()
    return [
        StoredEvent(originator_id=originator_id, originator_version=v, topic="T", state=b"{}")
        for v in range(1, length + 1)
    ]


def test_appends_queued_during_a_commit_share_the_next_transaction(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    first_commit_started = threading.Event()
    release_first_commit = threading.Event()
    batch_sizes: list[int] = []

    def insert(events: Sequence[StoredEvent], expected: ExpectedVersions) -> Sequence[int] | None:
        batch_sizes.append(len(events))
        if len(batch_sizes) == 1:
            first_commit_started.set()
            release_first_commit.wait(timeout=10)
        return recorder._insert_in_own_transaction(events, expected)

    group_commit = GroupCommit(insert)
    streams = [stream(2) for _ in range(6)]
    results: dict[int, Sequence[int] | None] = {}

    def append(index: int) -> None:
        results[index] = group_commit.insert_events(streams[index], {})

    leader = threading.Thread(target=append, args=(0,))
    leader.start()
    assert first_commit_started.wait(timeout=10)
    followers = [threading.Thread(target=append, args=(i,)) for i in range(1, 6)]
    for follower in followers:
        follower.start()
    while group_commit.queued < 5:
        time.sleep(0.001)
    release_first_commit.set()
    for thread in [leader, *followers]:
        thread.join(timeout=10)

    assert batch_sizes == [2, 10]
    assert group_commit.transactions_total == 2
    ids = [results[i] for i in range(1, 6)]
    assert all(batch is not None and len(batch) == 2 for batch in ids)
    # One transaction, in queue order: consecutive notification ids.
    flat = [n for batch in ids for n in batch or []]
    assert flat == list(range(flat[0], flat[0] + 10))
    for index, events in enumerate(streams):
        assert len(recorder.select_events(events[0].originator_id)) == 2, index


def test_a_conflicting_append_fails_alone(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    taken = stream(1)
    recorder.insert_events(taken)
    gate = threading.Event()
    calls: list[int] = []

    def insert(events: Sequence[StoredEvent], expected: ExpectedVersions) -> Sequence[int] | None:
        calls.append(len(events))
        if len(calls) == 1:
            gate.wait(timeout=10)
        return recorder._insert_in_own_transaction(events, expected)

    group_commit = GroupCommit(insert)
    good = [stream(3) for _ in range(3)]
    outcomes: dict[str, object] = {}

    def append(name: str, events: list[StoredEvent]) -> None:
        try:
            outcomes[name] = group_commit.insert_events(events, {})
        except IntegrityError as error:
            outcomes[name] = error

    threads = [threading.Thread(target=append, args=("warmup", stream(1)))]
    threads[0].start()
    while not calls:
        time.sleep(0.001)
    threads += [threading.Thread(target=append, args=(f"good{i}", s)) for i, s in enumerate(good)]
    threads.append(threading.Thread(target=append, args=("stale", taken)))
    for thread in threads[1:]:
        thread.start()
    while group_commit.queued < 4:
        time.sleep(0.001)
    gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert isinstance(outcomes["stale"], IntegrityError)
    for i, events in enumerate(good):
        assert len(recorder.select_events(events[0].originator_id)) == 3
        assert isinstance(outcomes[f"good{i}"], list)
    # The shared attempt failed as a whole, then each append went alone.
    assert calls[1] == 10
    assert sorted(calls[2:]) == [1, 3, 3, 3]


def test_many_threads_lose_no_append(recorder: AppendOnlyPostgresApplicationRecorder) -> None:
    streams = [stream(3) for _ in range(40)]
    barrier = threading.Barrier(8)

    def append_some(part: list[list[StoredEvent]]) -> None:
        barrier.wait()
        for events in part:
            recorder.insert_events(events)

    threads = [threading.Thread(target=append_some, args=(streams[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    notifications = recorder.select_notifications(start=1, limit=1000)
    assert len(notifications) == 120
    ids = [n.id for n in notifications]
    assert ids == sorted(ids)
    assert recorder.group_commit.appends_total == 40


def test_an_append_fails_if_what_it_read_has_changed(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    read = stream(2)
    recorder.insert_events(read[:1])
    recorder.insert_events(read[1:])  # moved on to version 2
    read_id = read[0].originator_id

    with pytest.raises(IntegrityError):
        recorder.insert_events(stream(1), expected_versions={read_id: 1})
    written = stream(1)
    recorder.insert_events(written, expected_versions={read_id: 2})
    assert len(recorder.select_events(written[0].originator_id)) == 1


def test_reading_what_another_append_of_the_group_writes_is_not_hidden(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    kitchen = stream(2)
    recorder.insert_events(kitchen[:1])
    kitchen_id = kitchen[0].originator_id
    gate = threading.Event()
    calls: list[int] = []

    def insert(events: Sequence[StoredEvent], expected: ExpectedVersions) -> Sequence[int] | None:
        calls.append(len(events))
        if len(calls) == 1:
            gate.wait(timeout=10)
        return recorder._insert_in_own_transaction(events, expected)

    group_commit = GroupCommit(insert)
    outcomes: dict[str, object] = {}

    def append(name: str, events: list[StoredEvent], expected: ExpectedVersions) -> None:
        try:
            outcomes[name] = group_commit.insert_events(events, expected)
        except IntegrityError as error:
            outcomes[name] = error

    threads = [threading.Thread(target=append, args=("first", stream(1), {}))]
    threads[0].start()
    while not calls:
        time.sleep(0.001)
    threads.append(threading.Thread(target=append, args=("writer", kitchen[1:], {})))
    threads[1].start()
    while group_commit.queued < 1:
        time.sleep(0.001)
    threads.append(
        threading.Thread(target=append, args=("reader", stream(1), {kitchen_id: 1}))
    )
    threads[2].start()
    while group_commit.queued < 2:
        time.sleep(0.001)
    gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert isinstance(outcomes["writer"], list)
    assert isinstance(outcomes["reader"], IntegrityError)
    assert calls[1:] == [1, 1]  # never tried together
