"""Generations: each projection's copies of its tables, and where each stands.

A projection's state rows (``projection_state``) say, per generation, its position,
whether it serves queries (``active``) or is being built by a rebuild, and where and
why it failed, if it did. A rebuild adds a *building* generation: its runner fills the
new tables from position 0 while the active generation keeps serving, then switches
the views over (see :mod:`projections.runners`). Schema changes are serialized across
processes (an advisory lock on PostgreSQL).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from projections.base import Projection
from projections.database import ReadDatabase, Row, Sql
from projections.locks import lock_key

STATE_TABLE = "projection_state"


class Superseded(Exception):
    """The generation being applied is no longer the one to apply (switched or
    dropped by another process)."""


@dataclass(frozen=True)
class GenerationState:
    name: str
    generation: int
    version: int
    active: bool
    state: str
    position: int
    events_applied: int
    position_timestamp: float | None
    updated_at: float
    failed_position: int | None
    failed_topic: str | None
    failed_error: str | None

    @classmethod
    def of(cls, row: Row) -> GenerationState:
        return cls(
            name=row["name"],
            generation=int(row["generation"]),
            version=int(row["version"]),
            active=bool(row["active"]),
            state=row["state"],
            position=int(row["position"]),
            events_applied=int(row["events_applied"]),
            position_timestamp=row["position_timestamp"],
            updated_at=float(row["updated_at"]),
            failed_position=row["failed_position"],
            failed_topic=row["failed_topic"],
            failed_error=row["failed_error"],
        )


def ensure_state_table(sql: Sql) -> None:
    boolean = "boolean" if sql.dialect == "postgresql" else "integer"
    real = "double precision" if sql.dialect == "postgresql" else "real"
    sql.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} ("
        "name text NOT NULL, generation integer NOT NULL, version integer NOT NULL, "
        f"active {boolean} NOT NULL, state text NOT NULL, position bigint NOT NULL, "
        f"events_applied bigint NOT NULL, position_timestamp {real}, "
        f"updated_at {real} NOT NULL, failed_position bigint, failed_topic text, "
        "failed_error text, PRIMARY KEY (name, generation))"
    )


def _serialize_schema_changes(sql: Sql) -> None:
    if sql.dialect == "postgresql":
        sql.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("projection-schema"),))


def generations(sql: Sql, name: str) -> list[GenerationState]:
    rows = sql.fetchall(f"SELECT * FROM {STATE_TABLE} WHERE name = %s ORDER BY generation", (name,))
    return [GenerationState.of(row) for row in rows]


GenerationKey = tuple[str, int]
"""(projection name, generation)."""


def lock_states(sql: Sql, keys: Sequence[GenerationKey]) -> dict[GenerationKey, GenerationState]:
    """The state rows of ``keys``, locked until the transaction ends (in one statement,
    in a fixed order: two transactions never wait for each other's rows)."""
    if not keys:
        return {}
    pairs = ", ".join(["(%s, %s)"] * len(keys))
    suffix = " FOR UPDATE" if sql.dialect == "postgresql" else ""
    rows = sql.fetchall(
        f"SELECT * FROM {STATE_TABLE} WHERE (name, generation) IN ({pairs}) "
        f"ORDER BY name, generation{suffix}",
        [value for key in sorted(keys) for value in key],
    )
    states = (GenerationState.of(row) for row in rows)
    return {(state.name, state.generation): state for state in states}


def ensure_ready(database: ReadDatabase, projection_class: type[Projection]) -> None:
    """Make sure the projection has an active generation (tables and views exist), and
    a building one if the active generation was made by an older ``version``."""
    with database.transaction() as sql:
        _serialize_schema_changes(sql)
        ensure_state_table(sql)
        projection_class.create_functions(sql)
        known = generations(sql, projection_class.name)
        active = [g for g in known if g.active]
        if not active:
            generation = 1 + max((g.generation for g in known), default=0)
            _add_generation(sql, projection_class, generation, active=True)
            return
        building = [g for g in known if not g.active and g.state != "retired"]
        if active[0].version != projection_class.version and not any(
            g.version == projection_class.version for g in building
        ):
            generation = 1 + max(g.generation for g in known)
            _add_generation(sql, projection_class, generation, active=False)


def request_rebuild(database: ReadDatabase, projection_class: type[Projection]) -> int:
    """Start building a new generation from position 0; the current one keeps serving
    until the new one has caught up. Returns the new generation (or the one already
    building)."""
    ensure_ready(database, projection_class)
    with database.transaction() as sql:
        _serialize_schema_changes(sql)
        known = generations(sql, projection_class.name)
        for state in known:
            if not state.active and state.state != "retired":
                return state.generation
        generation = 1 + max(g.generation for g in known)
        _add_generation(sql, projection_class, generation, active=False)
        return generation


def _add_generation(
    sql: Sql, projection_class: type[Projection], generation: int, *, active: bool
) -> None:
    projection = projection_class(generation, sql.dialect)
    projection.drop_tables(sql)
    projection.create_tables(sql)
    if active:
        projection.create_indexes(sql)
        projection.create_views(sql)
    sql.execute(
        f"INSERT INTO {STATE_TABLE} (name, generation, version, active, state, position, "
        "events_applied, position_timestamp, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, 0, 0, NULL, %s)",
        (
            projection_class.name,
            generation,
            projection_class.version,
            active,
            "running" if active else "building",
            time.time(),
        ),
    )
