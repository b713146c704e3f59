"""The read models of two stores compared: each store's rebuilt from position 0 into a
scratch SQLite database of its own, then compared table by table, row by row.

Made for ``prep-es store migrate``: the source (written before encryption) and its copy
must give the same read models, except where the copy differs by design — its events'
positions (a PostgreSQL source may have gaps its copy closes), the aggregate ids the
migration moved, and the audit trail's payloads (stored states: sealed in the copy),
which are compared event by event instead. :class:`Translation` says how.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import orjson

from prep_es.services.readside import open_database
from prep_es.store.eventstore import PrepApplication
from prep_es.store.settings import SqliteLocation
from prep_es.store.store_migration import PositionMap
from projections.audit import AuditProjection
from projections.base import Projection
from projections.generations import ensure_ready
from projections.kitchens import KitchensProjection
from projections.runners import ProjectionRunner

POSITION_COLUMNS: Final = frozenset({"position", "seq"})
"""Read-model columns that hold an event's position in its store."""
POSITION_KEYED: Final = {(KitchensProjection.name, "booked_spans"): frozenset({"id"})}
"""Besides, by (projection, table): columns keyed by a position (``booked.seq``)."""
NOT_COMPARED: Final = {(AuditProjection.name, "entries"): frozenset({"payload"})}
"""Columns left out, by (projection, table): the audit's stored payloads."""
EXAMPLES_MAX: Final = 3
"""Rows shown per differing table."""


class Translation:
    """How a source read-model row reads in the target's terms: positions mapped, moved
    aggregate ids replaced."""

    def __init__(self, positions: PositionMap, moved_ids: dict[UUID, UUID]) -> None:
        self._positions = positions
        self._ids = {str(old): str(new) for old, new in moved_ids.items()}

    def row(
        self, row: dict[str, Any], positions: frozenset[str] = POSITION_COLUMNS
    ) -> dict[str, Any]:
        """``row`` with the positions in ``positions`` mapped and moved ids replaced."""
        translated: dict[str, Any] = {}
        for column, value in row.items():
            if column in positions and isinstance(value, int):
                target = self._positions.target_of(value)
                translated[column] = value if target is None else target
            elif isinstance(value, str) and value in self._ids:
                translated[column] = self._ids[value]
            else:
                translated[column] = value
        return translated


@dataclass
class TableComparison:
    projection: str
    table: str
    source_rows: int = 0
    target_rows: int = 0
    only_in_source: list[dict[str, Any]] = field(default_factory=list)
    only_in_target: list[dict[str, Any]] = field(default_factory=list)
    differing_rows: int = 0

    @property
    def ok(self) -> bool:
        return self.differing_rows == 0


def compare_read_models(
    source: PrepApplication,
    target: PrepApplication,
    projection_classes: Sequence[type[Projection]],
    translation: Translation,
) -> list[TableComparison]:
    """Every table of every projection, rebuilt from each store, compared (rows of the
    source translated first). The scratch databases are deleted afterwards: the
    source's holds personal data in plain text."""
    with tempfile.TemporaryDirectory(prefix="prep-es-read-models-") as directory:
        source_path = _rebuild(source, projection_classes, Path(directory) / "source.db")
        target_path = _rebuild(target, projection_classes, Path(directory) / "target.db")
        return [
            _compare(source_path, target_path, projection_class, table, translation)
            for projection_class in projection_classes
            for table in projection_class.tables
        ]


def _rebuild(
    app: PrepApplication, projection_classes: Sequence[type[Projection]], path: Path
) -> Path:
    database = open_database(SqliteLocation(str(path)))
    try:
        for projection_class in projection_classes:
            ensure_ready(database, projection_class)
            ProjectionRunner(projection_class, app, database).catch_up()
    finally:
        database.close()
    return path


def _compare(
    source_path: Path,
    target_path: Path,
    projection_class: type[Projection],
    table: str,
    translation: Translation,
) -> TableComparison:
    comparison = TableComparison(projection_class.name, table)
    left_out = NOT_COMPARED.get((projection_class.name, table), frozenset())
    positions = POSITION_COLUMNS | POSITION_KEYED.get((projection_class.name, table), frozenset())
    view = projection_class.view(table)
    source_rows: Counter[bytes] = Counter()
    for row in _rows(source_path, view, left_out):
        source_rows[_digest(translation.row(row, positions))] += 1
        comparison.source_rows += 1
    target_rows: Counter[bytes] = Counter()
    for row in _rows(target_path, view, left_out):
        target_rows[_digest(row)] += 1
        comparison.target_rows += 1
    only_in_source = source_rows - target_rows
    only_in_target = target_rows - source_rows
    comparison.differing_rows = only_in_source.total() + only_in_target.total()
    if only_in_source:
        comparison.only_in_source = _examples(
            source_path, view, left_out, only_in_source, lambda row: translation.row(row, positions)
        )
    if only_in_target:
        comparison.only_in_target = _examples(
            target_path, view, left_out, only_in_target, lambda row: row
        )
    return comparison


def _rows(path: Path, view: str, left_out: frozenset[str]) -> Iterator[dict[str, Any]]:
    """Every row of ``view``, streamed (an audit trail may have millions)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        cursor = connection.execute(f"SELECT * FROM {view}")
        columns = [column[0] for column in cursor.description]
        for values in cursor:
            yield {
                column: value
                for column, value in zip(columns, values, strict=True)
                if column not in left_out
            }


def _digest(row: dict[str, Any]) -> bytes:
    return hashlib.blake2b(orjson.dumps(row, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def _examples(
    path: Path,
    view: str,
    left_out: frozenset[str],
    wanted: Counter[bytes],
    translate: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[dict[str, Any]]:
    examples = []
    for row in _rows(path, view, left_out):
        translated = translate(row)
        if _digest(translated) in wanted:
            examples.append(translated)
            if len(examples) == EXAMPLES_MAX:
                break
    return examples
