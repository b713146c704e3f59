"""Shapes every router shares: money at the edges, problem documents, positions.

Money is integer cents inside and a decimal string with two places in JSON
(``"120.00"``). Requests send an amount as a JSON string of ASCII digits with at most two
decimal places (``"120"``, ``"120.5"``, ``"120.50"``); anything else is a 422 naming the
field: a JSON number (``5.00000000000000000001`` would already have been rounded by the
JSON parser), a sign, an exponent, spaces, underscores, or digits of other scripts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Generic, Self, TypeVar

from fastapi import Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
)

from queries.base import Page

PASSWORD_LENGTH_BOUND: Final = 4096
EMAIL_LENGTH_BOUND: Final = 1000
NAME_LENGTH_BOUND: Final = 1000
REASON_LENGTH_BOUND: Final = 10_000
ROLE_LENGTH_BOUND: Final = 100
"""Bounds on what a request body is read with at all; the rules (email 254, name 200,
reason 1000 characters, a role the domain knows, …) are the domain's, answered with
their own codes."""
NUL_REFUSED: Final = "text must not contain NUL characters"

POSITION_HEADER: Final = "X-Prep-Position"
MIN_POSITION_HEADER: Final = "X-Prep-Min-Position"
MONEY_DIGITS_MAX: Final = 12
MONEY_PATTERN: Final = r"^-?\d+\.\d{2}$"

MONEY_IN_PATTERN: Final = rf"^[0-9]{{1,{MONEY_DIGITS_MAX - 2}}}(\.[0-9]{{1,2}})?$"
_MONEY_IN: Final = re.compile(MONEY_IN_PATTERN.removeprefix("^").removesuffix("$"))


def parse_money(value: Any) -> Decimal:
    """An amount sent by a client: only a string of ASCII digits, with at most two
    decimal places (``[0-9]``, never ``\\d``, which also matches ``١٢٣`` and ``１２``)."""
    if not isinstance(value, str):
        msg = 'money is a JSON string such as "120.00", not a number'
        raise ValueError(msg)
    if not _MONEY_IN.fullmatch(value):
        msg = (
            f"money is up to {MONEY_DIGITS_MAX - 2} ASCII digits with at most two decimal "
            'places, such as "120.00": no sign, exponent, spaces or separators'
        )
        raise ValueError(msg)
    return Decimal(value)


MoneyIn = Annotated[
    Decimal,
    PlainValidator(parse_money),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_IN_PATTERN,
            "description": "An amount in USD: a string of ASCII digits with at most two "
            'decimal places (`"120.00"`).',
            "examples": ["120.00"],
        }
    ),
]
MoneyOut = Annotated[
    str,
    Field(
        pattern=MONEY_PATTERN,
        description="An amount in USD: a decimal string with two places.",
        examples=["120.00"],
    ),
]


YEAR_MIN: Final = 1900
YEAR_MAX: Final = 2999
"""Dates and times outside these years are refused (422): nothing here is that old or
that far ahead, and date arithmetic near year 9999 overflows."""


def _check_year(value: date) -> date:
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        msg = f"the year must be between {YEAR_MIN} and {YEAR_MAX}"
        raise ValueError(msg)
    return value


Day = Annotated[date, AfterValidator(_check_year)]
"""A calendar date (``YYYY-MM-DD``) between :data:`YEAR_MIN` and :data:`YEAR_MAX`."""
Instant = Annotated[datetime, AfterValidator(_check_year)]
"""An RFC 3339 time between :data:`YEAR_MIN` and :data:`YEAR_MAX`. Naive times pass
here; the domain refuses them with its own code (``naive_datetime``)."""


def cents(amount: Decimal) -> int:
    """Exact: ``amount`` has at most two decimal places (checked by ``MoneyIn``)."""
    scaled = amount * 100
    assert scaled == scaled.to_integral_value(), amount
    return int(scaled)


def money(amount_cents: int) -> str:
    """``12050`` → ``"120.50"``; ``-5`` → ``"-0.05"``."""
    sign = "-" if amount_cents < 0 else ""
    whole, fraction = divmod(abs(amount_cents), 100)
    return f"{sign}{whole}.{fraction:02d}"


class RefundOut(BaseModel):
    """How the booking's hold ended."""

    released: MoneyOut = Field(description="Given back to the customer.", examples=["50.00"])
    captured: MoneyOut = Field(
        description="Taken for the host (less the platform commission): a completion or a "
        "cancellation fee.",
        examples=["50.00"],
    )

    @classmethod
    def of(cls, released_cents: int, captured_cents: int) -> RefundOut:
        return cls(released=money(released_cents), captured=money(captured_cents))


Row = TypeVar("Row")
ItemOut = TypeVar("ItemOut", bound=BaseModel)
Checked = TypeVar("Checked")


class PageOut(BaseModel, Generic[ItemOut]):
    """One page of a list, as the API answers it. A route names its page by subclassing
    (``class BookingPage(PageOut[BookingSummaryOut])``): the subclass's name is the
    OpenAPI schema's, and its fields after these four follow them in the JSON."""

    items: list[ItemOut]
    total: int = Field(description="Matches in all pages.", examples=[42])
    limit: int = Field(examples=[20])
    offset: int = Field(examples=[0])

    @classmethod
    def of(cls, page: Page[Row], item: Callable[[Row], ItemOut], **fields: Any) -> Self:
        """The read model's ``page``, each row answered as ``item`` makes it; ``fields``:
        those a subclass adds."""
        return cls(
            items=[item(row) for row in page.items],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
            **fields,
        )


def kitchen_fields_out(fields: list[str]) -> list[str]:
    """A kitchen's field names as the API spells them (the rate is ``hourly_rate``)."""
    return sorted("hourly_rate" if name == "hourly_rate_cents" else name for name in fields)


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are refused (a misspelt field would
    otherwise be ignored without a word), and so is text holding NUL, which PostgreSQL
    text cannot store: recorded in an event, it would stop every projection that
    copies it into a read model."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        return without_nul(value)


def holds_nul(value: Any) -> bool:
    """Whether ``value`` (text, or a list of them) holds NUL, which PostgreSQL text
    cannot store: every request field, query parameter and console form refuses it."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(holds_nul(item) for item in value)
    return False


def without_nul(value: Checked) -> Checked:
    """``value``, once it is known to hold no NUL (:func:`holds_nul`); a validator."""
    if holds_nul(value):
        raise ValueError(NUL_REFUSED)
    return value


PositionField = Annotated[
    int,
    Field(
        ge=0,
        description="The event store position this command's events reached. Send it as "
        "`X-Prep-Min-Position` on a query to read your own write.",
        examples=[1042],
    ),
]


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(
        description="Where: `body`, `query`, `path` or `header`, then the field."
    )
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as RFC 9457 `application/problem+json`."""

    type: str = Field(examples=["urn:prep-es:problem:booking_conflict"])
    title: str = Field(examples=["Booking conflict"])
    status: int = Field(examples=[409])
    detail: str
    instance: str = Field(description="The request path.", examples=["/api/v1/bookings"])
    code: str = Field(description="Stable machine code.", examples=["booking_conflict"])
    request_id: str | None = Field(description="Quote it when reporting a problem.")
    errors: list[ValidationIssue] | None = Field(
        default=None, description="Validation errors (422, and 400 for malformed JSON)."
    )
    blockers: list[dict[str, str]] | None = Field(
        default=None,
        description="What keeps a user from being erased (409 `erasure_blocked` only): "
        "each with its `kind` (`balance`, `booking`, `payout`, `withdrawal`, `top_up`), "
        "and its `id`, `amount`, `status` or `as` (customer or host) as it has them.",
        examples=[[{"kind": "booking", "id": "5f0c…", "as": "customer", "status": "pending"}]],
    )
    blockers_total: int | None = Field(
        default=None, description="How many blockers there are (`blockers` names the first 50)."
    )


_DESCRIPTIONS: Final = {
    400: "Malformed request (`malformed_json`).",
    401: "Not authenticated: missing, invalid or expired token, or the user is deactivated.",
    402: "Insufficient available funds (`insufficient_funds`).",
    403: "The caller's role or ownership does not allow this (`forbidden`).",
    404: "No such resource, or not visible to the caller.",
    409: "The current state refuses the change.",
    422: "Validation failed; see `errors`.",
    429: "Rate limited; see `Retry-After`.",
    503: "Not ready, or the read model did not reach `X-Prep-Min-Position` in time; see "
    "`Retry-After`.",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting problem answers with these statuses."""
    return {
        status: {"model": Problem, "description": _DESCRIPTIONS.get(status, "Problem.")}
        for status in statuses
    }


def record_position(response: Response, position: int) -> int:
    """Put a command's event store position on its response (``X-Prep-Position``)."""
    response.headers[POSITION_HEADER] = str(position)
    return position
