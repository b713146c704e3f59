"""Group commit on real PostgreSQL: concurrent appends share a transaction, each stays
atomic, and a losing append fails alone, in the same transaction as the others."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import Connection
from psycopg.sql import SQL

from prep_es.store.eventstore import open_application
from prep_es.store.group_commit import Append, AppendOutcome, GroupCommit
from prep_es.store.postgres_recorders import AppendOnlyPostgresApplicationRecorder
from tests.support import store_settings
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def recorder(fresh_postgres_url: str) -> Iterator[AppendOnlyPostgresApplicationRecorder]:
    app = open_application(store_settings(fresh_postgres_url))
    assert isinstance(app.recorder, AppendOnlyPostgresApplicationRecorder)
    yield app.recorder
    app.close()


def unique_event(originator_id: UUID, version: int) -> StoredEvent:
    """Unlike any other event, as stored events are (each has its own timestamp)."""
    state = b'{"id": "%s"}' % uuid4().hex.encode()
    return StoredEvent(originator_id=originator_id, originator_version=version, topic="T",
                       state=state)  # fmt: skip


def stream(length: int) -> list[StoredEvent]:
    originator_id = uuid4()
    return [unique_event(originator_id, v) for v in range(1, length + 1)]


def test_appends_queued_during_a_commit_share_the_next_transaction(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    first_commit_started = threading.Event()
    release_first_commit = threading.Event()
    batch_sizes: list[int] = []

    def insert(appends: Sequence[Append]) -> Sequence[AppendOutcome]:
        batch_sizes.append(sum(len(append.stored_events) for append in appends))
        if len(batch_sizes) == 1:
            first_commit_started.set()
            release_first_commit.wait(timeout=10)
        return recorder._insert_appends(appends)

    group_commit = GroupCommit(insert)
    streams = [stream(2) for _ in range(6)]
    results: dict[int, Sequence[int]] = {}

    def append(index: int) -> None:
        results[index] = group_commit.insert_events(streams[index], {})

    leader = threading.Thread(target=append, args=(0,))
    leader.start()
    assert first_commit_started.wait(timeout=10)
    followers = [threading.Thread(target=append, args=(i,)) for i in range(1, 6)]
    for follower in followers:
        follower.start()
    wait_until(lambda: group_commit.queued >= 5, 10, "5 appends queued")
    release_first_commit.set()
    for thread in [leader, *followers]:
        thread.join(timeout=10)

    assert batch_sizes == [2, 10]
    assert group_commit.transactions_total == 2
    ids = [results[i] for i in range(1, 6)]
    assert all(len(batch) == 2 for batch in ids)
    # One transaction, in queue order: consecutive notification ids.
    flat = [n for batch in ids for n in batch]
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

    def insert(appends: Sequence[Append]) -> Sequence[AppendOutcome]:
        calls.append(sum(len(append.stored_events) for append in appends))
        if len(calls) == 1:
            gate.wait(timeout=10)
        return recorder._insert_appends(appends)

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
    wait_until(lambda: calls, 10, "the first insert")
    threads += [threading.Thread(target=append, args=(f"good{i}", s)) for i, s in enumerate(good)]
    rival = [unique_event(taken[0].originator_id, 1)]  # takes the stored version again
    threads.append(threading.Thread(target=append, args=("stale", rival)))
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: group_commit.queued >= 4, 10, "4 appends queued")
    gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert isinstance(outcomes["stale"], IntegrityError)
    for i, events in enumerate(good):
        assert len(recorder.select_events(events[0].originator_id)) == 3
        assert isinstance(outcomes[f"good{i}"], list)
    # One shared transaction stored the good appends and refused the stale one.
    assert calls[1:] == [10]
    assert group_commit.transactions_total == 2


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

    def insert(appends: Sequence[Append]) -> Sequence[AppendOutcome]:
        calls.append(len(appends))
        if len(calls) == 1:
            gate.wait(timeout=10)
        return recorder._insert_appends(appends)

    group_commit = GroupCommit(insert)
    outcomes: dict[str, object] = {}

    def append(name: str, events: list[StoredEvent], expected: dict[UUID, int]) -> None:
        try:
            outcomes[name] = group_commit.insert_events(events, expected)
        except IntegrityError as error:
            outcomes[name] = error

    threads = [threading.Thread(target=append, args=("first", stream(1), {}))]
    threads[0].start()
    wait_until(lambda: calls, 10, "the first insert")
    threads.append(threading.Thread(target=append, args=("writer", kitchen[1:], {})))
    threads[1].start()
    wait_until(lambda: group_commit.queued >= 1, 10, "1 append queued")
    threads.append(threading.Thread(target=append, args=("reader", stream(1), {kitchen_id: 1})))
    threads[2].start()
    wait_until(lambda: group_commit.queued >= 2, 10, "2 appends queued")
    gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert isinstance(outcomes["writer"], list)
    assert isinstance(outcomes["reader"], IntegrityError)
    assert calls[1:] == [2]  # one transaction: the writer first, then the reader refused


def test_appends_of_one_group_are_judged_in_order(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    """A read before another append of the group writes stands; two appends taking one
    version: the first wins."""
    kitchen = stream(3)
    recorder.insert_events(kitchen[:1])
    kitchen_id = kitchen[0].originator_id
    reader, late_reader = stream(1), stream(1)

    outcomes = recorder._insert_appends(
        [
            Append(reader, {kitchen_id: 1}),
            Append(kitchen[1:2], {}),
            Append([unique_event(kitchen_id, 2), kitchen[2]], {}),  # takes version 2 again
            Append(late_reader, {kitchen_id: 1}),  # read what the second append replaced
        ]
    )

    assert [isinstance(outcome, IntegrityError) for outcome in outcomes] == [
        False, False, True, True,
    ]  # fmt: skip
    stored = recorder.select_events(kitchen_id)
    assert [event.originator_version for event in stored] == [1, 2]
    assert not recorder.select_events(late_reader[0].originator_id)
    assert len(recorder.select_events(reader[0].originator_id)) == 1


def test_a_group_sent_again_after_its_answer_was_lost_gets_its_ids_back(
    recorder: AppendOnlyPostgresApplicationRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection fails after the group committed: the store sends the group again,
    and the append is answered as stored, once, not refused as a conflict with itself."""
    real_connection = recorder.datastore.get_connection
    lost_answers: list[int] = []

    @contextmanager
    def answer_lost_once() -> Iterator[Connection[object]]:
        with real_connection() as connection:
            yield connection
        if not lost_answers:
            lost_answers.append(1)
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(recorder.datastore, "get_connection", answer_lost_once)
    events = stream(2)

    ids = recorder.insert_events(events)

    assert lost_answers
    stored = recorder.select_notifications(start=1, limit=100)
    assert [(n.originator_id, n.originator_version) for n in stored] == [
        (event.originator_id, event.originator_version) for event in events
    ]
    assert ids == [n.id for n in stored]


def test_each_append_of_a_group_sent_again_gets_its_first_outcome(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    taken = stream(1)
    recorder.insert_events(taken)
    rival = [unique_event(taken[0].originator_id, 1)]
    group = [Append(stream(2), {}), Append(rival, {}), Append(stream(1), {})]

    first = recorder._send_appends(group, resent=False)
    again = recorder._send_appends(group, resent=True)

    assert [isinstance(outcome, IntegrityError) for outcome in first] == [False, True, False]
    assert [isinstance(outcome, IntegrityError) for outcome in again] == [False, True, False]
    assert again[0] == first[0] and again[2] == first[2]
    assert len(recorder.select_notifications(start=1, limit=100)) == 4


def test_a_process_of_the_previous_version_still_appends(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    """During a rolling upgrade, processes of the previous version call its append
    function (without ``resent``): it stays, judging groups as the current one does,
    and a group it sends again is refused as that version's was."""
    taken = stream(1)
    recorder.insert_events(taken)
    fresh = stream(2)
    group = [*fresh, unique_event(taken[0].originator_id, 1)]
    call = SQL(
        "SELECT append_index, notification_id FROM {function}(%s, %s, %s, %s, %s, %s, %s, %s)"
    ).format(function=recorder._append_function)
    arguments = (
        [event.originator_id for event in group],
        [event.originator_version for event in group],
        [event.topic for event in group],
        [event.state for event in group],
        [2, 3],  # two appends: the fresh stream, then the rival of ``taken``
        [],
        [],
        [0, 0],
    )

    with recorder.datastore.get_connection() as connection:
        first = connection.execute(call, arguments).fetchall()
        again = connection.execute(call, arguments).fetchall()

    assert [row["append_index"] for row in first] == [1, 1]
    assert again == []
    stored = recorder.select_events(fresh[0].originator_id)
    assert [event.state for event in stored] == [event.state for event in fresh]


def test_the_same_events_appended_anew_are_refused(
    recorder: AppendOnlyPostgresApplicationRecorder,
) -> None:
    """Only a group sent again is answered as stored: a new append of stored events is
    a conflict, as the event store's contract has it."""
    events = stream(2)
    recorder.insert_events(events)

    with pytest.raises(IntegrityError):
        recorder.insert_events(events)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    # Each example makes its own aggregates: the shared store needs no reset.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_group_stores_what_appending_one_at_a_time_would(
    recorder: AppendOnlyPostgresApplicationRecorder, data: st.DataObject
) -> None:
    """Random appends over a few aggregates, some stale, some racing each other in the
    group: the outcomes and the stored events are those of judging each in turn."""
    aggregate_ids = [uuid4() for _ in range(4)]
    stored: dict[UUID, int] = {}
    for aggregate_id in aggregate_ids:
        versions = data.draw(st.integers(0, 2))
        if versions:
            recorder.insert_events([unique_event(aggregate_id, v) for v in range(1, versions + 1)])
            stored[aggregate_id] = versions
    appends: list[Append] = []
    for _ in range(data.draw(st.integers(1, 8))):
        written = data.draw(st.lists(st.sampled_from(aggregate_ids), max_size=2, unique=True))
        read = data.draw(st.lists(st.sampled_from(aggregate_ids), max_size=2, unique=True))
        events = [
            unique_event(aggregate_id, data.draw(st.integers(1, 4))) for aggregate_id in written
        ] or stream(1)
        expected = {aggregate_id: data.draw(st.integers(0, 3)) for aggregate_id in read}
        appends.append(Append(events, expected))

    outcomes = recorder._insert_appends(appends)

    taken = {(aggregate_id, v) for aggregate_id, top in stored.items() for v in range(1, top + 1)}
    latest = dict(stored)
    for append, outcome in zip(appends, outcomes, strict=True):
        stale = any(latest.get(i, 0) > v for i, v in append.expected_versions.items())
        keys = {(event.originator_id, event.originator_version) for event in append.stored_events}
        refused = stale or bool(keys & taken)
        assert isinstance(outcome, IntegrityError) == refused, (append, outcome)
        if not refused:
            assert isinstance(outcome, list) and len(outcome) == len(append.stored_events)
            taken |= keys
            for aggregate_id, version in keys:
                latest[aggregate_id] = max(latest.get(aggregate_id, 0), version)
    # The same group sent again (its answer lost): the same outcomes, nothing stored twice.
    again = recorder._send_appends(appends, resent=True)
    assert [None if isinstance(outcome, IntegrityError) else outcome for outcome in again] == [
        None if isinstance(outcome, IntegrityError) else outcome for outcome in outcomes
    ]
    for aggregate_id in aggregate_ids:
        versions = {event.originator_version for event in recorder.select_events(aggregate_id)}
        assert versions == {v for i, v in taken if i == aggregate_id}
