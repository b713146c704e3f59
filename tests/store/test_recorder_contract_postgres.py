"""eventsourcing's recorder contract suites, run against our append-only PostgreSQL
recorders as :func:`prep_es.store.eventstore.open_application` configures them.

Each test gets a new empty database instead of the library's drop-and-truncate cleanup:
our triggers refuse TRUNCATE and DELETE on event tables, by design.
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
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.tests import persistence as contract

from prep_es.store.postgres_recorders import (
    AppendOnlyPostgresAggregateRecorder,
    AppendOnlyPostgresApplicationRecorder,
    AppendOnlyPostgresProcessRecorder,
    PrepPostgresFactory,
)
from tests.store.contract import construct_env, construct_factory, threads_joined_before_closing

pytestmark = pytest.mark.postgres


class _FreshPostgresFactory:
    """Gives each test our PostgreSQL factory over a new empty database."""

    factory: PrepPostgresFactory
    datastore: PostgresDatastore

    @pytest.fixture(autouse=True)
    def _fresh_factory(self, fresh_postgres_url: str) -> Iterator[None]:
        factory = construct_factory(fresh_postgres_url)
        assert isinstance(factory, PrepPostgresFactory)
        self.factory = factory
        self.datastore = factory.datastore
        with threads_joined_before_closing():
            yield
        factory.close()


class TestAggregateRecorder(_FreshPostgresFactory, contract.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        recorder = self.factory.aggregate_recorder("snapshots")
        assert isinstance(recorder, AppendOnlyPostgresAggregateRecorder)
        return recorder


class TestApplicationRecorder(_FreshPostgresFactory, contract.ApplicationRecorderTestCase):
    def create_recorder(self) -> ApplicationRecorder:
        recorder = self.factory.application_recorder()
        assert isinstance(recorder, AppendOnlyPostgresApplicationRecorder)
        return recorder

    # The signature is the library's (it calls this with a position argument).
    def test_concurrent_no_conflicts(self, initial_position: int = 0) -> None:  # noqa: PT028
        # Ten writers and a reader, each holding a connection (as the library's own
        # PostgreSQL suite sizes the pool for this test).
        self.datastore.pool.open()
        self.datastore.pool.resize(12, 12)
        super().test_concurrent_no_conflicts(initial_position)

    def test_insert_subscribe(self) -> None:
        # Projection runners follow the store through subscriptions (LISTEN/NOTIFY).
        self.optional_test_insert_subscribe()


class TestTrackingRecorder(_FreshPostgresFactory, contract.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        recorder = self.factory.tracking_recorder()
        assert type(recorder) is PostgresTrackingRecorder
        return recorder


class TestProcessRecorder(_FreshPostgresFactory, contract.ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        recorder = self.factory.process_recorder()
        assert isinstance(recorder, AppendOnlyPostgresProcessRecorder)
        return recorder


class TestNonInterleavingNotificationIds(
    _FreshPostgresFactory, contract.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> ApplicationRecorder:
        return self.factory.application_recorder()


class TestInfrastructureFactory(contract.InfrastructureFactoryTestCase[PrepPostgresFactory]):
    @pytest.fixture(autouse=True)
    def _fresh_env(self, fresh_postgres_url: str) -> None:
        self.env = construct_env(fresh_postgres_url)
        # The library's mapper tests configure ciphers and compressors on the default
        # Mapper; ours stores plain JSON and refuses them (see test_serialization.py).
        del self.env["MAPPER_TOPIC"]

    def expected_factory_class(self) -> type[PrepPostgresFactory]:
        return PrepPostgresFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return AppendOnlyPostgresAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return AppendOnlyPostgresApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return PostgresTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return _CustomTrackingRecorder

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return AppendOnlyPostgresProcessRecorder


class _CustomTrackingRecorder(PostgresTrackingRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
