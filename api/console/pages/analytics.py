"""Analytics pages (analysts and admins): revenue over time, occupancy by kitchen, top
kitchens and one kitchen's statistics. Each shows a chart (``api.console.charts``), the
table of the same numbers beside it, and a CSV download of them.

They call the query services the API's analytics routes call, with the same defaults
and bounds (``api.queries.analytics``): a revenue table holds exactly the decimal
strings ``GET /api/v1/analytics/revenue`` answers for the same filters, and the
revenue, top kitchens and kitchen statistics downloads are the CSV the API answers
``Accept: text/csv`` with. Occupancy by kitchen has no API route: its download is the
page's rows in the same CSV format. Filters left blank in the form mean "all" (the
form sends them empty).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Final, get_args
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from markupsafe import Markup
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from aggregates.booking import BookingStatus
from api.console.charts import Series, bar_chart, column_chart, compact_number, percent
from api.console.params import Offset, blank_is_none
from api.console.rendering import PAGE_HEADERS, PageRead, console_read, render
from api.console.session import CONSOLE_PATH, ConsoleAnalystOrAdmin
from api.deps import AnalyticsQueriesDep, AuthenticatedUser, ReadConsistency, ServicesDep, TodayUtc
from api.queries.analytics import (
    CityFilter,
    JurisdictionFilter,
    KitchenStatsOut,
    RankedKitchenOut,
    RevenueSeriesOut,
    TopKitchensOut,
    csv_response,
    kitchen_stats_csv,
    revenue_csv,
    revenue_days,
    top_kitchens_csv,
)
from api.queries.params import PointInTime
from queries.analytics import (
    RANKING_LIMIT_DEFAULT,
    RANKING_LIMIT_MAX,
    Granularity,
    KitchenOccupancy,
    RankingMetric,
)
from queries.base import Page, PageRequest

router = APIRouter(prefix="/analytics")

ANALYTICS_PATH: Final = f"{CONSOLE_PATH}/analytics"
OCCUPANCY_PAGE_SIZE: Final = 25
DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
GRANULARITY_NAMES: Final = {"day": "Day", "week": "Week", "month": "Month"}
METRIC_NAMES: Final = {
    "revenue": "Revenue (GMV)",
    "bookings": "Bookings requested",
    "hours": "Hours booked (completed)",
}
OUTCOME_NAMES: Final = {
    "pending": "Pending",
    "confirmed": "Confirmed",
    "completed": "Completed",
    "cancelled": "Cancelled",
    "declined": "Declined",
    "expired": "Expired",
}
# Every value of the types a request may name has its name here (no KeyError, no 500).
assert GRANULARITY_NAMES.keys() == set(get_args(Granularity))
assert METRIC_NAMES.keys() == set(get_args(RankingMetric))
assert OUTCOME_NAMES.keys() == {status.value for status in BookingStatus}


Blank = BeforeValidator(blank_is_none)
DayOrBlank = Annotated[PointInTime | None, Blank]
CityOrBlank = Annotated[CityFilter, Blank]
JurisdictionOrBlank = Annotated[JurisdictionFilter, Blank]


@dataclass(frozen=True)
class PlaceFilters:
    """The city and jurisdiction a page is filtered by (``None``: all), as the API's
    analytics take them."""

    city: str | None
    jurisdiction: str | None

    def params(self) -> dict[str, object]:
        """These filters as query parameters: what links and the CSV download carry,
        so that they show the same numbers."""
        params: dict[str, object] = {}
        if self.city is not None:
            params["city"] = self.city
        if self.jurisdiction is not None:
            params["jurisdiction"] = self.jurisdiction
        return params

    def query(self, **more: object) -> str:
        """:meth:`params` (and ``more``) as a query string."""
        return urlencode({**self.params(), **more})


@dataclass(frozen=True)
class Filters(PlaceFilters):
    """The days (both included), city and jurisdiction a page is filtered by."""

    from_: date
    to: date

    def params(self) -> dict[str, object]:
        return {"from": self.from_.isoformat(), "to": self.to.isoformat(), **super().params()}


@dataclass(frozen=True)
class RankingPlaceFilters(PlaceFilters):
    """A ranking's city and jurisdiction (it is of all time), and the days the other
    pages were asked for, carried along unread so that their links keep them."""

    from_: date | None
    to: date | None

    def params(self) -> dict[str, object]:
        days = {"from": self.from_, "to": self.to}
        return {
            **{name: day.isoformat() for name, day in days.items() if day is not None},
            **super().params(),
        }


async def place_filters(
    city: CityOrBlank = None, jurisdiction: JurisdictionOrBlank = None
) -> PlaceFilters:
    """The city and jurisdiction of the request: by default every one."""
    return PlaceFilters(city=city, jurisdiction=jurisdiction)


PlacesOnly = Annotated[PlaceFilters, Depends(place_filters)]


async def range_filters(
    today: TodayUtc,
    places: PlacesOnly,
    from_: Annotated[DayOrBlank, Query(alias="from")] = None,
    to: DayOrBlank = None,
) -> Filters:
    """The filters of the request: by default the API's range (the last 30 days) in
    every city and jurisdiction."""
    first, last = revenue_days(today, from_, to)
    return Filters(city=places.city, jurisdiction=places.jurisdiction, from_=first, to=last)


def _carried_day(value: str | None) -> date | None:
    """A day in a link to carry along (``YYYY-MM-DD``); anything else is dropped."""
    if value is None or not DAY.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


async def ranking_filters(
    places: PlacesOnly,
    # Unbounded on purpose: nothing reads them but a pattern of ten characters, and a
    # bad day is no error on a page that shows no days.
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: str | None = None,
) -> RankingPlaceFilters:
    """The places of the request; its days are not read, only carried along when they
    are days."""
    return RankingPlaceFilters(
        city=places.city,
        jurisdiction=places.jurisdiction,
        from_=_carried_day(from_),
        to=_carried_day(to),
    )


RangeFilters = Annotated[Filters, Depends(range_filters)]
RankingFilters = Annotated[RankingPlaceFilters, Depends(ranking_filters)]
AnalyticsRead = Annotated[PageRead, Depends(console_read("analytics"))]


@dataclass(frozen=True)
class Place:
    value: str
    label: str


async def _places(
    services: ServicesDep, analytics: AnalyticsQueriesDep, user: AuthenticatedUser
) -> tuple[list[str], list[Place]]:
    """The cities and jurisdictions the filter form offers: the kitchens' cities, and
    the jurisdictions of the rules, named as the rules name them (kitchens are created
    only in those)."""
    cities = await run_in_threadpool(analytics.cities, user.viewer)
    catalog = services.runtime.jurisdictions
    jurisdictions = [Place(code, f"{catalog.get(code).name} ({code})") for code in catalog.codes()]
    return cities, jurisdictions


def _csv(response: Response) -> Response:
    response.headers["Cache-Control"] = PAGE_HEADERS["Cache-Control"]
    return response


def _consistency(read: PageRead) -> ReadConsistency:
    """The position a console CSV download says it read at, as the API's does."""
    return ReadConsistency(min_position=0, position=read.position)


def _place_words(places: PlaceFilters) -> str:
    """The city and jurisdiction in words, for titles and chart descriptions."""
    city = f"in {places.city}" if places.city is not None else "in every city"
    jurisdiction = (
        f"jurisdiction {places.jurisdiction}"
        if places.jurisdiction is not None
        else "every jurisdiction"
    )
    return f"{city}, {jurisdiction}"


def _where(filters: Filters) -> str:
    """The filters in words, for titles and chart descriptions."""
    return f"from {filters.from_} to {filters.to}, {_place_words(filters)}"


# --- overview --------------------------------------------------------------------------


@router.get("")
async def analytics_home(request: Request, user: ConsoleAnalystOrAdmin) -> RedirectResponse:
    """Analytics start with revenue; the filters asked for go along."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{ANALYTICS_PATH}/revenue{query}", status_code=303)


# --- revenue ---------------------------------------------------------------------------


async def _revenue(
    user: AuthenticatedUser,
    analytics: AnalyticsQueriesDep,
    filters: Filters,
    granularity: Granularity,
) -> RevenueSeriesOut:
    series = await run_in_threadpool(
        analytics.revenue,
        user.viewer,
        filters.from_,
        filters.to,
        granularity=granularity,
        city=filters.city,
        jurisdiction=filters.jurisdiction,
    )
    return RevenueSeriesOut.of(series)


def revenue_chart(series: RevenueSeriesOut, filters: Filters) -> Markup:
    gmv = [Decimal(point.gmv) for point in series.points]
    platform = [Decimal(point.platform_revenue) for point in series.points]
    busiest = max(
        series.points, key=lambda point: (Decimal(point.gmv), point.period_start), default=None
    )
    highest = (
        f" The highest GMV, {Decimal(busiest.gmv):,.2f}, is in the {series.granularity} of "
        f"{busiest.period_start}."
        if busiest is not None and Decimal(busiest.gmv) > 0
        else " Nothing was captured."
    )
    return column_chart(
        chart_id="revenue-chart",
        title=f"Revenue by {series.granularity}",
        description=(
            f"Bar chart of GMV and platform revenue in USD by {series.granularity}, "
            f"{_where(filters)}: {len(series.points)} periods, GMV "
            f"{Decimal(series.gmv):,.2f} in all and platform revenue "
            f"{Decimal(series.platform_revenue):,.2f}.{highest}"
        ),
        labels=[point.period_start.isoformat() for point in series.points],
        series=[
            Series("GMV", gmv, fill="solid"),
            Series("Platform revenue", platform, fill="hatched"),
        ],
        unit="USD",
    )


@router.get("/revenue", response_class=HTMLResponse)
async def revenue_page(
    request: Request,
    user: ConsoleAnalystOrAdmin,
    services: ServicesDep,
    analytics: AnalyticsQueriesDep,
    read: AnalyticsRead,
    filters: RangeFilters,
    granularity: Granularity = "day",
) -> HTMLResponse:
    """GMV and platform revenue per day, week or month: a chart, its table, its CSV."""
    series = await _revenue(user, analytics, filters, granularity)
    cities, jurisdictions = await _places(services, analytics, user)
    return render(
        request,
        "analytics_revenue.html",
        user=user,
        section="analytics",
        read=read,
        filters=filters,
        granularity=granularity,
        granularities=GRANULARITY_NAMES,
        cities=cities,
        jurisdictions=jurisdictions,
        series=series,
        where=_where(filters),
        chart=revenue_chart(series, filters),
        csv_query=filters.query(granularity=granularity),
    )


@router.get("/revenue.csv")
async def revenue_download(
    user: ConsoleAnalystOrAdmin,
    analytics: AnalyticsQueriesDep,
    read: AnalyticsRead,
    filters: RangeFilters,
    granularity: Granularity = "day",
) -> Response:
    """The revenue table as the API's CSV."""
    series = await _revenue(user, analytics, filters, granularity)
    return _csv(revenue_csv(series, _consistency(read)))


# --- occupancy -------------------------------------------------------------------------


async def _occupancy(
    user: AuthenticatedUser,
    analytics: AnalyticsQueriesDep,
    filters: Filters,
    offset: int,
) -> Page[KitchenOccupancy]:
    return await run_in_threadpool(
        analytics.occupancy,
        user.viewer,
        filters.from_,
        filters.to,
        city=filters.city,
        jurisdiction=filters.jurisdiction,
        page=PageRequest(limit=OCCUPANCY_PAGE_SIZE, offset=offset),
    )


def _shown(page: Page[KitchenOccupancy]) -> str:
    """Which kitchens of how many the page shows, in words."""
    if not page.items:
        return "no kitchens" if page.total == 0 else f"no kitchens on this page, of {page.total}"
    first, last = page.offset + 1, page.offset + len(page.items)
    return f"kitchens {first} to {last} of {page.total}, highest first"


def occupancy_chart(page: Page[KitchenOccupancy], filters: Filters) -> Markup:
    shares = [
        (item.name, Decimal(str(item.occupancy)))
        for item in page.items
        if item.occupancy is not None
    ]
    unknown = len(page.items) - len(shares)
    left_out = (
        f" {unknown} {'kitchen' if unknown == 1 else 'kitchens'} of jurisdictions without "
        "operating hours left out."
        if unknown
        else ""
    )
    highest = "".join(f" {name}: {percent(share)}." for name, share in shares[:5])
    return bar_chart(
        chart_id="occupancy-chart",
        title="Occupancy by kitchen",
        description=(
            f"Horizontal bar chart of the share of open hours booked, per kitchen, "
            f"{_where(filters)}: {_shown(page)}.{highest}{left_out}"
        ),
        labels=[name for name, _ in shares],
        series=Series("Occupancy: share of open hours booked", [share for _, share in shares]),
        value_label=percent,
        maximum=Decimal(1),
    )


@router.get("/occupancy", response_class=HTMLResponse)
async def occupancy_page(
    request: Request,
    user: ConsoleAnalystOrAdmin,
    services: ServicesDep,
    analytics: AnalyticsQueriesDep,
    read: AnalyticsRead,
    filters: RangeFilters,
    offset: Offset = 0,
) -> HTMLResponse:
    """Each kitchen's occupancy over the range, highest first, a page at a time."""
    page = await _occupancy(user, analytics, filters, offset)
    cities, jurisdictions = await _places(services, analytics, user)
    return render(
        request,
        "analytics_occupancy.html",
        user=user,
        section="analytics",
        read=read,
        filters=filters,
        cities=cities,
        jurisdictions=jurisdictions,
        page=page,
        where=_where(filters),
        chart=occupancy_chart(page, filters),
        csv_query=filters.query(offset=offset),
    )


@router.get("/occupancy.csv")
async def occupancy_download(
    user: ConsoleAnalystOrAdmin,
    analytics: AnalyticsQueriesDep,
    read: AnalyticsRead,
    filters: RangeFilters,
    offset: Offset = 0,
) -> Response:
    """The occupancy table (the same page of kitchens) as CSV."""
    page = await _occupancy(user, analytics, filters, offset)
    return _csv(csv_response(page.items, KitchenOccupancy, _consistency(read), "occupancy.csv"))


# --- top kitchens ----------------------------------------------------------------------

RankingLimit = Annotated[int, Query(ge=1, le=RANKING_LIMIT_MAX)]


async def _top_kitchens(
    user: AuthenticatedUser,
    analytics: AnalyticsQueriesDep,
    filters: PlaceFilters,
    metric: RankingMetric,
    limit: int,
) -> TopKitchensOut:
    ranked = await run_in_threadpool(
        analytics.top_kitchens,
        user.viewer,
        metric=metric,
        limit=limit,
        city=filters.city,
        jurisdiction=filters.jurisdiction,
    )
    return TopKitchensOut(metric=metric, items=[RankedKitchenOut.of(item) for item in ranked])


def metric_value(item: RankedKitchenOut, metric: RankingMetric) -> Decimal:
    if metric == "revenue":
        return Decimal(item.revenue)
    if metric == "bookings":
        return Decimal(item.total_bookings)
    return Decimal(str(item.booked_hours))


def top_kitchens_chart(ranking: TopKitchensOut, filters: PlaceFilters) -> Markup:
    metric = ranking.metric
    name = METRIC_NAMES[metric]
    return bar_chart(
        chart_id="top-kitchens-chart",
        title=f"Top kitchens by {name.lower()}",
        description=(
            f"Horizontal bar chart of the {len(ranking.items)} kitchens with the most "
            f"{name.lower()}, all time, highest first, {_place_words(filters)}."
            + "".join(
                f" {item.rank}. {item.name}: {compact_number(metric_value(item, metric))}."
                for item in ranking.items[:5]
            )
        ),
        labels=[f"{item.rank}. {item.name}" for item in ranking.items],
        series=Series(name, [metric_value(item, metric) for item in ranking.items]),
        whole_numbers=metric == "bookings",
    )


@router.get("/top-kitchens", response_class=HTMLResponse)
async def top_kitchens_page(
    request: Request,
    user: ConsoleAnalystOrAdmin,
    services: ServicesDep,
    analytics: AnalyticsQueriesDep,
    read: AnalyticsRead,
    filters: RankingFilters,
    metric: RankingMetric = "revenue",
    limit: RankingLimit = RANKING_LIMIT_DEFAULT,
) -> HTMLResponse:
    """Kitchens ranked by revenue, bookings or hours (all time), in a city and
    jurisdiction if asked."""
    ranking = await _top_kitchens(user, analytics, filters, metric, limit)
    cities, jurisdictions = await _places(services, analytics, user)
    return render(
        request,
        "analytics_top_kitchens.html",
        user=user,
        section="analytics",
        read=read,
        filters=filters,
        cities=cities,
        jurisdictions=jurisdictions,
        metric=metric,
        metrics=METRIC_NAMES,
        limit=limit,
        limit_max=RANKING_LIMIT_MAX,
        ranking=ranking,
        chart=top_kitchens_chart(ranking, filters),
        csv_query=filters.query(metric=metric, limit=limit),
    )


@router.get("/top-kitchens.csv")
async def top_kitchens_download(
    user: ConsoleAnalystOrAdmin,
    analytics: AnalyticsQueriesDep,
    read: AnalyticsRead,
    filters: PlacesOnly,
    metric: RankingMetric = "revenue",
    limit: RankingLimit = RANKING_LIMIT_DEFAULT,
) -> Response:
    """The ranking as the API's CSV."""
    ranking = await _top_kitchens(user, analytics, filters, metric, limit)
    return _csv(top_kitchens_csv(ranking, _consistency(read)))


# --- one kitchen -----------------------------------------------------------------------


async def _kitchen_stats(
    user: AuthenticatedUser, analytics: AnalyticsQueriesDep, kitchen_id: UUID
) -> KitchenStatsOut:
    stats = await run_in_threadpool(analytics.kitchen_stats, user.viewer, kitchen_id)
    return KitchenStatsOut.of(stats)


def outcomes(stats: KitchenStatsOut) -> list[tuple[str, str, int]]:
    """(field, name, count) of each booking outcome."""
    return [
        (f"{outcome}_bookings", OUTCOME_NAMES[outcome], getattr(stats, f"{outcome}_bookings"))
        for outcome in OUTCOME_NAMES
    ]


def outcomes_chart(stats: KitchenStatsOut) -> Markup:
    counted = outcomes(stats)
    return bar_chart(
        chart_id="outcomes-chart",
        title=f"Bookings of {stats.name} by outcome",
        description=(
            f"Horizontal bar chart of the {stats.total_bookings} bookings requested of "
            f"{stats.name}, by their status now: "
            + ", ".join(f"{name.lower()} {count}" for _, name, count in counted)
            + "."
        ),
        labels=[name for _, name, _ in counted],
        series=Series("Bookings", [count for _, _, count in counted]),
        whole_numbers=True,
    )


@router.get("/kitchens/{kitchen_id}", response_class=HTMLResponse)
async def kitchen_page(
    request: Request,
    kitchen_id: UUID,
    user: ConsoleAnalystOrAdmin,
    analytics: AnalyticsQueriesDep,
    read: AnalyticsRead,
) -> HTMLResponse:
    """One kitchen's statistics, all time, as ``GET /analytics/kitchens/{id}/stats``."""
    stats = await _kitchen_stats(user, analytics, kitchen_id)
    return render(
        request,
        "analytics_kitchen.html",
        user=user,
        section="analytics",
        read=read,
        stats=stats,
        outcomes=outcomes(stats),
        chart=outcomes_chart(stats),
    )


@router.get("/kitchens/{kitchen_id}/stats.csv")
async def kitchen_download(
    kitchen_id: UUID,
    user: ConsoleAnalystOrAdmin,
    analytics: AnalyticsQueriesDep,
    read: AnalyticsRead,
) -> Response:
    """The kitchen's statistics as the API's CSV (one row)."""
    stats = await _kitchen_stats(user, analytics, kitchen_id)
    return _csv(kitchen_stats_csv(stats, _consistency(read)))
