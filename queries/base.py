"""What every query service shares: the viewer, pages, limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel

from aggregates.errors import InvalidRequest

T = TypeVar("T")

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
OFFSET_MAX = 1_000_000
BATCH_ROWS: Final = 500
"""Rows read at once by a query that reads everything of one kind (an export): a
short read each, however many there are."""
ERASED_USER_NAME = "erased user"
"""What read models show in place of the name of a user who was erased."""


@dataclass(frozen=True)
class Viewer:
    """Who asks: access rules are written into each query's WHERE clause from this."""

    user_id: UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class PageRequest:
    limit: int = PAGE_SIZE_DEFAULT
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= PAGE_SIZE_MAX:
            raise InvalidRequest(f"limit is between 1 and {PAGE_SIZE_MAX}", code="invalid_limit")
        if not 0 <= self.offset <= OFFSET_MAX:
            raise InvalidRequest(f"offset is between 0 and {OFFSET_MAX}", code="invalid_offset")


BatchRow = dict[str, Any]


def keyset_batches(
    read: Callable[[BatchRow | None], list[BatchRow]], batch_rows: int = BATCH_ROWS
) -> Iterator[list[BatchRow]]:
    """Every row ``read`` finds, batch by batch: ``read(None)`` reads the first batch of
    at most ``batch_rows``, ``read(last_row)`` the next one after ``last_row`` by the
    query's order. Each batch is its own short read. Ordered by keys that never change
    (an id, a position, a creation time), no row is skipped or repeated, whatever is
    written between batches; each row is as it was when its batch was read."""
    after: BatchRow | None = None
    while True:
        rows = read(after)
        assert len(rows) <= batch_rows, (len(rows), batch_rows)
        if rows:
            yield rows
        if len(rows) < batch_rows:
            return
        after = rows[-1]


def keyset_rows(
    read: Callable[[BatchRow | None], list[BatchRow]], batch_rows: int = BATCH_ROWS
) -> Iterator[BatchRow]:
    """The rows of :func:`keyset_batches`, one by one."""
    for rows in keyset_batches(read, batch_rows):
        yield from rows
