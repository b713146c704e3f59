"""Analytics over HTTP: a kitchen's statistics, the revenue series and kitchen rankings,
from the analytics read model. Analysts and admins see everything; a host sees the
statistics of their own kitchens. Every route answers JSON, or CSV when the request
prefers it (``Accept: text/csv``): one row per item, money as in JSON (``"120.00"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import (
    AnalystAdminOrHost,
    AnalystOrAdmin,
    AnalyticsQueriesDep,
    AnalyticsReadModel,
    ReadConsistency,
    TodayUtc,
)
from api.queries.params import POINT_IN_TIME_HELP, PointInTime, QueryText, query_responses
from api.schemas import MoneyOut, money
from queries.analytics import (
    RANKING_LIMIT_DEFAULT,
    RANKING_LIMIT_MAX,
    Granularity,
    KitchenStats,
    RankedKitchen,
    RankingMetric,
    RevenuePoint,
    RevenueSeries,
)
from queries.csv_format import to_csv

router = APIRouter(prefix="/analytics", tags=["analytics"])

CSV_MEDIA_TYPE: Final = "text/csv"
ACCEPT_LENGTH_BOUND: Final = 2_000
CITY_LENGTH_BOUND: Final = 1_000
JURISDICTION_LENGTH_BOUND: Final = 1_000
REVENUE_DAYS_DEFAULT: Final = 30

KitchenId = Annotated[UUID, Path(description="The kitchen's id.")]
Accept = Annotated[
    str | None,
    Header(
        max_length=ACCEPT_LENGTH_BOUND,
        description="`text/csv` for CSV (a header row, then one row per item); JSON otherwise.",
    ),
]
_CSV_CONTENT: Final = {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}

# --- content negotiation -------------------------------------------------------------


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    """``Accept``'s media ranges with their quality (1 unless given; 0 if unreadable)."""
    ranges = []
    for part in accept.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0 <= quality <= 1:  # also NaN
                    quality = 0.0
        if media:
            ranges.append((media.lower(), quality))
    return ranges


def prefers_csv(accept: str | None) -> bool:
    """Whether ``accept`` ranks CSV above JSON. CSV must be asked for (``text/csv`` or
    ``text/*``); on equal quality the range listed first wins, and ``*/*`` counts for
    JSON, the default."""
    if not accept:
        return False
    best_csv: tuple[float, int] = (0.0, 0)
    best_json: tuple[float, int] = (0.0, 0)
    for index, (media, quality) in enumerate(_media_ranges(accept)):
        rank = (quality, -index)
        if media in (CSV_MEDIA_TYPE, "text/*"):
            best_csv = max(best_csv, rank)
        elif media in ("application/json", "application/*", "*/*"):
            best_json = max(best_json, rank)
    return best_csv[0] > 0 and best_csv > best_json


def csv_response(
    rows: Sequence[BaseModel],
    model: type[BaseModel],
    consistency: ReadConsistency,
    filename: str,
) -> Response:
    """Rows of ``model`` as a CSV download (a header row even when there are none), each
    cell safe to open in a spreadsheet (see ``queries.csv_format``)."""
    return consistency.response(
        to_csv(rows, model),
        f"{CSV_MEDIA_TYPE}; charset=utf-8",
        {"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- kitchen statistics --------------------------------------------------------------


class KitchenStatsOut(BaseModel):
    """One kitchen's bookings and money, all time."""

    kitchen_id: UUID
    host_id: UUID
    name: str = Field(examples=["Sunset Commissary"])
    city: str = Field(examples=["Los Angeles"])
    jurisdiction: str = Field(examples=["los_angeles"])
    total_bookings: int = Field(description="Every booking requested.", examples=[14])
    pending_bookings: int = Field(examples=[1])
    confirmed_bookings: int = Field(examples=[2])
    completed_bookings: int = Field(examples=[8])
    cancelled_bookings: int = Field(examples=[2])
    declined_bookings: int = Field(examples=[1])
    expired_bookings: int = Field(examples=[0])
    booked_hours: float = Field(description="Length of the completed bookings.", examples=[22.5])
    booked_minutes: int = Field(examples=[1350])
    revenue: MoneyOut = Field(
        description="GMV: captured from customers (completions and cancellation fees).",
        examples=["1125.00"],
    )
    host_revenue: MoneyOut = Field(description="The host's share.", examples=["1012.50"])
    platform_revenue: MoneyOut = Field(
        description="The platform's commission.", examples=["112.50"]
    )
    average_price: MoneyOut | None = Field(
        description="Mean price of completed bookings; null before the first.",
        examples=["140.63"],
    )
    occupancy: float | None = Field(
        description="Completed booked minutes over the minutes the kitchen was open from "
        "`occupancy_first_day` to `occupancy_last_day` (0 to 1); null before the first "
        "completed booking, and for a jurisdiction without known operating hours.",
        examples=[0.0421],
    )
    occupancy_first_day: date | None
    occupancy_last_day: date | None
    available_minutes: int | None = Field(
        description="Operating minutes in that span.", examples=[32040]
    )

    @classmethod
    def of(cls, stats: KitchenStats) -> KitchenStatsOut:
        return cls(
            **stats.model_dump(
                include={
                    "kitchen_id",
                    "host_id",
                    "name",
                    "city",
                    "jurisdiction",
                    "total_bookings",
                    "pending_bookings",
                    "confirmed_bookings",
                    "completed_bookings",
                    "cancelled_bookings",
                    "declined_bookings",
                    "expired_bookings",
                    "booked_hours",
                    "booked_minutes",
                    "occupancy",
                    "occupancy_first_day",
                    "occupancy_last_day",
                    "available_minutes",
                }
            ),
            revenue=money(stats.gmv_cents),
            host_revenue=money(stats.host_revenue_cents),
            platform_revenue=money(stats.platform_revenue_cents),
            average_price=(
                None if stats.average_price_cents is None else money(stats.average_price_cents)
            ),
        )


@router.get(
    "/kitchens/{kitchen_id}/stats",
    response_model=KitchenStatsOut,
    summary="A kitchen's statistics",
    description="Bookings by outcome, completed hours, revenue, average price and occupancy "
    "of one kitchen. Analysts and admins: any kitchen; a host: their own (403 for "
    "another's). `Accept: text/csv` answers one CSV row.",
    responses=query_responses(401, 403, 404, 422, 503, content=_CSV_CONTENT),
)
def kitchen_stats(
    kitchen_id: KitchenId,
    user: AnalystAdminOrHost,
    analytics: AnalyticsQueriesDep,
    consistency: AnalyticsReadModel,
    accept: Accept = None,
) -> KitchenStatsOut | Response:
    stats = KitchenStatsOut.of(analytics.kitchen_stats(user.viewer, kitchen_id))
    if prefers_csv(accept):
        return kitchen_stats_csv(stats, consistency)
    return stats


def kitchen_stats_csv(stats: KitchenStatsOut, consistency: ReadConsistency) -> Response:
    """The statistics as their CSV download: one row."""
    return csv_response(
        [stats], KitchenStatsOut, consistency, f"kitchen-{stats.kitchen_id}-stats.csv"
    )


# --- revenue -------------------------------------------------------------------------


class RevenuePointOut(BaseModel):
    period_start: date = Field(
        description="The day, the Monday of the week, or the first of the month.",
        examples=["2030-01-06"],
    )
    gmv: MoneyOut = Field(description="Captured from customers.", examples=["840.00"])
    platform_revenue: MoneyOut = Field(examples=["84.00"])

    @classmethod
    def of(cls, point: RevenuePoint) -> RevenuePointOut:
        return cls(
            period_start=point.period_start,
            gmv=money(point.gmv_cents),
            platform_revenue=money(point.platform_revenue_cents),
        )


class RevenueSeriesOut(BaseModel):
    """GMV and platform revenue per period, every period of the range included (0.00
    when nothing was captured), oldest first. The range is of whole UTC days, both ends
    included; a period partly outside it counts only its days inside."""

    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", examples=["2030-01-01"])
    to: date = Field(examples=["2030-01-31"])
    granularity: Granularity = Field(examples=["week"])
    city: str | None = Field(description="The city asked for; null for all.")
    jurisdiction: str | None = Field(description="The jurisdiction asked for; null for all.")
    points: list[RevenuePointOut]
    gmv: MoneyOut = Field(description="The sum of the points.", examples=["3360.00"])
    platform_revenue: MoneyOut = Field(examples=["336.00"])

    @classmethod
    def of(cls, series: RevenueSeries) -> RevenueSeriesOut:
        fields: dict[str, Any] = {
            "from": series.from_,
            "to": series.to,
            "granularity": series.granularity,
            "city": series.city,
            "jurisdiction": series.jurisdiction,
            "points": [RevenuePointOut.of(point) for point in series.points],
            "gmv": money(series.gmv_cents),
            "platform_revenue": money(series.platform_revenue_cents),
        }
        return cls.model_validate(fields)


def revenue_days(today: date, from_: datetime | None, to: datetime | None) -> tuple[date, date]:
    """The days a revenue series (or any range of the analytics) is asked for: ``to``'s
    UTC day, today by default, and ``from``'s, by default
    :data:`REVENUE_DAYS_DEFAULT` days ending with ``to``."""
    last = today if to is None else to.date()
    first = last - timedelta(days=REVENUE_DAYS_DEFAULT - 1) if from_ is None else from_.date()
    return first, last


CityFilter = Annotated[
    QueryText | None,
    Query(
        max_length=CITY_LENGTH_BOUND,
        description="Only this city (case-insensitive).",
        examples=["Los Angeles"],
    ),
]
JurisdictionFilter = Annotated[
    QueryText | None,
    Query(
        max_length=JURISDICTION_LENGTH_BOUND,
        description="Only the kitchens of this jurisdiction (its code).",
        examples=["los_angeles"],
    ),
]


@router.get(
    "/revenue",
    response_model=RevenueSeriesOut,
    summary="Revenue series",
    description="GMV (money captured from customers) and platform revenue per day, week "
    "(from Monday) or month, from `from` through `to` (UTC days, both included; at most "
    f"three years apart; by default the last {REVENUE_DAYS_DEFAULT} days), for one city "
    "(case-insensitive; the kitchen's city when the money was captured) or all, and one "
    "jurisdiction (its code, e.g. `los_angeles`) or all. Analysts and admins. "
    "`Accept: text/csv` answers one row per period.",
    responses=query_responses(401, 403, 422, 503, content=_CSV_CONTENT),
)
def revenue(
    user: AnalystOrAdmin,
    analytics: AnalyticsQueriesDep,
    consistency: AnalyticsReadModel,
    today: TodayUtc,
    from_: Annotated[
        PointInTime | None,
        Query(alias="from", description=f"First day (its UTC day). {POINT_IN_TIME_HELP}"),
    ] = None,
    to: Annotated[
        PointInTime | None,
        Query(
            description=f"Last day, included (its UTC day); today by default. {POINT_IN_TIME_HELP}"
        ),
    ] = None,
    granularity: Annotated[Granularity, Query(description="Period length.")] = "day",
    city: CityFilter = None,
    jurisdiction: JurisdictionFilter = None,
    accept: Accept = None,
) -> RevenueSeriesOut | Response:
    first, last = revenue_days(today, from_, to)
    series = RevenueSeriesOut.of(
        analytics.revenue(
            user.viewer,
            first,
            last,
            granularity=granularity,
            city=city,
            jurisdiction=jurisdiction,
        )
    )
    if prefers_csv(accept):
        return revenue_csv(series, consistency)
    return series


def revenue_csv(series: RevenueSeriesOut, consistency: ReadConsistency) -> Response:
    """The series as its CSV download: one row per period."""
    return csv_response(series.points, RevenuePointOut, consistency, "revenue.csv")


# --- rankings ------------------------------------------------------------------------


class RankedKitchenOut(BaseModel):
    rank: int = Field(description="1 is the highest.", examples=[1])
    kitchen_id: UUID
    name: str = Field(examples=["Sunset Commissary"])
    city: str = Field(examples=["Los Angeles"])
    revenue: MoneyOut = Field(description="GMV, all time.", examples=["1125.00"])
    total_bookings: int = Field(description="Bookings requested.", examples=[14])
    booked_hours: float = Field(description="Completed hours.", examples=[22.5])

    @classmethod
    def of(cls, ranked: RankedKitchen) -> RankedKitchenOut:
        return cls(
            rank=ranked.rank,
            kitchen_id=ranked.kitchen_id,
            name=ranked.name,
            city=ranked.city,
            revenue=money(ranked.gmv_cents),
            total_bookings=ranked.total_bookings,
            booked_hours=ranked.booked_hours,
        )


class TopKitchensOut(BaseModel):
    metric: RankingMetric = Field(examples=["revenue"])
    items: list[RankedKitchenOut] = Field(description="Highest first; ties in kitchen id order.")


@router.get(
    "/top-kitchens",
    response_model=TopKitchensOut,
    summary="Top kitchens",
    description="Kitchens ranked by `revenue` (GMV), `bookings` (requested) or `hours` "
    "(completed), all time, highest first, at most `limit` (1–100); only those in `city` "
    "(case-insensitive) and `jurisdiction` (its code) when given. Analysts and admins. "
    "`Accept: text/csv` answers one row per kitchen.",
    responses=query_responses(401, 403, 422, 503, content=_CSV_CONTENT),
)
def top_kitchens(
    user: AnalystOrAdmin,
    analytics: AnalyticsQueriesDep,
    consistency: AnalyticsReadModel,
    metric: Annotated[RankingMetric, Query(description="What to rank by.")] = "revenue",
    limit: Annotated[
        int, Query(ge=1, le=RANKING_LIMIT_MAX, description="How many kitchens (1–100).")
    ] = RANKING_LIMIT_DEFAULT,
    city: CityFilter = None,
    jurisdiction: JurisdictionFilter = None,
    accept: Accept = None,
) -> TopKitchensOut | Response:
    ranking = TopKitchensOut(
        metric=metric,
        items=[
            RankedKitchenOut.of(ranked)
            for ranked in analytics.top_kitchens(
                user.viewer, metric=metric, limit=limit, city=city, jurisdiction=jurisdiction
            )
        ],
    )
    if prefers_csv(accept):
        return top_kitchens_csv(ranking, consistency)
    return ranking


def top_kitchens_csv(ranking: TopKitchensOut, consistency: ReadConsistency) -> Response:
    """The ranking as its CSV download: one row per kitchen."""
    return csv_response(
        ranking.items, RankedKitchenOut, consistency, f"top-kitchens-by-{ranking.metric}.csv"
    )
