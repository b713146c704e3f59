"""Analytics queries: a kitchen's statistics, the revenue series, kitchen rankings, and
the occupancy of every kitchen over a range of days.

They read the ``analytics`` projection (see :mod:`projections.analytics` for what every
number means). Analysts and admins see everything; a host sees the statistics of their
own kitchens and nothing else here. Money is integer cents; ``queries.csv_format``
renders any list of these read models as CSV for ``Accept: text/csv``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal, get_args
from uuid import UUID

from pydantic import BaseModel

from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from projections.analytics import AnalyticsProjection, as_date, month_start, week_start
from projections.database import ReadDatabase, Sql, uuid_from_row, uuid_parameter
from queries.base import Page, PageRequest, Viewer

Granularity = Literal["day", "week", "month"]
RankingMetric = Literal["revenue", "bookings", "hours"]

GRANULARITIES: Final[tuple[str, ...]] = get_args(Granularity)
RANKING_METRICS: Final[tuple[str, ...]] = get_args(RankingMetric)
REVENUE_RANGE_DAYS_MAX: Final = 3 * 365 + 1
"""Three years, one leap day included."""
RANKING_LIMIT_DEFAULT: Final = 10
RANKING_LIMIT_MAX: Final = 100
CITIES_MAX: Final = 500
"""Cities offered to filter by: enough for a menu, bounded."""
ANALYTICS_ROLES: Final = frozenset({"analyst", "admin"})
MINUTES_PER_HOUR: Final = 60

KITCHENS = AnalyticsProjection.view("kitchens")
BOOKINGS = AnalyticsProjection.view("bookings")
DAILY_REVENUE = AnalyticsProjection.view("daily_revenue")

# Column names are chosen from these fixed tables, never taken from the request.
_PERIOD_COLUMN: Final = {"day": "day", "week": "week_start", "month": "month_start"}
_PERIOD_START: Final[dict[str, Callable[[date], date]]] = {
    "day": lambda day: day,
    "week": week_start,
    "month": month_start,
}
_RANKING_COLUMN: Final = {
    "revenue": "gmv_cents",
    "bookings": "total_bookings",
    "hours": "booked_minutes",
}
# A new granularity or metric without its column would fail at the first request.
assert _PERIOD_COLUMN.keys() == _PERIOD_START.keys() == set(GRANULARITIES)
assert _RANKING_COLUMN.keys() == set(RANKING_METRICS)


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
    completed booking, and for a jurisdiction the packaged rules do not know (no
    operating hours)."""
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
    jurisdiction: str | None
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


class KitchenOccupancy(BaseModel):
    """One kitchen's occupancy over a range of days: the minutes of its bookings
    completed on those days over the minutes it was open on them."""

    kitchen_id: UUID
    name: str
    city: str
    jurisdiction: str
    completed_bookings: int
    """Completed bookings that start on a day of the range (the kitchen's local day)."""
    booked_minutes: int
    booked_hours: float
    available_minutes: int | None
    """Every day of the range times the jurisdiction's operating minutes a day;
    ``None`` for a jurisdiction the packaged rules do not know."""
    occupancy: float | None
    """``booked_minutes / available_minutes``, 4 decimals (0 to 1); ``None`` when the
    available minutes are unknown."""


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
        jurisdiction: str | None = None,
    ) -> RevenueSeries:
        """GMV and platform revenue from ``from_`` through ``to`` (UTC days, both
        included), per day, week (from Monday) or month, for one city (case-insensitive)
        or all, and one jurisdiction (its code) or all. At most
        :data:`REVENUE_RANGE_DAYS_MAX` days apart."""
        _check_analyst(viewer)
        if granularity not in GRANULARITIES:
            raise InvalidRequest(
                f"granularity is one of {', '.join(GRANULARITIES)}", code="invalid_granularity"
            )
        from_, to = _checked_range(from_, to)
        # Matched without surrounding spaces, and echoed as matched.
        city = None if city is None else city.strip()
        jurisdiction = None if jurisdiction is None else jurisdiction.strip()
        if jurisdiction is None:
            found = self._revenue_by_period(from_, to, granularity, city)
        else:
            found = self._jurisdiction_revenue_by_period(from_, to, granularity, city, jurisdiction)
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
            jurisdiction=jurisdiction,
            points=points,
            gmv_cents=sum(point.gmv_cents for point in points),
            platform_revenue_cents=sum(point.platform_revenue_cents for point in points),
        )

    def _revenue_by_period(
        self, from_: date, to: date, granularity: str, city: str | None
    ) -> dict[date, tuple[int, int]]:
        """(GMV, platform revenue) by period start, from the daily series."""
        period = _PERIOD_COLUMN[granularity]
        city_clause = "" if city is None else " AND lower(city) = lower(%s)"
        params: list[Any] = [self._date(from_), self._date(to)]
        if city is not None:
            params.append(city)
        with self._database.reading() as sql:
            rows = sql.fetchall(
                f"SELECT {period} AS period_start, SUM(gmv_cents) AS gmv_cents, "
                "SUM(platform_revenue_cents) AS platform_revenue_cents "
                f"FROM {DAILY_REVENUE} WHERE day >= %s AND day <= %s{city_clause} "
                f"GROUP BY {period} ORDER BY {period}",
                params,
            )
        return {
            as_date(row["period_start"]): (
                int(row["gmv_cents"]),
                int(row["platform_revenue_cents"]),
            )
            for row in rows
        }

    def _jurisdiction_revenue_by_period(
        self, from_: date, to: date, granularity: str, city: str | None, jurisdiction: str
    ) -> dict[date, tuple[int, int]]:
        """(GMV, platform revenue) by period start of the kitchens of one jurisdiction.

        The daily series is by city only (a city's name is free text, and says nothing
        of its jurisdiction), so this sums the bookings' captures, which the daily rows
        are the sums of: the same capture day, the same city (the kitchen's at the
        capture), the same amounts. Days are grouped into periods here."""
        city_clause = "" if city is None else " AND lower(b.capture_city) = lower(%s)"
        params: list[Any] = [jurisdiction, self._date(from_), self._date(to)]
        if city is not None:
            params.append(city)
        with self._database.reading() as sql:
            rows = sql.fetchall(
                "SELECT b.captured_on AS day, SUM(b.captured_cents) AS gmv_cents, "
                "SUM(b.commission_cents) AS platform_revenue_cents "
                f"FROM {BOOKINGS} b JOIN {KITCHENS} k ON k.kitchen_id = b.kitchen_id "
                "WHERE k.jurisdiction = %s AND b.captured_on >= %s AND b.captured_on <= %s"
                f"{city_clause} GROUP BY b.captured_on",
                params,
            )
        period_start = _PERIOD_START[granularity]
        found: dict[date, tuple[int, int]] = {}
        for row in rows:
            start = period_start(as_date(row["day"]))
            gmv_cents, platform_revenue_cents = found.get(start, (0, 0))
            found[start] = (
                gmv_cents + int(row["gmv_cents"]),
                platform_revenue_cents + int(row["platform_revenue_cents"]),
            )
        return found

    def top_kitchens(
        self,
        viewer: Viewer,
        metric: str = "revenue",
        limit: int = RANKING_LIMIT_DEFAULT,
        city: str | None = None,
        jurisdiction: str | None = None,
    ) -> list[RankedKitchen]:
        """Kitchens by GMV, bookings requested or completed hours, highest first (ties
        by kitchen id), at most ``limit`` (1–100); only those in ``city`` (as they are
        now, case-insensitive) and ``jurisdiction`` when given."""
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
        where, params = _kitchen_filters(city, jurisdiction)
        with self._database.reading() as sql:
            rows = sql.fetchall(
                "SELECT kitchen_id, name, city, gmv_cents, total_bookings, booked_minutes "
                f"FROM {KITCHENS} k {where} ORDER BY {column} DESC, kitchen_id LIMIT %s",
                [*params, limit],
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

    def cities(self, viewer: Viewer) -> list[str]:
        """The kitchens' cities (as they are now), alphabetically, at most
        :data:`CITIES_MAX`: what a form suggests filtering by. (Jurisdictions are the
        rules' codes, which the service knows without a query.)"""
        _check_analyst(viewer)
        with self._database.reading() as sql:
            rows = sql.fetchall(
                f"SELECT DISTINCT city FROM {KITCHENS} ORDER BY city LIMIT %s", (CITIES_MAX,)
            )
        return [row["city"] for row in rows]

    def occupancy(
        self,
        viewer: Viewer,
        from_: date,
        to: date,
        *,
        city: str | None = None,
        jurisdiction: str | None = None,
        page: PageRequest | None = None,
    ) -> Page[KitchenOccupancy]:
        """Every kitchen's occupancy from ``from_`` through ``to`` (both included, each
        kitchen's local days, as its all-time occupancy counts them), highest first
        (then by name and id; unknown jurisdictions last), a page at a time; only those
        in ``city`` (as they are now, case-insensitive) and ``jurisdiction`` when given.
        At most :data:`REVENUE_RANGE_DAYS_MAX` days apart."""
        _check_analyst(viewer)
        page = page or PageRequest()
        from_, to = _checked_range(from_, to)
        days = (to - from_).days + 1
        # Operating minutes a day, per jurisdiction, from the rules the projection
        # computes all-time occupancy with: ranking by booked minutes over them is
        # ranking by occupancy (the days are the same for every kitchen).
        minutes_a_day = {
            code: AnalyticsProjection.available_minutes(code, from_, from_)
            for code in AnalyticsProjection.jurisdictions.codes()
        }
        known = [(code, minutes) for code, minutes in minutes_a_day.items() if minutes]
        booked = "COALESCE(SUM(b.minutes), 0)"
        if known:
            cases = " ".join("WHEN %s THEN %s" for _ in known)
            rank = f"COALESCE({booked} * 1.0 / CASE k.jurisdiction {cases} END, -1)"
        else:
            rank = "-1"
        rank_params = [value for pair in known for value in pair]
        where, filter_params = _kitchen_filters(city, jurisdiction)
        with self._database.reading() as sql:
            total = int(sql.scalar(f"SELECT count(*) FROM {KITCHENS} k {where}", filter_params))
            rows = sql.fetchall(
                "SELECT k.kitchen_id, k.name, k.city, k.jurisdiction, "
                f"COUNT(b.booking_id) AS completed_bookings, {booked} AS booked_minutes "
                f"FROM {KITCHENS} k LEFT JOIN {BOOKINGS} b ON b.kitchen_id = k.kitchen_id "
                "AND b.status = 'completed' AND b.local_day >= %s AND b.local_day <= %s "
                f"{where} GROUP BY k.kitchen_id, k.name, k.city, k.jurisdiction "
                f"ORDER BY {rank} DESC, k.name, k.kitchen_id LIMIT %s OFFSET %s",
                [
                    self._date(from_),
                    self._date(to),
                    *filter_params,
                    *rank_params,
                    page.limit,
                    page.offset,
                ],
            )
        items = []
        for row in rows:
            booked_minutes = int(row["booked_minutes"])
            per_day = minutes_a_day.get(row["jurisdiction"])
            available = None if not per_day else per_day * days
            items.append(
                KitchenOccupancy(
                    kitchen_id=uuid_from_row(row["kitchen_id"]),
                    name=row["name"],
                    city=row["city"],
                    jurisdiction=row["jurisdiction"],
                    completed_bookings=int(row["completed_bookings"]),
                    booked_minutes=booked_minutes,
                    booked_hours=_hours(booked_minutes),
                    available_minutes=available,
                    occupancy=None if available is None else round(booked_minutes / available, 4),
                )
            )
        return Page[KitchenOccupancy](
            items=items, total=total, limit=page.limit, offset=page.offset
        )


def _kitchen_filters(city: str | None, jurisdiction: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause (on kitchens as ``k``) and its parameters for a city
    (case-insensitive) and a jurisdiction (its code), each when given."""
    conditions: list[str] = []
    params: list[Any] = []
    if city is not None:
        conditions.append("lower(k.city) = lower(%s)")
        params.append(city.strip())
    if jurisdiction is not None:
        conditions.append("k.jurisdiction = %s")
        params.append(jurisdiction.strip())
    return (f"WHERE {' AND '.join(conditions)}" if conditions else ""), params


def _checked_range(from_: date, to: date) -> tuple[date, date]:
    """``from_`` and ``to`` as UTC days, in order and at most
    :data:`REVENUE_RANGE_DAYS_MAX` days apart."""
    from_, to = _as_day(from_), _as_day(to)
    if from_ > to:
        raise InvalidRequest("from must not be after to", code="invalid_range")
    if (to - from_).days > REVENUE_RANGE_DAYS_MAX:
        raise InvalidRequest(
            f"from and to are at most {REVENUE_RANGE_DAYS_MAX} days apart",
            code="invalid_range",
        )
    return from_, to


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
