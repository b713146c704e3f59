"""The kitchen search's query string, read one way: :class:`KitchenSearch` (the filters)
and :class:`~api.deps.PageQuery` (the page) are the route's query parameters (FastAPI
validates the query string with them, and documents them), and what the fast path
(``api.queries.kitchens.fast_reads``) reads with :func:`plain_search`, which only
first checks that the query string is spelled plainly."""

from __future__ import annotations

import re
from typing import Final, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, Field, ValidationError

from aggregates.errors import DomainError
from api.deps import PageQuery
from api.queries.params import POINT_IN_TIME_HELP, PointInTime, QueryText
from api.schemas import MONEY_DIGITS_MAX, MoneyIn, cents
from queries.base import PageRequest
from queries.kitchens import KitchenFilters

KitchenSort = Literal["name", "rate_asc", "rate_desc", "newest"]
SEARCH_TEXT_LENGTH_BOUND = 1_000
AMENITY_FILTERS_BOUND = 50
CAPACITY_BOUND = 50


class KitchenSearch(BaseModel):
    """A search's filters, as its query string gives them (its page: ``PageQuery``)."""

    city: QueryText | None = Field(
        default=None, max_length=SEARCH_TEXT_LENGTH_BOUND, description="Case-insensitive."
    )
    jurisdiction: QueryText | None = Field(
        default=None, max_length=SEARCH_TEXT_LENGTH_BOUND, examples=["los_angeles"]
    )
    min_rate: MoneyIn | None = Field(default=None, description="Lowest hourly rate, e.g. `40.00`.")
    max_rate: MoneyIn | None = Field(
        default=None, description="Highest hourly rate, e.g. `120.00`."
    )
    capacity: int | None = Field(
        default=None,
        ge=1,
        le=CAPACITY_BOUND,
        description="Room for at least this many people.",
    )
    amenity: list[QueryText] | None = Field(
        default=None,
        max_length=AMENITY_FILTERS_BOUND,
        description="Repeat for each amenity the kitchen must have (case-insensitive).",
    )
    q: QueryText | None = Field(
        default=None, max_length=SEARCH_TEXT_LENGTH_BOUND, description="Words to search for."
    )
    available_from: PointInTime | None = Field(
        default=None, description=f"Start of the window to be free. {POINT_IN_TIME_HELP}"
    )
    available_to: PointInTime | None = Field(
        default=None, description=f"End of the window to be free. {POINT_IN_TIME_HELP}"
    )
    sort: KitchenSort = Field(default="name", description="The order of the results.")

    def filters(self) -> KitchenFilters:
        """The read model's filters (``InvalidRequest`` for a combination it refuses)."""
        return KitchenFilters(
            city=self.city,
            jurisdiction=self.jurisdiction,
            min_rate_cents=None if self.min_rate is None else cents(self.min_rate),
            max_rate_cents=None if self.max_rate is None else cents(self.max_rate),
            capacity=self.capacity,
            amenities=tuple(self.amenity or ()),
            q=self.q,
            available_from=self.available_from,
            available_to=self.available_to,
            sort=self.sort,
        )


# What "spelled plainly" means for the parameters that are not text: whole units of at
# most MONEY_DIGITS_MAX - 2 digits, then cents; counts without a sign or leading zeros;
# RFC 3339 with an upper-case ``T`` and ``Z``, or a date. Other spellings the route may
# accept are its to judge.
_PLAIN_MONEY: Final = re.compile(rf"(?:0|[1-9]\d{{0,{MONEY_DIGITS_MAX - 3}}})(?:\.\d{{1,2}})?")
_PLAIN_COUNT: Final = re.compile(r"0|[1-9]\d{0,6}")
_PLAIN_TIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2}))?"
)
_PLAIN_SPELLINGS: Final[dict[str, re.Pattern[str] | None]] = {
    "city": None,
    "jurisdiction": None,
    "min_rate": _PLAIN_MONEY,
    "max_rate": _PLAIN_MONEY,
    "capacity": _PLAIN_COUNT,
    "available_from": _PLAIN_TIME,
    "available_to": _PLAIN_TIME,
    "sort": None,
    "limit": _PLAIN_COUNT,
    "offset": _PLAIN_COUNT,
}
"""Every parameter the fast path reads (not ``q``: text search is SQL's), and the
spelling its value must have (``None``: any text)."""


def plain_search(query_string: bytes) -> tuple[KitchenFilters, PageRequest] | None:
    """A search's filters and page, read by :class:`KitchenSearch` as the route reads
    them, when every parameter is one the fast path knows, given once (``amenity``:
    repeated), not blank, spelled plainly, in ASCII, and valid. ``None`` for anything
    else: the route judges it."""
    if not query_string.isascii():
        return None
    values: dict[str, str | list[str]] = {}
    amenities: list[str] = []
    for name, value in parse_qsl(query_string.decode("ascii"), keep_blank_values=True):
        if not value:
            return None
        if name == "amenity":
            amenities.append(value)
            continue
        if name in values or name not in _PLAIN_SPELLINGS:
            return None
        spelling = _PLAIN_SPELLINGS[name]
        if spelling is not None and not spelling.fullmatch(value):
            return None
        values[name] = value
    if amenities:
        values["amenity"] = amenities
    try:
        filters = KitchenSearch.model_validate(values).filters()
        page = PageQuery.model_validate(values).page()
    except (ValidationError, DomainError):
        return None
    return filters, page
