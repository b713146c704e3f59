"""Query parameters as the console's GET forms send them, and the paging every list
shares.

A browser sends every field of a form, those left empty too (``?actor_id=&since=``):
an empty field means "no filter", not a malformed one. And a time typed into a
console form is UTC unless it says otherwise (the form says so), while the API
refuses a time without an offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import Query
from pydantic import AfterValidator, BeforeValidator, Field

from api.deps import POSITION_MAX
from api.queries.params import QueryText, date_means_midnight_utc, require_offset
from queries.base import OFFSET_MAX, PAGE_SIZE_MAX

FORM_TEXT_LENGTH_MAX: Final = 200
PAGE_SIZE: Final = 25
"""Items a page of a console list shows (kitchens, certificates, users)."""
assert PAGE_SIZE <= PAGE_SIZE_MAX


def blank_is_none(value: Any) -> Any:
    """A field's text without surrounding spaces; ``None`` for an empty field."""
    if isinstance(value, str):
        return value.strip() or None
    return value


def typed_time(value: Any) -> Any:
    """An empty field is ``None``; a date means 00:00 UTC; a time without an offset
    (what ``<input type="datetime-local">`` sends) means UTC. Anything else is left for
    validation to refuse."""
    value = date_means_midnight_utc(blank_is_none(value))
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _in_range(value: datetime | None) -> datetime | None:
    return None if value is None else require_offset(value)


# Bounds go on the inner type: on the field itself, FastAPI would check them against
# the ``None`` of an empty field too, and fail.
FormUuid = Annotated[UUID | None, BeforeValidator(blank_is_none)]
"""An id, or nothing for an empty field."""
FormText = Annotated[
    Annotated[QueryText, Field(max_length=FORM_TEXT_LENGTH_MAX)] | None,
    BeforeValidator(blank_is_none),
]
"""At most :data:`FORM_TEXT_LENGTH_MAX` characters without surrounding spaces, or
nothing for an empty field."""
FormPosition = Annotated[
    Annotated[int, Field(ge=0, le=POSITION_MAX)] | None, BeforeValidator(blank_is_none)
]
"""An event store position, or nothing for an empty field."""
FormTime = Annotated[datetime | None, BeforeValidator(typed_time), AfterValidator(_in_range)]
"""A moment in UTC (see :func:`typed_time`), or nothing for an empty field."""
OptionalFlag = Annotated[bool | None, BeforeValidator(blank_is_none)]
"""A yes / no / either filter (``true``, ``false``, or blank or absent)."""
Offset = Annotated[int, Query(ge=0, le=OFFSET_MAX)]
"""How many items of a list come before the page shown."""

TIME_HELP = "A date (2030-01-07) or a time (2030-01-07T17:00), in UTC unless it gives an offset."
