"""Every read model equals a from-scratch replay of the event store — after incremental
catch-up in random slices, after projector restarts, and after rebuilds.

The marketplace machine drives the real command handlers at random; this machine adds
projectors that follow the same event store into read models, and compares them with
read models built from position 0 into a separate database.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule, run_state_machine_as_test

from prep_es.services.readside import ReadSide, open_read_side
from projections import PROJECTIONS
from projections.base import Projection
from projections.database import ReadDatabase
from projections.generations import ensure_ready, request_rebuild
from projections.runners import ProjectionRunner
from tests.properties.conftest import StoreFactory
from tests.properties.test_marketplace_machine import MarketplaceMachine
from tests.support import store_settings

READ_MODEL_EXAMPLES = 6


def dump(database: ReadDatabase, projection_class: type[Projection]) -> dict[str, list[Any]]:
    """Every row of every table of the projection's active generation, in a stable
    order."""
    tables: dict[str, list[Any]] = {}
    with database.reading() as sql:
        for table in projection_class.tables:
            rows = sql.fetchall(f"SELECT * FROM {projection_class.view(table)}")
            tables[table] = sorted((sorted(row.items()) for row in rows), key=repr)
    return tables


class ReadModelMachine(MarketplaceMachine):
    def __init__(self) -> None:
        super().__init__()
        self.read_side: ReadSide = open_read_side(store_settings(self.url))
        self.scratch_url = self.stores.create()
        self.scratch: ReadSide = open_read_side(store_settings(self.scratch_url))
        for projection_class in PROJECTIONS:
            ensure_ready(self.read_side.write_database, projection_class)
        self.runners = self._runners()
        self.compared = False

    def _runners(self) -> list[ProjectionRunner]:
        return [
            ProjectionRunner(
                projection_class,
                self.runtime.app,
                self.read_side.write_database,
                batch_size=7,
                rebuild_batch_size=11,
            )
            for projection_class in PROJECTIONS
        ]

    def teardown(self) -> None:
        try:
            if self.admin is not None:
                self.compare_with_scratch()
        finally:
            self.read_side.close()
            self.scratch.close()
            self.stores.dispose(self.scratch_url)
            super().teardown()

    @rule(which=st.integers(0, len(PROJECTIONS) - 1), steps=st.integers(1, 3))
    def project_some(self, which: int, steps: int) -> None:
        """Projectors advance a few batches at a time, at their own pace."""
        for _ in range(steps):
            self.runners[which].step()

    @rule()
    def restart_projectors(self) -> None:
        """A projector process dies and another takes over from the recorded positions."""
        self.runners = self._runners()

    @precondition(lambda self: self.admin is not None)
    @rule(which=st.integers(0, len(PROJECTIONS) - 1))
    def rebuild(self, which: int) -> None:
        request_rebuild(self.read_side.write_database, PROJECTIONS[which])
        self.runners[which].step()  # part of it now; the rest as the machine goes on

    @precondition(lambda self: self.admin is not None)
    @rule()
    def compare_with_scratch(self) -> None:
        for runner in self.runners:
            runner.catch_up()
        for projection_class in PROJECTIONS:
            request_rebuild(self.scratch.write_database, projection_class)
            ProjectionRunner(
                projection_class, self.runtime.app, self.scratch.write_database
            ).catch_up()
            incremental = dump(self.read_side.write_database, projection_class)
            replayed = dump(self.scratch.write_database, projection_class)
            assert incremental == replayed, f"{projection_class.name} differs from a replay"


def test_read_models_equal_a_replay(fresh_stores: StoreFactory) -> None:
    machine = type(
        f"ReadModelMachineOn{fresh_stores.backend.title()}",
        (ReadModelMachine,),
        {"stores": fresh_stores},
    )
    # Each example builds every read model twice: fewer, shorter runs than the
    # marketplace machine's, but every one ends in a full comparison.
    run_state_machine_as_test(
        machine,
        settings=settings(
            settings.get_profile(settings._current_profile or "default"),
            max_examples=READ_MODEL_EXAMPLES,
            stateful_step_count=25,
        ),
    )
