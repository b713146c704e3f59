"""What the query routers share: a point in time as a query parameter, and the OpenAPI
answers of a query (its ``X-Prep-Position`` header and its problems).

Times in query filters are RFC 3339 with an offset, or a date (``YYYY-MM-DD``) meaning
00:00 UTC that day (SPEC §3); a time without an offset is refused (422), because it
names a different instant in every time zone.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BeforeValidator

from api.schemas import POSITION_HEADER, problems, without_nul

_DATE_ONLY: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
TIME_MIN: Final = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX: Final = datetime(3000, 1, 1, tzinfo=UTC)
"""Times outside ``[TIME_MIN, TIME_MAX)`` are refused: a limit on everything, and no
arithmetic near the ends of ``datetime``'s range."""


def date_means_midnight_utc(value: Any) -> Any:
    if isinstance(value, str) and _DATE_ONLY.fullmatch(value.strip()):
        day = date.fromisoformat(value.strip())
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return value


def require_offset(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        msg = "a time needs a UTC offset (Z or +HH:MM), or give a date (YYYY-MM-DD)"
        raise ValueError(msg)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = TIME_MAX
    if not TIME_MIN <= utc < TIME_MAX:
        msg = "a time is from 1970-01-01 to 2999-12-31 (UTC)"
        raise ValueError(msg)
    return utc


PointInTime = Annotated[
    datetime,
    BeforeValidator(date_means_midnight_utc),
    AfterValidator(require_offset),
]
"""An aware instant, in UTC: RFC 3339 with an offset, or a date meaning 00:00 UTC."""


QueryText = Annotated[str, AfterValidator(without_nul)]
"""Free text in a query parameter. NUL is refused (422): PostgreSQL text cannot hold it,
and no name, city or event type contains one."""

POINT_IN_TIME_HELP: Final = (
    "RFC 3339 with an offset (`2030-01-07T17:00:00Z`), or a date (`2030-01-07`) meaning "
    "00:00 UTC that day."
)

ERASED_HELP: Final = (
    "Some personal field of the payload reads null because the person it was about was "
    "erased (their data key is destroyed)."
)
ERASED_FIELDS_HELP: Final = (
    "Those fields, by name. The password hash reads `***` erased or not, and is never named."
)

_POSITION_HEADER_DOC: Final = {
    POSITION_HEADER: {
        "description": "How far the read model behind this answer has got (an event "
        "store position).",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def query_responses(
    *statuses: int, content: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a query route: the 200 answer's ``X-Prep-Position``
    header (and any extra ``content`` types), then problems with ``statuses``."""
    ok: dict[str, Any] = {"headers": _POSITION_HEADER_DOC}
    if content:
        ok["content"] = content
    return {200: ok, **problems(*statuses)}
