"""Analytics over HTTP, on each backend: a kitchen's statistics after bookings end every
way, the revenue series by day, week and month, the rankings — as JSON and as CSV — who
may ask, and every refusal."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from uuid import uuid4

import pytest

from api.queries.analytics import (
    KitchenStatsOut,
    RankedKitchenOut,
    RevenuePointOut,
    prefers_csv,
)
from queries.analytics import GRANULARITIES, RANKING_METRICS, Granularity, RankingMetric
from tests.api.conftest import Api, User, assert_problem
from tests.api.reading import head, read, read_ok


@dataclass(frozen=True)
class Story:
    host: User
    kitchen: dict[str, Any]
    city: str
    after: int


@pytest.fixture(scope="module")
def story(api: Api) -> Story:
    """In a city of its own: a kitchen at 60.00 an hour with one booking completed (2 h),
    one cancelled by its host and one pending."""
    host = api.register("host")
    city = f"Statsville {uuid4().hex[:8]}"
    kitchen = api.published_kitchen(host, city=city, hourly_rate="60.00", instant_book=True)
    customer = api.customer()

    def book(days: int) -> dict[str, Any]:
        body = {"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=days, hours=2)}
        return api.ok(api.post("/bookings", customer, json=body), 201)

    completed = book(days=1)
    cancelled = book(days=2)
    book(days=9)
    api.ok(api.patch(f"/bookings/{cancelled['id']}/cancel", host))
    api.clock.advance(timedelta(days=1, hours=3))  # past the first booking's end
    api.ok(api.post(f"/bookings/{completed['id']}/complete", host))
    return Story(host=host, kitchen=kitchen, city=city, after=head(api))


def test_the_routes_literals_are_the_queries() -> None:
    assert get_args(Granularity) == GRANULARITIES
    assert get_args(RankingMetric) == RANKING_METRICS


# --- kitchen statistics --------------------------------------------------------------


def test_a_kitchens_statistics(api: Api, story: Story) -> None:
    path = f"/analytics/kitchens/{story.kitchen['id']}/stats"
    stats = read_ok(api, path, api.user_with_role("analyst"), after=story.after)
    assert stats["kitchen_id"] == story.kitchen["id"]
    assert (stats["city"], stats["jurisdiction"]) == (story.city, "los_angeles")
    assert (
        stats["total_bookings"],
        stats["completed_bookings"],
        stats["cancelled_bookings"],
        stats["confirmed_bookings"],
        stats["pending_bookings"],
    ) == (3, 1, 1, 1, 0)
    assert (stats["booked_minutes"], stats["booked_hours"]) == (120, 2.0)
    assert (stats["revenue"], stats["host_revenue"], stats["platform_revenue"]) == (
        "120.00",
        "108.00",
        "12.00",
    )
    assert stats["average_price"] == "120.00"
    # One day of Los Angeles operating hours (05:00–23:00): 120 of 1080 minutes.
    assert stats["available_minutes"] == 1080
    assert stats["occupancy"] == round(120 / 1080, 4)
    assert stats["occupancy_first_day"] == stats["occupancy_last_day"]

    # Its host and admins see the same.
    assert read_ok(api, path, story.host) == stats
    assert read_ok(api, path, api.admin) == stats


def test_a_kitchen_without_bookings_has_no_averages_yet(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    stats = read_ok(
        api, f"/analytics/kitchens/{kitchen['id']}/stats", host, after=kitchen["position"]
    )
    assert stats["total_bookings"] == 0 and stats["revenue"] == "0.00"
    assert stats["average_price"] is None and stats["occupancy"] is None


def test_statistics_as_csv(api: Api, story: Story) -> None:
    path = f"/analytics/kitchens/{story.kitchen['id']}/stats"
    response = read(api, path, story.host, after=story.after, headers={"Accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert int(response.headers["X-Prep-Position"]) >= story.after
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(KitchenStatsOut.model_fields)
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert (row["kitchen_id"], row["revenue"], row["completed_bookings"]) == (
        story.kitchen["id"],
        "120.00",
        "1",
    )
    assert response.text.endswith("\r\n")


@pytest.mark.parametrize("role", ["customer", "other_host", "anonymous"])
def test_statistics_are_refused_to_others(api: Api, story: Story, role: str) -> None:
    path = f"/analytics/kitchens/{story.kitchen['id']}/stats"
    if role == "anonymous":
        assert_problem(api.get(path), 401, "not_authenticated")
        return
    user = api.register("host" if role == "other_host" else "customer")
    assert_problem(read(api, path, user, after=story.after), 403, "forbidden")


def test_statistics_of_an_unknown_kitchen_are_404(api: Api) -> None:
    path = f"/analytics/kitchens/{uuid4()}/stats"
    assert_problem(api.get(path, api.user_with_role("analyst")), 404, "kitchen_not_found")
    assert_problem(api.get(path, api.register("host")), 404, "kitchen_not_found")
    bad = api.get("/analytics/kitchens/nope/stats", api.admin)
    assert_problem(bad, 422, "validation_error")


# --- revenue -------------------------------------------------------------------------


def capture_days() -> tuple[str, str]:
    """Captures are dated by when they were recorded (the wall clock): a range around
    today, one day either side."""
    today = datetime.now(UTC).date()
    return (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()


def test_the_revenue_series_by_day_week_and_month(api: Api, story: Story) -> None:
    analyst = api.user_with_role("analyst")
    first, last = capture_days()
    params = {"from": first, "to": last, "city": story.city.upper()}
    daily = read_ok(api, "/analytics/revenue", analyst, after=story.after, params=params)
    assert (daily["from"], daily["to"], daily["granularity"]) == (first, last, "day")
    assert daily["city"] == story.city.upper()
    assert [p["period_start"] for p in daily["points"]] == [
        (datetime.fromisoformat(first) + timedelta(days=n)).date().isoformat() for n in range(3)
    ]
    assert (daily["gmv"], daily["platform_revenue"]) == ("120.00", "12.00")
    assert sorted(p["gmv"] for p in daily["points"]) == ["0.00", "0.00", "120.00"]

    for granularity in ("week", "month"):
        series = read_ok(
            api, "/analytics/revenue", analyst, params={**params, "granularity": granularity}
        )
        assert series["granularity"] == granularity
        assert (series["gmv"], series["platform_revenue"]) == ("120.00", "12.00")
        assert 1 <= len(series["points"]) <= 2

    elsewhere = read_ok(
        api, "/analytics/revenue", api.admin, params={**params, "city": "Nowhere City"}
    )
    assert elsewhere["gmv"] == "0.00"
    everywhere = read_ok(api, "/analytics/revenue", api.admin, params={"from": first, "to": last})
    assert everywhere["city"] is None
    assert int(everywhere["gmv"].replace(".", "")) >= 12000


def test_the_revenue_series_of_a_jurisdiction(api: Api, story: Story) -> None:
    first, last = capture_days()
    params = {"from": first, "to": last, "city": story.city}
    analyst = api.user_with_role("analyst")
    city = read_ok(api, "/analytics/revenue", analyst, after=story.after, params=params)
    assert city["jurisdiction"] is None
    ours = read_ok(
        api, "/analytics/revenue", analyst, params={**params, "jurisdiction": "los_angeles"}
    )
    assert ours["jurisdiction"] == "los_angeles"
    assert ours["points"] == city["points"]
    assert (ours["gmv"], ours["platform_revenue"]) == ("120.00", "12.00")
    elsewhere = read_ok(
        api, "/analytics/revenue", analyst, params={**params, "jurisdiction": "san_francisco"}
    )
    assert elsewhere["gmv"] == "0.00" and len(elsewhere["points"]) == 3
    everywhere = read_ok(
        api,
        "/analytics/revenue",
        analyst,
        params={"from": first, "to": last, "jurisdiction": "los_angeles", "granularity": "week"},
    )
    assert int(everywhere["gmv"].replace(".", "")) >= 12000
    response = read(
        api,
        "/analytics/revenue",
        analyst,
        params={**params, "jurisdiction": "los_angeles"},
        headers={"Accept": "text/csv"},
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(row["gmv"] for row in rows) == ["0.00", "0.00", "120.00"]


def test_revenue_defaults_to_the_last_thirty_days(api: Api) -> None:
    series = read_ok(api, "/analytics/revenue", api.admin)
    today = api.clock.now.date()
    assert series["to"] == today.isoformat()
    assert series["from"] == (today - timedelta(days=29)).isoformat()
    assert len(series["points"]) == 30


def test_revenue_as_csv(api: Api, story: Story) -> None:
    first, last = capture_days()
    response = read(
        api,
        "/analytics/revenue",
        api.admin,
        after=story.after,
        params={"from": first, "to": last, "city": story.city},
        headers={"Accept": "text/csv, application/json;q=0.5"},
    )
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(RevenuePointOut.model_fields)
    assert len(rows) == 3
    assert sorted(row["gmv"] for row in rows) == ["0.00", "0.00", "120.00"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"granularity": "year"}, "validation_error"),
        ({"from": "2030-02-02", "to": "2030-02-01"}, "invalid_range"),
        ({"from": "2020-01-01", "to": "2030-01-01"}, "invalid_range"),
        ({"from": "2030-01-01T00:00:00", "to": "2030-01-02"}, "validation_error"),
        ({"from": "yesterday"}, "validation_error"),
        ({"to": "1969-12-31"}, "validation_error"),
        ({"city": "x" * 1001}, "validation_error"),
        ({"city": "Los Angeles\x00"}, "validation_error"),
        ({"jurisdiction": "x" * 1001}, "validation_error"),
        ({"jurisdiction": "los_angeles\x00"}, "validation_error"),
    ],
)
def test_bad_revenue_parameters_are_422(api: Api, params: dict[str, Any], code: str) -> None:
    assert_problem(api.get("/analytics/revenue", api.admin, params=params), 422, code)


# --- rankings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "key"),
    [("revenue", "revenue"), ("bookings", "total_bookings"), ("hours", "booked_hours")],
)
def test_top_kitchens_by_each_metric(api: Api, story: Story, metric: str, key: str) -> None:
    ranking = read_ok(
        api,
        "/analytics/top-kitchens",
        api.admin,
        after=story.after,
        params={"metric": metric, "limit": 100},
    )
    assert ranking["metric"] == metric
    items = ranking["items"]
    assert [item["rank"] for item in items] == list(range(1, len(items) + 1))
    values = [float(item[key]) for item in items]
    assert values == sorted(values, reverse=True)
    ours = next(item for item in items if item["kitchen_id"] == story.kitchen["id"])
    assert (ours["revenue"], ours["total_bookings"], ours["booked_hours"]) == ("120.00", 3, 2.0)

    top = read_ok(api, "/analytics/top-kitchens", api.admin, params={"metric": metric})
    assert top["items"] == items[:10]
    one = read_ok(api, "/analytics/top-kitchens", api.admin, params={"metric": metric, "limit": 1})
    assert one["items"] == items[:1]


def test_top_kitchens_of_a_city_and_jurisdiction(api: Api, story: Story) -> None:
    def ranked(**params: str) -> list[str]:
        ranking = read_ok(
            api, "/analytics/top-kitchens", api.admin, after=story.after, params=params
        )
        return [item["kitchen_id"] for item in ranking["items"]]

    assert ranked(city=story.city.lower()) == [story.kitchen["id"]]
    assert ranked(city=story.city, jurisdiction="los_angeles") == [story.kitchen["id"]]
    assert ranked(city=story.city, jurisdiction="san_francisco") == []
    assert story.kitchen["id"] in ranked(jurisdiction="los_angeles", limit="100")


def test_top_kitchens_as_csv(api: Api, story: Story) -> None:
    response = read(
        api,
        "/analytics/top-kitchens",
        api.user_with_role("analyst"),
        after=story.after,
        params={"limit": 100},
        headers={"Accept": "text/csv"},
    )
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(RankedKitchenOut.model_fields)
    assert story.kitchen["id"] in [row["kitchen_id"] for row in rows]


@pytest.mark.parametrize(
    "params",
    [
        {"metric": "likes"},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"city": "x" * 1001},
        {"jurisdiction": "los_angeles\x00"},
    ],
)
def test_bad_ranking_parameters_are_422(api: Api, params: dict[str, Any]) -> None:
    response = api.get("/analytics/top-kitchens", api.admin, params=params)
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize("path", ["/analytics/revenue", "/analytics/top-kitchens"])
def test_revenue_and_rankings_are_for_analysts_and_admins(api: Api, path: str) -> None:
    assert_problem(api.get(path), 401, "not_authenticated")
    for role in ("customer", "host"):
        assert_problem(api.get(path, api.register(role)), 403, "forbidden")


# --- content negotiation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        (None, False),
        ("", False),
        ("application/json", False),
        ("*/*", False),
        ("text/csv", True),
        ("text/*", True),
        ("TEXT/CSV; charset=utf-8", True),
        ("text/csv, application/json", True),
        ("application/json, text/csv", False),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0.4, */*;q=0.5", False),
        ("text/csv;q=0", False),
        ("text/csv;q=abc", False),
        ("text/csv;q=nan", False),
        ("text/html", False),
        (",,;;=", False),
    ],
)
def test_csv_is_answered_when_preferred(accept: str | None, csv_wanted: bool) -> None:
    assert prefers_csv(accept) is csv_wanted
