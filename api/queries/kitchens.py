"""Kitchen queries over HTTP: the public search of bookable kitchens and one kitchen with
its compliance status, both through the query cache. (The admins' moderation list is in
``api.queries.admin``.)"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl
from uuid import UUID

import orjson
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregates.errors import DomainError
from api.deps import (
    PLAIN_POSITION,
    POSITION_MAX,
    KitchenPagesDep,
    KitchenQueriesDep,
    KitchensReadModel,
    OptionalUser,
    PageParams,
)
from api.queries.params import (
    POINT_IN_TIME_HELP,
    PointInTime,
    QueryText,
    date_means_midnight_utc,
    query_responses,
    require_offset,
)
from api.schemas import (
    MIN_POSITION_HEADER,
    MONEY_DIGITS_MAX,
    POSITION_HEADER,
    MoneyIn,
    MoneyOut,
    PageOut,
    cents,
    money,
)
from queries.base import PAGE_SIZE_DEFAULT, Page, PageRequest
from queries.kitchen_cache import PublishedPages
from queries.kitchen_index import LiveSearchIndex
from queries.kitchens import (
    KitchenCertificate,
    KitchenCompliance,
    KitchenDetail,
    KitchenFilters,
    KitchenSummary,
)

router = APIRouter(prefix="/kitchens", tags=["kitchens"])

KitchenId = Annotated[UUID, Path(description="The kitchen's id.")]
KitchenSort = Literal["name", "rate_asc", "rate_desc", "newest"]
KitchenStatus = Literal["draft", "pending_review", "published", "rejected", "suspended"]
SEARCH_TEXT_LENGTH_BOUND = 1_000
AMENITY_FILTERS_BOUND = 50
CAPACITY_BOUND = 50


class KitchenSummaryOut(BaseModel):
    """A kitchen as lists show it."""

    id: UUID
    host_id: UUID = Field(description="The host who lists it.")
    name: str = Field(examples=["Sunset Commissary"])
    city: str = Field(examples=["Los Angeles"])
    jurisdiction: str = Field(
        description="Whose rules apply (certificates, hours).", examples=["los_angeles"]
    )
    hourly_rate: MoneyOut
    capacity: int = Field(description="People at once.", examples=[8])
    amenities: list[str] = Field(
        description="Lower case, sorted.", examples=[["oven", "walk-in fridge"]]
    )
    instant_book: bool = Field(description="Bookings are confirmed at once.")
    status: KitchenStatus = Field(examples=["published"])
    status_reason: str | None = Field(
        description="Why it was rejected or suspended.", examples=[None]
    )
    compliant_through: date | None = Field(
        description="The last day every certificate its jurisdiction requires is verified "
        "and valid; null while one is missing.",
        examples=["2031-12-31"],
    )
    created_at: datetime

    @classmethod
    def of(cls, kitchen: KitchenSummary) -> KitchenSummaryOut:
        fields = kitchen.model_dump(include=set(cls.model_fields) - {"hourly_rate"})
        return cls(**fields, hourly_rate=money(kitchen.hourly_rate_cents))


class KitchenPage(PageOut[KitchenSummaryOut]):
    @classmethod
    def json_of(cls, page: Page[KitchenSummary]) -> bytes:
        """The JSON of ``cls.of(page, KitchenSummaryOut.of)``, byte for byte, written by
        orjson straight from the read model: building and validating the response
        models cost ten times more (the read model is ours, and was checked when it was
        built)."""
        items = [summary_json(item) for item in page.items]
        return page_json(items, page.total, page.limit, page.offset)


class KitchenCertificateOut(BaseModel):
    id: UUID
    kind: str = Field(
        description="health_permit, business_license, fire_inspection, "
        "liability_insurance or food_handler",
        examples=["health_permit"],
    )
    number: str = Field(examples=["HP-2030-0042"])
    issued_on: date
    expires_on: date = Field(
        description="Valid through 23:59:59 of this day in the jurisdiction's time zone."
    )
    status: str = Field(description="pending, verified, rejected or expired")

    @classmethod
    def of(cls, certificate: KitchenCertificate) -> KitchenCertificateOut:
        return cls(**certificate.model_dump())


class KitchenComplianceOut(BaseModel):
    """Compliance now, kind by kind: each required kind is covered by a verified
    certificate valid now, ``expired`` (its verified certificates ran out) or
    ``missing`` (none verified)."""

    compliant: bool = Field(description="Every required kind is covered now.")
    compliant_through: date | None = Field(
        description="The last day every required certificate stays valid."
    )
    required_kinds: list[str] = Field(
        examples=[["business_license", "fire_inspection", "health_permit"]]
    )
    missing_kinds: list[str] = Field(examples=[[]])
    expired_kinds: list[str] = Field(examples=[[]])
    certificates: list[KitchenCertificateOut]

    @classmethod
    def of(cls, compliance: KitchenCompliance) -> KitchenComplianceOut:
        return cls(
            **compliance.model_dump(exclude={"certificates"}),
            certificates=[KitchenCertificateOut.of(c) for c in compliance.certificates],
        )


class KitchenDetailOut(KitchenSummaryOut):
    """A kitchen with its description, address and compliance status."""

    description: str = Field(examples=["A clean commercial kitchen near downtown"])
    address: str = Field(examples=["1200 Sunset Blvd"])
    status_changed_at: datetime
    updated_at: datetime
    version: int = Field(description="The kitchen aggregate's version the read model has.")
    compliance: KitchenComplianceOut

    @classmethod
    def of_detail(cls, kitchen: KitchenDetail) -> KitchenDetailOut:
        fields = kitchen.model_dump(include=set(cls.model_fields) - {"hourly_rate", "compliance"})
        return cls(
            **fields,
            hourly_rate=money(kitchen.hourly_rate_cents),
            compliance=KitchenComplianceOut.of(kitchen.compliance),
        )

    @classmethod
    def json_of(cls, kitchen: KitchenDetail) -> bytes:
        """The JSON of ``cls.of_detail(kitchen)``, byte for byte (see
        ``KitchenPage.json_of``)."""
        compliance = kitchen.compliance
        document = _summary_document(kitchen, _DETAIL_FIELDS)
        document["compliance"] = {
            **{name: getattr(compliance, name) for name in _COMPLIANCE_FIELDS},
            "certificates": [
                {name: getattr(certificate, name) for name in _CERTIFICATE_FIELDS}
                for certificate in compliance.certificates
            ],
        }
        return orjson.dumps(document, option=orjson.OPT_UTC_Z)


_SUMMARY_FIELDS: Final = tuple(KitchenSummaryOut.model_fields)
_DETAIL_FIELDS: Final = tuple(KitchenDetailOut.model_fields)
_COMPLIANCE_FIELDS: Final = tuple(
    name for name in KitchenComplianceOut.model_fields if name != "certificates"
)
_CERTIFICATE_FIELDS: Final = tuple(KitchenCertificateOut.model_fields)


def summary_json(kitchen: KitchenSummary) -> bytes:
    """A kitchen's JSON in a search page: ``KitchenSummaryOut.of(kitchen)``'s."""
    return orjson.dumps(_summary_document(kitchen), option=orjson.OPT_UTC_Z)


def page_json(items: list[bytes], total: int, limit: int, offset: int) -> bytes:
    """A search page's JSON from its kitchens' (``summary_json``), as orjson writes a
    ``KitchenPage``: compact, fields in order."""
    return b'{"items":[%b],"total":%d,"limit":%d,"offset":%d}' % (
        b",".join(items),
        total,
        limit,
        offset,
    )


def _summary_document(
    kitchen: KitchenSummary, fields: tuple[str, ...] = _SUMMARY_FIELDS
) -> dict[str, Any]:
    """A kitchen's fields in the response model's order; the rate as money. (Fields of a
    nested model, such as a detail's ``compliance``, are left for the caller.)"""
    return {
        name: money(kitchen.hourly_rate_cents) if name == "hourly_rate" else getattr(kitchen, name)
        for name in fields
        if name != "compliance"
    }


@router.get(
    "",
    summary="Search bookable kitchens",
    description="Public. Published kitchens that are bookable — every certificate their "
    "jurisdiction requires is verified and valid (today; or through the end of the "
    "window) — matching every filter given. With `available_from` and `available_to` "
    "(together), kitchens whose operating hours do not cover the window, or with a "
    "pending or confirmed booking overlapping it, are left out. `q` matches all its "
    "words (stemmed) in the name, description, city and amenities. Sorted by `sort`: "
    "`name` (default), `rate_asc`, `rate_desc`, `newest`.",
    response_model=KitchenPage,
    responses=query_responses(422, 503),
)
def search_kitchens(
    kitchens: KitchenQueriesDep,
    consistency: KitchensReadModel,
    page: PageParams,
    city: Annotated[
        QueryText | None,
        Query(max_length=SEARCH_TEXT_LENGTH_BOUND, description="Case-insensitive."),
    ] = None,
    jurisdiction: Annotated[
        QueryText | None,
        Query(max_length=SEARCH_TEXT_LENGTH_BOUND, examples=["los_angeles"]),
    ] = None,
    min_rate: Annotated[
        MoneyIn | None, Query(description="Lowest hourly rate, e.g. `40.00`.")
    ] = None,
    max_rate: Annotated[
        MoneyIn | None, Query(description="Highest hourly rate, e.g. `120.00`.")
    ] = None,
    capacity: Annotated[
        int | None,
        Query(ge=1, le=CAPACITY_BOUND, description="Room for at least this many people."),
    ] = None,
    amenity: Annotated[
        list[QueryText] | None,
        Query(
            max_length=AMENITY_FILTERS_BOUND,
            description="Repeat for each amenity the kitchen must have (case-insensitive).",
        ),
    ] = None,
    q: Annotated[
        QueryText | None,
        Query(max_length=SEARCH_TEXT_LENGTH_BOUND, description="Words to search for."),
    ] = None,
    available_from: Annotated[
        PointInTime | None,
        Query(description=f"Start of the window to be free. {POINT_IN_TIME_HELP}"),
    ] = None,
    available_to: Annotated[
        PointInTime | None,
        Query(description=f"End of the window to be free. {POINT_IN_TIME_HELP}"),
    ] = None,
    sort: Annotated[KitchenSort, Query(description="The order of the results.")] = "name",
) -> Response:
    filters = KitchenFilters(
        city=city,
        jurisdiction=jurisdiction,
        min_rate_cents=None if min_rate is None else cents(min_rate),
        max_rate_cents=None if max_rate is None else cents(max_rate),
        capacity=capacity,
        amenities=tuple(amenity or ()),
        q=q,
        available_from=available_from,
        available_to=available_to,
        sort=sort,
    )
    found = kitchens.search(filters, page, min_position=consistency.min_position)
    return consistency.response(KitchenPage.json_of(found), "application/json")


@router.get(
    "/{kitchen_id}",
    summary="Get a kitchen",
    description="Public for published kitchens. A kitchen in any other status (draft, "
    "pending_review, rejected, suspended) is visible to its host and to admins only; "
    "anyone else gets 404. Includes the kitchen's compliance status now: which "
    "required certificates are missing or expired.",
    response_model=KitchenDetailOut,
    responses=query_responses(401, 404, 422, 503),
)
def get_kitchen(
    kitchen_id: KitchenId,
    user: OptionalUser,
    kitchens: KitchenQueriesDep,
    consistency: KitchensReadModel,
    pages: KitchenPagesDep,
) -> Response:
    viewer = None if user is None else user.viewer
    detail, holds_from = kitchens.get(viewer, kitchen_id, min_position=consistency.min_position)
    page = KitchenDetailOut.json_of(detail)
    if pages is not None and detail.status == "published":
        pages.remember(kitchen_id, page, holds_from)
    return consistency.response(page, "application/json")


class KitchenReadsMiddleware:
    """Answers the hottest public reads from this process's memory, before routing: for
    an answer already at hand, FastAPI's validation, dependencies and the trip to a
    worker thread cost several times the answer.

    - ``GET {prefix}/kitchens/{id}``: the published pages the route made (see
      :class:`~queries.kitchen_cache.PublishedPages`);
    - ``GET {prefix}/kitchens?…``: searches the search index answers (see
      :mod:`queries.kitchen_index`).

    It answers only what the routes would answer alike, byte for byte (the tests hold
    them equal): no ``Authorization`` (a token must still be checked), an
    ``X-Prep-Min-Position`` that is absent or a plain number the read model has reached,
    and for a search, parameters spelled plainly (see :func:`plain_search`). Everything
    else, and every miss, goes on to the routes, which remember the pages of published
    kitchens they make. Request ids and metrics wrap this as any route."""

    def __init__(self, app: ASGIApp, *, prefix: str) -> None:
        self.app = app
        self.search_path = f"{prefix}{router.prefix}"
        self.path_start = f"{self.search_path}/"
        self.search_route = _Route(self.search_path)
        self.detail_route = _Route(f"{self.path_start}{{kitchen_id}}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._answer(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        page, position, route = answer
        scope["route"] = route  # for the metrics, as the router would
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(page)).encode()),
                    (b"content-type", b"application/json"),
                    (POSITION_HEADER.lower().encode(), str(position).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": page})

    def _answer(self, scope: Scope) -> tuple[bytes, int, _Route] | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(self.search_path):
            return None
        min_position = _plain_min_position(scope["headers"])
        if min_position is None:
            return None
        services = getattr(getattr(scope.get("app"), "state", None), "services", None)
        if path == self.search_path:
            search: LiveSearchIndex | None = getattr(services, "search_index", None)
            request = None if search is None else plain_search(scope["query_string"])
            if search is None or request is None:
                return None
            found = search.search(*request, min_position)
            if found is None:
                return None
            items, total, position = found
            page_request = request[1]
            page = page_json(items, total, page_request.limit, page_request.offset)
            return page, position, self.search_route
        pages: PublishedPages | None = getattr(services, "kitchen_pages", None)
        if pages is None or not path.startswith(self.path_start):
            return None
        text = path[len(self.path_start) :]
        try:
            kitchen_id = UUID(text)
        except ValueError:
            return None
        if str(kitchen_id) != text:
            return None  # another spelling of an id: the route's to judge
        answer = pages.page(kitchen_id, min_position)
        return None if answer is None else (*answer, self.detail_route)


_MIN_POSITION_NAME: Final = MIN_POSITION_HEADER.lower().encode()
_PLAIN_POSITION_BYTES: Final = re.compile(PLAIN_POSITION.pattern.encode())


def _plain_min_position(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The client's ``X-Prep-Min-Position`` (0 without one); ``None`` when the routes
    must judge the request: it carries a token, or a minimum that is not one plain
    number (see :data:`~api.deps.PLAIN_POSITION`: ``0005`` is not)."""
    min_position = 0
    min_position_seen = False
    for name, value in headers:
        if name == b"authorization":
            return None
        if name == _MIN_POSITION_NAME:
            if (
                min_position_seen
                or not _PLAIN_POSITION_BYTES.fullmatch(value)
                or int(value) > POSITION_MAX
            ):
                return None  # the route's to refuse or to settle
            min_position, min_position_seen = int(value), True
    return min_position


# Whole units of at most MONEY_DIGITS_MAX - 2 digits, then cents.
_PLAIN_MONEY: Final = re.compile(rf"(?:0|[1-9]\d{{0,{MONEY_DIGITS_MAX - 3}}})(?:\.\d{{1,2}})?")
_PLAIN_CAPACITY: Final = re.compile(r"[1-9]\d?")
_PLAIN_COUNT: Final = re.compile(r"0|[1-9]\d{0,6}")
_PLAIN_TIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2}))?"
)


def plain_search(query_string: bytes) -> tuple[KitchenFilters, PageRequest] | None:
    """A search's filters and page, where every parameter is one the route knows, given
    once (``amenity``: up to its bound), spelled plainly and valid: what the route would
    make of it. ``None`` for anything else (and for ``q``): the route judges it."""
    if not query_string.isascii():
        return None
    values: dict[str, str] = {}
    amenities: list[str] = []
    for name, value in parse_qsl(query_string.decode("ascii"), keep_blank_values=True):
        if not value or "\x00" in value or len(value) > SEARCH_TEXT_LENGTH_BOUND:
            return None
        if name == "amenity":
            amenities.append(value)
        elif name in values or name not in _SEARCH_PARAMETERS:
            return None
        else:
            values[name] = value
    if len(amenities) > AMENITY_FILTERS_BOUND:
        return None
    try:
        page = PageRequest(
            limit=_plain_count(values.get("limit"), PAGE_SIZE_DEFAULT),
            offset=_plain_count(values.get("offset"), 0),
        )
        return (
            KitchenFilters(
                city=values.get("city"),
                jurisdiction=values.get("jurisdiction"),
                min_rate_cents=_plain_cents(values.get("min_rate")),
                max_rate_cents=_plain_cents(values.get("max_rate")),
                capacity=_plain_capacity(values.get("capacity")),
                amenities=tuple(amenities),
                available_from=_plain_time(values.get("available_from")),
                available_to=_plain_time(values.get("available_to")),
                sort=values.get("sort", "name"),
            ),
            page,
        )
    except (ValueError, DomainError):
        return None


_SEARCH_PARAMETERS: Final = frozenset(
    {"city", "jurisdiction", "min_rate", "max_rate", "capacity", "available_from", "available_to",
     "sort", "limit", "offset"}
)  # fmt: skip


def _plain_count(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not _PLAIN_COUNT.fullmatch(value):
        raise ValueError(value)
    return int(value)


def _plain_cents(value: str | None) -> int | None:
    if value is None:
        return None
    if not _PLAIN_MONEY.fullmatch(value):
        raise ValueError(value)
    return cents(Decimal(value))


def _plain_capacity(value: str | None) -> int | None:
    if value is None:
        return None
    if not _PLAIN_CAPACITY.fullmatch(value) or int(value) > CAPACITY_BOUND:
        raise ValueError(value)
    return int(value)


def _plain_time(value: str | None) -> datetime | None:
    """As ``PointInTime`` reads it (an offset required; a date is midnight UTC)."""
    if value is None:
        return None
    if not _PLAIN_TIME.fullmatch(value):
        raise ValueError(value)
    parsed = date_means_midnight_utc(value)
    return require_offset(parsed if isinstance(parsed, datetime) else datetime.fromisoformat(value))


class _Route:
    """What the metrics read of a route: its path template."""

    def __init__(self, path_format: str) -> None:
        self.path_format = path_format
