"""The analytics pages in process, on each backend: the revenue table holds exactly what
``GET /api/v1/analytics/revenue`` answers for the same filters, its CSV is the API's,
its chart is XML with one bar per point and series; occupancy, top kitchens and one
kitchen's statistics; filters checked as the API checks them; who gets in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from uuid import uuid4
from xml.etree import ElementTree

import pytest
from starlette.requests import Request

from api.console.pages.analytics import OUTCOME_NAMES, outcomes, outcomes_chart
from api.console.rendering import environment
from api.queries.analytics import KitchenStatsOut
from queries.base import Viewer
from tests.api.conftest import User
from tests.api.reading import head, read, read_ok
from tests.console.conftest import Console

SVG = "{http://www.w3.org/2000/svg}"
READ_MODEL_WAIT_S = 10.0


@dataclass(frozen=True)
class Story:
    host: User
    kitchen: dict[str, Any]
    other_kitchen: dict[str, Any]
    city: str
    after: int


@pytest.fixture(scope="module")
def story(console: Console) -> Story:
    """In a city of its own: a Los Angeles kitchen at 60.00 an hour with a booking
    completed (2 h) and one cancelled by its host, and a San Francisco kitchen there
    (the same city name, another jurisdiction) with a booking completed (3 h)."""
    api = console.api
    host = api.register("host")
    city = f"Chartville {uuid4().hex[:8]}"
    kitchen = api.published_kitchen(
        host, name="Sunset <Commissary> & Co", city=city, hourly_rate="60.00", instant_book=True
    )
    other = api.published_kitchen(
        host,
        name="Bay Kitchen",
        city=city,
        jurisdiction="san_francisco",
        hourly_rate="40.00",
        instant_book=True,
    )
    customer = api.customer()

    def book(kitchen_id: str, days: int, hours: int) -> dict[str, Any]:
        body = {"kitchen_id": kitchen_id, "guests": 2, **api.window(days=days, hours=hours)}
        return api.ok(api.post("/bookings", customer, json=body), 201)

    completed = book(kitchen["id"], days=1, hours=2)
    other_completed = book(other["id"], days=1, hours=3)
    cancelled = book(kitchen["id"], days=2, hours=2)
    api.ok(api.patch(f"/bookings/{cancelled['id']}/cancel", host))
    api.clock.advance(timedelta(days=1, hours=4))  # past both first bookings' ends
    host = api.log_in(host.email)
    api.ok(api.post(f"/bookings/{completed['id']}/complete", host))
    api.ok(api.post(f"/bookings/{other_completed['id']}/complete", host))
    after = head(api)
    # A page read with no action's proof waits for nothing: the story must be there.
    api.services.read_positions.wait_for("analytics", after, READ_MODEL_WAIT_S)
    return Story(host=host, kitchen=kitchen, other_kitchen=other, city=city, after=after)


def capture_days() -> tuple[str, str]:
    """Captures are dated by the wall clock: a range around today."""
    today = datetime.now(UTC).date()
    return (today - timedelta(days=3)).isoformat(), (today + timedelta(days=1)).isoformat()


class _Cells(HTMLParser):
    """The ``data-*`` attributes of a table's rows and cells, by its id."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.inside = False
        self.rows: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "table" and found.get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr" and "data-period" in found:
            self.rows.append({"period": found["data-period"]})
        elif self.inside and tag == "tr" and "data-kitchen" in found:
            self.rows.append({"kitchen": found["data-kitchen"]})
        elif self.inside and tag == "td" and "data-field" in found and self.rows:
            self.rows[-1][found["data-field"]] = found["data-value"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False


def table_rows(html: str, table_id: str) -> list[dict[str, str]]:
    parser = _Cells(table_id)
    parser.feed(html)
    assert f'id="{table_id}"' in html
    return parser.rows


def svg_of(html: str, chart_id: str) -> ElementTree.Element:
    found = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', html, re.DOTALL)
    assert found is not None, f"no chart {chart_id}"
    return ElementTree.fromstring(found.group(0))


def bars_by_series(svg: ElementTree.Element) -> dict[str, int]:
    return {
        group.attrib["data-series"]: len(group.findall(f"{SVG}rect"))
        for group in svg.iter(f"{SVG}g")
        if group.attrib.get("class") == "bars"
    }


# --- revenue -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granularity", "places"),
    [
        ("day", {"city": "city"}),
        ("week", {"city": "city"}),
        ("month", {}),
        ("day", {"city": "city", "jurisdiction": "los_angeles"}),
        ("week", {"jurisdiction": "san_francisco"}),
    ],
)
def test_the_revenue_table_holds_what_the_api_answers(
    console: Console, story: Story, granularity: str, places: dict[str, str]
) -> None:
    first, last = capture_days()
    params = {"from": first, "to": last, "granularity": granularity}
    params |= {name: story.city if value == "city" else value for name, value in places.items()}
    api_series = read_ok(
        console.api, "/analytics/revenue", console.api.admin, after=story.after, params=params
    )
    session = console.analyst()
    html = session.page("/analytics/revenue", params=params)

    rows = table_rows(html, "revenue-table")
    assert rows == [
        {
            "period": point["period_start"],
            "gmv": point["gmv"],
            "platform_revenue": point["platform_revenue"],
        }
        for point in api_series["points"]
    ]
    assert f'data-total="gmv" data-value="{api_series["gmv"]}"' in html
    svg = svg_of(html, "revenue-chart")
    assert svg.attrib["role"] == "img"
    assert svg.find(f"{SVG}title") is not None and svg.find(f"{SVG}desc") is not None
    assert bars_by_series(svg) == {"0": len(rows), "1": len(rows)}
    assert "Download CSV" in html


def test_revenue_of_the_story_is_not_zero_and_splits_by_jurisdiction(
    console: Console, story: Story
) -> None:
    first, last = capture_days()
    base = {"from": first, "to": last, "city": story.city}
    session = console.analyst()

    def total(**more: str) -> str:
        rows = table_rows(session.page("/analytics/revenue", params=base | more), "revenue-table")
        cents = sum(int(row["gmv"].replace(".", "")) for row in rows)
        return f"{cents // 100}.{cents % 100:02d}"

    assert total() == "240.00"  # 120.00 in Los Angeles, 120.00 in San Francisco
    assert total(jurisdiction="los_angeles") == "120.00"
    assert total(jurisdiction="san_francisco") == "120.00"
    assert total(jurisdiction="nowhere") == "0.00"


def test_the_revenue_csv_is_the_apis(console: Console, story: Story) -> None:
    first, last = capture_days()
    for params in (
        {"from": first, "to": last, "city": story.city, "granularity": "week"},
        {"from": first, "to": last, "jurisdiction": "los_angeles"},
    ):
        from_api = read(
            console.api,
            "/analytics/revenue",
            console.api.admin,
            after=story.after,
            params=params,
            headers={"Accept": "text/csv"},
        )
        assert from_api.status_code == 200, from_api.text
        session = console.analyst()
        html = session.page("/analytics/revenue", params=params)
        link = re.search(r'href="(/console/analytics/revenue\.csv\?[^"]+)"[^>]*>Download CSV', html)
        assert link is not None
        download = session.get(link.group(1).removeprefix("/console").replace("&amp;", "&"))
        assert download.status_code == 200, download.text
        assert download.headers["content-type"] == "text/csv; charset=utf-8"
        assert "attachment" in download.headers["content-disposition"]
        assert download.text == from_api.text


def test_blank_filters_mean_every_city_and_the_last_thirty_days(console: Console) -> None:
    session = console.analyst()
    blank = session.page("/analytics/revenue?from=&to=&city=&jurisdiction=&granularity=day")
    default = session.page("/analytics/revenue")
    assert table_rows(blank, "revenue-table") == table_rows(default, "revenue-table")
    assert len(table_rows(default, "revenue-table")) == 30
    series = read_ok(console.api, "/analytics/revenue", console.api.admin)
    assert [row["period"] for row in table_rows(default, "revenue-table")] == [
        point["period_start"] for point in series["points"]
    ]


def test_the_form_offers_the_kitchens_cities_and_the_rules_jurisdictions(
    console: Console, story: Story
) -> None:
    catalog = console.api.services.runtime.jurisdictions
    session = console.analyst()
    html = session.page("/analytics/revenue", params={"jurisdiction": "atlantis"})
    assert f'<option value="{story.city}">' in html
    for code in catalog.codes():
        assert f'<option value="{code}">{catalog.get(code).name} ({code})</option>' in html
    assert '<option value="atlantis" selected>atlantis (not in the rules)</option>' in html


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"from": "2030-02-02", "to": "2030-02-01"}, 422, "invalid_range"),
        ({"from": "2020-01-01", "to": "2030-01-01"}, 422, "invalid_range"),
        ({"granularity": "year"}, 422, "validation_error"),
        ({"from": "yesterday"}, 422, "validation_error"),
        ({"city": "x" * 1001}, 422, "validation_error"),
        ({"jurisdiction": "los_angeles\x00"}, 422, "validation_error"),
    ],
)
@pytest.mark.parametrize("path", ["/analytics/revenue", "/analytics/revenue.csv"])
def test_bad_filters_are_error_pages(
    console: Console, path: str, params: dict[str, str], status: int, code: str
) -> None:
    response = console.analyst().get(path, params=params)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert code in response.text


# --- occupancy -------------------------------------------------------------------------


def test_occupancy_by_kitchen(console: Console, story: Story) -> None:
    day = console.api.clock.now.date()
    params = {
        "from": (day - timedelta(days=3)).isoformat(),
        "to": day.isoformat(),
        "city": story.city,
    }
    session = console.analyst()
    html = session.page("/analytics/occupancy", params=params)
    rows = {row["kitchen"]: row for row in table_rows(html, "occupancy-table")}
    assert set(rows) == {story.kitchen["id"], story.other_kitchen["id"]}
    # 4 days; Los Angeles is open 18 h a day, San Francisco 16 h.
    la, sf = rows[story.kitchen["id"]], rows[story.other_kitchen["id"]]
    assert (la["completed_bookings"], la["booked_hours"]) == ("1", "2.0")
    assert la["available_minutes"] == str(4 * 18 * 60)
    assert la["occupancy"] == str(round(120 / (4 * 18 * 60), 4))
    assert f'data-value="{la["occupancy"]}">2.78 %</td>' in html  # 0.0278, as charts say
    assert sf["occupancy"] == str(round(180 / (4 * 16 * 60), 4))
    assert list(rows) == [story.other_kitchen["id"], story.kitchen["id"]]  # busiest first
    assert bars_by_series(svg_of(html, "occupancy-chart")) == {"0": 2}
    assert "Sunset &lt;Commissary&gt; &amp; Co" in html
    assert f'href="/console/analytics/kitchens/{story.kitchen["id"]}"' in html

    only_sf = session.page(
        "/analytics/occupancy", params={**params, "jurisdiction": "san_francisco"}
    )
    assert [row["kitchen"] for row in table_rows(only_sf, "occupancy-table")] == [
        story.other_kitchen["id"]
    ]
    download = session.get("/analytics/occupancy.csv", params=params)
    assert download.status_code == 200
    lines = download.text.splitlines()
    assert lines[0].startswith("kitchen_id,name,city,jurisdiction,completed_bookings")
    assert len(lines) == 3


def test_occupancy_of_no_kitchens_says_so(console: Console, story: Story) -> None:
    session = console.analyst()
    nowhere = session.page("/analytics/occupancy", params={"city": f"Nowhere {uuid4().hex}"})
    past_the_end = session.page("/analytics/occupancy", params={"city": story.city, "offset": "50"})
    for html, says in (
        (nowhere, "no kitchens."),
        (past_the_end, "no kitchens on this page, of 2."),
    ):
        description = svg_of(html, "occupancy-chart").findtext(f"{SVG}desc")
        assert description is not None and description.endswith(says), description
        assert table_rows(html, "occupancy-table") == []


# --- top kitchens ----------------------------------------------------------------------


def test_top_kitchens_equal_the_apis_and_filter_by_place(console: Console, story: Story) -> None:
    session = console.analyst()
    for params in (
        {"metric": "revenue", "limit": "100"},
        {"metric": "hours", "limit": "5", "city": story.city},
        {"metric": "bookings", "limit": "10", "city": story.city, "jurisdiction": "los_angeles"},
    ):
        ranking = read_ok(
            console.api,
            "/analytics/top-kitchens",
            console.api.admin,
            after=story.after,
            params=params,
        )
        html = session.page("/analytics/top-kitchens", params=params)
        rows = table_rows(html, "top-kitchens-table")
        assert [row["kitchen"] for row in rows] == [item["kitchen_id"] for item in ranking["items"]]
        assert [row["revenue"] for row in rows] == [item["revenue"] for item in ranking["items"]]
        assert bars_by_series(svg_of(html, "top-kitchens-chart")) == {"0": len(rows)}
        from_api = read(
            console.api,
            "/analytics/top-kitchens",
            console.api.admin,
            params=params,
            headers={"Accept": "text/csv"},
        )
        assert session.get("/analytics/top-kitchens.csv", params=params).text == from_api.text
    in_city = read_ok(
        console.api,
        "/analytics/top-kitchens",
        console.api.admin,
        params={"metric": "hours", "city": story.city},
    )
    assert [item["kitchen_id"] for item in in_city["items"]] == [
        story.other_kitchen["id"],
        story.kitchen["id"],
    ]
    limited = console.analyst().get("/analytics/top-kitchens", params={"limit": "101"})
    assert limited.status_code == 422


def test_top_kitchens_read_no_days_and_carry_them_to_the_other_pages(console: Console) -> None:
    session = console.analyst()
    for days in ({"from": "yesterday"}, {"to": "2030-02-30"}, {"from": "x" * 5000}):
        response = session.get("/analytics/top-kitchens", params={**days, "metric": "hours"})
        assert response.status_code == 200, (days, response.text[:300])
        assert 'name="from"' not in response.text and 'name="to"' not in response.text
        assert "from=" not in response.text and "to=" not in response.text  # not carried
    html = session.page(
        "/analytics/top-kitchens",
        params={"from": "2030-01-01", "to": "2030-01-31", "city": "Springfield"},
    )
    query = "from=2030-01-01&amp;to=2030-01-31&amp;city=Springfield"
    assert f'href="/console/analytics/occupancy?{query}"' in html
    assert '<input type="hidden" name="from" value="2030-01-01">' in html
    assert "all time, highest first, in Springfield, every jurisdiction." in html


# --- one kitchen -----------------------------------------------------------------------


def test_one_kitchens_statistics(console: Console, story: Story) -> None:
    kitchen_id = story.kitchen["id"]
    stats = read_ok(
        console.api, f"/analytics/kitchens/{kitchen_id}/stats", console.api.admin, after=story.after
    )
    html = console.analyst().page(f"/analytics/kitchens/{kitchen_id}")
    assert f'data-field="revenue" data-value="{stats["revenue"]}"' in html
    assert f'data-field="platform_revenue" data-value="{stats["platform_revenue"]}"' in html
    assert 'data-field="completed_bookings">1<' in html
    assert 'data-field="cancelled_bookings">1<' in html
    assert bars_by_series(svg_of(html, "outcomes-chart")) == {"0": 6}
    assert f"/console/aggregates/{kitchen_id}" not in html  # analysts: no history

    as_admin = console.admin().page(f"/analytics/kitchens/{kitchen_id}")
    assert f'href="/console/aggregates/{kitchen_id}"' in as_admin

    download = console.analyst().get(f"/analytics/kitchens/{kitchen_id}/stats.csv")
    from_api = read(
        console.api,
        f"/analytics/kitchens/{kitchen_id}/stats",
        console.api.admin,
        headers={"Accept": "text/csv"},
    )
    assert download.text == from_api.text

    assert console.analyst().get(f"/analytics/kitchens/{uuid4()}").status_code == 404
    assert console.analyst().get("/analytics/kitchens/nope").status_code == 422


def kitchen_statistics(**changes: Any) -> KitchenStatsOut:
    """A kitchen's statistics with no booking, as the API answers them, then ``changes``."""
    return KitchenStatsOut.model_validate(
        {
            "kitchen_id": uuid4(),
            "host_id": uuid4(),
            "name": "Harbour Kitchen",
            "city": "Springfield",
            "jurisdiction": "los_angeles",
            **dict.fromkeys(("total_bookings", "booked_minutes", "booked_hours"), 0),
            **{f"{status}_bookings": 0 for status in OUTCOME_NAMES},
            "revenue": "0.00",
            "host_revenue": "0.00",
            "platform_revenue": "0.00",
            "average_price": None,
            "occupancy": None,
            "occupancy_first_day": None,
            "occupancy_last_day": None,
            "available_minutes": None,
            **changes,
        }
    )


@pytest.mark.parametrize(
    ("changes", "occupancy"),
    [
        ({}, "no completed booking yet"),
        (
            {"jurisdiction": "atlantis", "total_bookings": 1, "completed_bookings": 1},
            "unknown (no operating hours known for atlantis)",
        ),
        (
            {
                "total_bookings": 1,
                "completed_bookings": 1,
                "occupancy": 0.125,
                "available_minutes": 960,
                "occupancy_first_day": date(2030, 1, 7),
                "occupancy_last_day": date(2030, 1, 7),
            },
            "12.5 % of 16.00 open hours, 2030-01-07 to 2030-01-07",
        ),
    ],
)
def test_a_kitchens_occupancy_says_why_it_is_unknown(
    changes: dict[str, Any], occupancy: str
) -> None:
    stats = kitchen_statistics(**changes)
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": f"/console/analytics/kitchens/{stats.kitchen_id}",
            "query_string": b"",
            "headers": [],
        }
    )
    html = environment.get_template("analytics_kitchen.html").render(
        request=request,
        user=Viewer(user_id=uuid4(), role="analyst"),
        section="analytics",
        read=None,
        form_token_field="form_token",
        form_token="t",
        stats=stats,
        outcomes=outcomes(stats),
        chart=outcomes_chart(stats),
    )
    assert f'<dd data-field="occupancy">{occupancy}</dd>' in html


# --- who gets in -----------------------------------------------------------------------


PAGES = [
    "/analytics",
    "/analytics/revenue",
    "/analytics/revenue.csv",
    "/analytics/occupancy",
    "/analytics/occupancy.csv",
    "/analytics/top-kitchens",
    "/analytics/top-kitchens.csv",
]


@pytest.mark.parametrize("path", PAGES)
def test_analysts_and_admins_get_in_and_no_one_else(console: Console, path: str) -> None:
    for session in (console.analyst(), console.admin()):
        response = session.get(path)
        if path == "/analytics":
            assert response.status_code == 303, response.text[:300]
            assert response.headers["location"] == "/console/analytics/revenue"
        else:
            assert response.status_code == 200, (path, response.text[:300])
    anonymous = console.session().get(path)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/console/sign-in?")
    for role in ("customer", "host"):
        refused = console.session()
        assert refused.sign_in(console.api.register(role).email).status_code == 403
        assert refused.get(path).status_code == 303  # no session: sent to sign in


def test_the_overview_goes_to_revenue_with_its_filters(console: Console) -> None:
    response = console.analyst().get("/analytics?granularity=week")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/analytics/revenue?granularity=week"
    page = console.analyst().page("/analytics/revenue")
    assert 'aria-current="page">Revenue<' in page
    assert 'href="/console/analytics"' in page and "Analytics" in page
