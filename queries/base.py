"""What every query service shares: the viewer, pages, limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel

from aggregates.errors import InvalidRequest

T = TypeVar("T")

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
OFFSET_MAX = 1_000_000


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
