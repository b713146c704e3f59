"""Analytics queries: a kitchen's statistics, the revenue series, kitchen rankings.

They read the ``analytics`` projection (see :mod:`projections.analytics` for what every
number means). Analysts and admins see everything; a host sees the statistics of their
own kitchens and nothing else here. Money is integer cents; ``queries.csv_format``
renders any list of these read models as CSV for ``Accept: text/csv``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID

from pydantic import BaseModel

from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from projections.analytics import AnalyticsProjection, as_date, month_start, week_start
from projections.database import ReadDatabase, Sql, uuid_from_row, uuid_parameter
from queries.base import Viewer

Granularity = Literal["day", "week", "month"]
RankingMetric = Literal["revenue", "bookings", "hours"]

GRANULARITIES: Final = ("day", "week", "month")
RANKING_METRICS: Final = ("revenue", "bookings", "hours")
REVENUE_RANGE_DAYS_MAX: Final = 3 * 365 + 1
"""Three years, one leap day included."""
RANKING_LIMIT_DEFAULT: Final = 10
RANKING_LIMIT_MAX: Final = 100
ANALYTICS_ROLES: Final = frozenset({"analyst", "admin"})
MINUTES_PER_HOUR: Final = 60

KITCHENS = AnalyticsProjection.view("kitchens")
DAILY_REVENUE = AnalyticsProjection.view("daily_revenue")

# Column names are chosen from these fixed tables, never taken from the request.
_PERIOD_COLUMN: Final = {"day": "day", "week": "week_start", "month": "month_start"}
_RANKING_COLUMN: Final = {
    "revenue": "gmv_cents",
    "bookings": "total_bookings",
    "hours": "booked_minutes",
}


class KitchenStats(BaseModel):
    """One kitchen's bookings and money, all time."""

    kitchen_id: UUID
    host_id: UUID
    name: str
    city: str
    jurisdiction: str
    total_bookings: int
    pending_bookings: int
    confirmed_bookings: int
    completed_bookings: int
    cancelled_bookings: int
    declined_bookings: int
    expired_bookings: int
    booked_minutes: int
    """Length of the completed bookings."""
    booked_hours: float
    gmv_cents: int
    """Captured from customers: completions and cancellation fees."""
    host_revenue_cents: int
    platform_revenue_cents: int
    average_price_cents: int | None
    """Mean price of completed bookings (half up); ``None`` before the first."""
    occupancy: float | None
    """``booked_minutes / available_minutes``, 4 decimals; ``None`` before the first
    completed booking."""
    occupancy_first_day: date | None
    occupancy_last_day: date | None
    available_minutes: int | None


class RevenuePoint(BaseModel):
    period_start: date
    """The day, the Monday of the week, or the first of the month."""
    gmv_cents: int
    platform_revenue_cents: int


class RevenueSeries(BaseModel):
    """GMV and platform revenue per period, every period of the range included (zero
    when nothing was captured), oldest first. The range is of whole UTC days, both
    ends included; a period partly outside it counts only its days inside."""

    from_: date
    to: date
    granularity: Granularity
    city: str | None
    points: list[RevenuePoint]
    gmv_cents: int
    platform_revenue_cents: int


class RankedKitchen(BaseModel):
    rank: int
    kitchen_id: UUID
    name: str
    city: str
    metric: RankingMetric
    value: float
    """GMV in cents, bookings requested, or completed hours, as ``metric`` says."""
    gmv_cents: int
    total_bookings: int
    booked_hours: float


def _check_analyst(viewer: Viewer) -> None:
    if viewer.role not in ANALYTICS_ROLES:
        raise PermissionDenied("analytics are for analysts and admins")


def _hours(minutes: int) -> float:
    return minutes / MINUTES_PER_HOUR


class AnalyticsQueries:
    def __init__(self, database: ReadDatabase) -> None:
        self._database = database

    def _date(self, value: date) -> date | str:
        return value if self._database.dialect == "postgresql" else value.isoformat()

    def kitchen_stats(self, viewer: Viewer, kitchen_id: UUID) -> KitchenStats:
        """Analysts and admins: any kitchen; a host: their own (403 for another's);
        anyone else 403. An unknown kitchen is 404."""
        if viewer.role not in ANALYTICS_ROLES | {"host"}:
            raise PermissionDenied("kitchen statistics are for analysts, admins and its host")
        sees_all = viewer.role in ANALYTICS_ROLES
        with self._database.reading() as sql:
            row = sql.fetchone(
                "SELECT kitchen_id, host_id, name, city, jurisdiction, total_bookings, "
                "pending_bookings, confirmed_bookings, completed_bookings, "
                "cancelled_bookings, declined_bookings, expired_bookings, booked_minutes, "
                "gmv_cents, host_revenue_cents, platform_revenue_cents, average_price_cents, "
                "occupancy_first_day, occupancy_last_day, available_minutes "
                f"FROM {KITCHENS} WHERE kitchen_id = %s AND (%s OR host_id = %s)",
                (
                    uuid_parameter(self._database.dialect, kitchen_id),
                    sees_all,
                    uuid_parameter(self._database.dialect, viewer.user_id),
                ),
            )
            if row is None:
                self._raise_missing_kitchen(sql, kitchen_id)
        assert row is not None
        booked_minutes = int(row["booked_minutes"])
        available = row["available_minutes"]
        return KitchenStats(
            kitchen_id=uuid_from_row(row["kitchen_id"]),
            host_id=uuid_from_row(row["host_id"]),
            name=row["name"],
            city=row["city"],
            jurisdiction=row["jurisdiction"],
            total_bookings=int(row["total_bookings"]),
            pending_bookings=int(row["pending_bookings"]),
            confirmed_bookings=int(row["confirmed_bookings"]),
            completed_bookings=int(row["completed_bookings"]),
            cancelled_bookings=int(row["cancelled_bookings"]),
            declined_bookings=int(row["declined_bookings"]),
            expired_bookings=int(row["expired_bookings"]),
            booked_minutes=booked_minutes,
            booked_hours=_hours(booked_minutes),
            gmv_cents=int(row["gmv_cents"]),
            host_revenue_cents=int(row["host_revenue_cents"]),
            platform_revenue_cents=int(row["platform_revenue_cents"]),
            average_price_cents=_optional_int(row["average_price_cents"]),
            occupancy=None if not available else round(booked_minutes / int(available), 4),
            occupancy_first_day=_optional_date(row["occupancy_first_day"]),
            occupancy_last_day=_optional_date(row["occupancy_last_day"]),
            available_minutes=_optional_int(available),
        )

    def _raise_missing_kitchen(self, sql: Sql, kitchen_id: UUID) -> None:
        """The statistics query matched nothing: 404 if there is no such kitchen, 403
        if it is another host's."""
        exists = sql.fetchone(
            f"SELECT 1 AS found FROM {KITCHENS} WHERE kitchen_id = %s",
            (uuid_parameter(self._database.dialect, kitchen_id),),
        )
        if exists is None:
            raise NotFound(f"kitchen {kitchen_id} not found", code="kitchen_not_found")
        raise PermissionDenied("a host sees the statistics of their own kitchens only")

    def revenue(
        self,
        viewer: Viewer,
        from_: date,
        to: date,
        granularity: str = "day",
        city: str | None = None,
    ) -> RevenueSeries:
        """GMV and platform revenue from ``from_`` through ``to`` (UTC days, both
        included), per day, week (from Monday) or month, for one city (case-insensitive)
        or all. At most :data:`REVENUE_RANGE_DAYS_MAX` days apart."""
        _check_analyst(viewer)
        if granularity not in GRANULARITIES:
            raise InvalidRequest(
                f"granularity is one of {', '.join(GRANULARITIES)}", code="invalid_granularity"
            )
        from_, to = _as_day(from_), _as_day(to)
        if from_ > to:
            raise InvalidRequest("from must not be after to", code="invalid_range")
        if (to - from_).days > REVENUE_RANGE_DAYS_MAX:
            raise InvalidRequest(
                f"from and to are at most {REVENUE_RANGE_DAYS_MAX} days apart",
                code="invalid_range",
            )
        period = _PERIOD_COLUMN[granularity]
        city_clause = "" if city is None else " AND lower(city) = lower(%s)"
        params: list[Any] = [self._date(from_), self._date(to)]
        if city is not None:
            params.append(city.strip())
        with self._database.reading() as sql:
            rows = sql.fetchall(
                f"SELECT {period} AS period_start, SUM(gmv_cents) AS gmv_cents, "
                "SUM(platform_revenue_cents) AS platform_revenue_cents "
                f"FROM {DAILY_REVENUE} WHERE day >= %s AND day <= %s{city_clause} "
                f"GROUP BY {period} ORDER BY {period}",
                params,
            )
        found = {
            as_date(row["period_start"]): (
                int(row["gmv_cents"]),
                int(row["platform_revenue_cents"]),
            )
            for row in rows
        }
        points = [
            RevenuePoint(
                period_start=start,
                gmv_cents=found.get(start, (0, 0))[0],
                platform_revenue_cents=found.get(start, (0, 0))[1],
            )
            for start in _period_starts(from_, to, granularity)
        ]
        assert found.keys() <= {point.period_start for point in points}
        return RevenueSeries(
            from_=from_,
            to=to,
            granularity=granularity,
            city=city,
            points=points,
            gmv_cents=sum(point.gmv_cents for point in points),
            platform_revenue_cents=sum(point.platform_revenue_cents for point in points),
        )

    def top_kitchens(
        self, viewer: Viewer, metric: str = "revenue", limit: int = RANKING_LIMIT_DEFAULT
    ) -> list[RankedKitchen]:
        """Kitchens by GMV, bookings requested or completed hours, highest first (ties
        by kitchen id), at most ``limit`` (1–100)."""
        _check_analyst(viewer)
        if metric not in RANKING_METRICS:
            raise InvalidRequest(
                f"metric is one of {', '.join(RANKING_METRICS)}", code="invalid_metric"
            )
        if not 1 <= limit <= RANKING_LIMIT_MAX:
            raise InvalidRequest(
                f"limit is between 1 and {RANKING_LIMIT_MAX}", code="invalid_limit"
            )
        column = _RANKING_COLUMN[metric]
        with self._database.reading() as sql:
            rows = sql.fetchall(
                "SELECT kitchen_id, name, city, gmv_cents, total_bookings, booked_minutes "
                f"FROM {KITCHENS} ORDER BY {column} DESC, kitchen_id LIMIT %s",
                (limit,),
            )
        ranked = []
        for rank, row in enumerate(rows, start=1):
            booked_hours = _hours(int(row["booked_minutes"]))
            values = {
                "revenue": float(row["gmv_cents"]),
                "bookings": float(row["total_bookings"]),
                "hours": booked_hours,
            }
            ranked.append(
                RankedKitchen(
                    rank=rank,
                    kitchen_id=uuid_from_row(row["kitchen_id"]),
                    name=row["name"],
                    city=row["city"],
                    metric=metric,
                    value=values[metric],
                    gmv_cents=int(row["gmv_cents"]),
                    total_bookings=int(row["total_bookings"]),
                    booked_hours=booked_hours,
                )
            )
        return ranked


def _period_starts(from_: date, to: date, granularity: str) -> list[date]:
    """Every period that has a day in ``from_``..``to``, in order."""
    if granularity == "day":
        return [from_ + timedelta(days=n) for n in range((to - from_).days + 1)]
    if granularity == "week":
        first = week_start(from_)
        return [first + timedelta(weeks=n) for n in range((to - first).days // 7 + 1)]
    starts = []
    current = month_start(from_)
    while current <= to:
        starts.append(current)
        current = (current + timedelta(days=32)).replace(day=1)
    return starts


def _as_day(value: date) -> date:
    """A ``datetime`` given for a date counts as its UTC day."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidRequest("a time needs a UTC offset", code="naive_datetime")
        return value.astimezone(UTC).date()
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_date(value: date | str | None) -> date | None:
    return None if value is None else as_date(value)
