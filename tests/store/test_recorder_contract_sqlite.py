"""eventsourcing's recorder contract suites, run against our append-only SQLite recorders
as :func:`prep_es.store.eventstore.open_application` configures them (file databases, as in
the embedded default). Each test gets a new database file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.tests import persistence as contract

from prep_es.store.sqlite_recorders import (
    AppendOnlySQLiteAggregateRecorder,
    AppendOnlySQLiteApplicationRecorder,
    AppendOnlySQLiteProcessRecorder,
    PrepSQLiteFactory,
)
from tests.store.contract import construct_env, construct_factory, threads_joined_before_closing


class _FreshSQLiteFactory:
    """Gives each test our SQLite factory over a new empty database file."""

    factory: PrepSQLiteFactory

    @pytest.fixture(autouse=True)
    def _fresh_factory(self, sqlite_url: str) -> Iterator[None]:
        factory = construct_factory(sqlite_url)
        assert isinstance(factory, PrepSQLiteFactory)
        self.factory = factory
        with threads_joined_before_closing():
            yield
        factory.close()


class TestAggregateRecorder(_FreshSQLiteFactory, contract.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        recorder = self.factory.aggregate_recorder("snapshots")
        assert isinstance(recorder, AppendOnlySQLiteAggregateRecorder)
        return recorder


class TestApplicationRecorder(_FreshSQLiteFactory, contract.ApplicationRecorderTestCase):
    def create_recorder(self) -> ApplicationRecorder:
        recorder = self.factory.application_recorder()
        assert isinstance(recorder, AppendOnlySQLiteApplicationRecorder)
        return recorder


class TestTrackingRecorder(_FreshSQLiteFactory, contract.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        recorder = self.factory.tracking_recorder()
        assert type(recorder) is SQLiteTrackingRecorder
        return recorder


class TestProcessRecorder(_FreshSQLiteFactory, contract.ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        recorder = self.factory.process_recorder()
        assert isinstance(recorder, AppendOnlySQLiteProcessRecorder)
        return recorder


class TestNonInterleavingNotificationIds(
    _FreshSQLiteFactory, contract.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> ApplicationRecorder:
        return self.factory.application_recorder()


class TestInfrastructureFactory(contract.InfrastructureFactoryTestCase[PrepSQLiteFactory]):
    @pytest.fixture(autouse=True)
    def _fresh_env(self, sqlite_url: str) -> None:
        self.env = construct_env(sqlite_url)
        # The library's mapper tests configure ciphers and compressors on the default
        # Mapper; ours stores plain JSON and refuses them (see test_serialization.py).
        del self.env["MAPPER_TOPIC"]

    def expected_factory_class(self) -> type[PrepSQLiteFactory]:
        return PrepSQLiteFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return AppendOnlySQLiteAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return AppendOnlySQLiteApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return SQLiteTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return _CustomTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return AppendOnlySQLiteProcessRecorder


class _CustomTrackingRecorder(SQLiteTrackingRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
