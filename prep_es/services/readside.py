"""Wiring of the read side: the read database, runner locks and the supervisor, from
Settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prep_es.store.eventstore import PrepApplication, create_database_file
from prep_es.store.jurisdiction_rules import load_jurisdictions
from prep_es.store.settings import DatabaseLocation, PostgresLocation, Settings, SqliteLocation
from projections import PROJECTIONS, Projection
from projections.announcements import ChangeListener, PositionListener
from projections.append_signals import AppendSignal
from projections.database import PostgresReadDatabase, ReadDatabase, SqliteReadDatabase
from projections.kitchens import KitchensProjection
from projections.locks import (
    FileRunnerLock,
    PostgresRunnerLock,
    ProcessRunnerLock,
    RunnerLock,
    lock_file_path,
)
from projections.supervisor import Supervisor

READ_POOL_SIZE = 10


def open_database(location: DatabaseLocation, *, pool_size: int = READ_POOL_SIZE) -> ReadDatabase:
    if isinstance(location, PostgresLocation):
        return PostgresReadDatabase(location.conninfo(), pool_size=pool_size)
    assert isinstance(location, SqliteLocation)
    create_database_file(location)
    return SqliteReadDatabase(location.path)


def lock_factory(location: DatabaseLocation) -> Callable[[str], RunnerLock]:
    if isinstance(location, PostgresLocation):
        conninfo = location.conninfo()
        return lambda name: PostgresRunnerLock(conninfo, f"projection:{name}")
    assert isinstance(location, SqliteLocation)
    if location.is_memory:
        return lambda name: ProcessRunnerLock(f"{location.path}:{name}")
    path = location.path
    return lambda name: FileRunnerLock(lock_file_path(path, name))


@dataclass
class ReadSide:
    """Where read models are written (the primary) and read (a replica, if set)."""

    write_database: ReadDatabase
    query_database: ReadDatabase

    def close(self) -> None:
        self.write_database.close()
        if self.query_database is not self.write_database:
            self.query_database.close()


def open_read_side(settings: Settings) -> ReadSide:
    write_database = open_database(settings.database)
    query_database = (
        write_database
        if settings.read_database_url is None
        else open_database(settings.read_database)
    )
    return ReadSide(write_database=write_database, query_database=query_database)


def configured_projections(settings: Settings) -> tuple[type[Projection], ...]:
    """The projections, built with the deployment's jurisdiction rules where a read
    model depends on them (changing the rules then needs a rebuild of those)."""
    if settings.jurisdictions_file is None:
        return PROJECTIONS
    catalog = load_jurisdictions(settings.jurisdictions_path)
    return tuple(
        projection.with_jurisdictions(catalog)
        if issubclass(projection, KitchensProjection)
        else projection
        for projection in PROJECTIONS
    )


def start_projectors(
    settings: Settings,
    app: PrepApplication,
    read_side: ReadSide,
    *,
    projection_classes: Sequence[type[Projection]] | None = None,
    on_position: PositionListener | None = None,
    on_changes: ChangeListener | None = None,
) -> tuple[Supervisor, AppendSignal]:
    location = settings.database
    signal = AppendSignal(
        app,
        conninfo=location.conninfo() if isinstance(location, PostgresLocation) else None,
        channel=getattr(app.recorder, "channel_name", "prep_es_events"),
    )
    supervisor = Supervisor(
        app,
        read_side.write_database,
        configured_projections(settings) if projection_classes is None else projection_classes,
        lock_factory=lock_factory(location),
        signal=signal,
        on_position=on_position,
        on_changes=on_changes,
    )
    supervisor.start()
    return supervisor, signal
