"""Kitchen queries over HTTP, on each backend: the public search with every filter, sort
and page, availability against real bookings, one kitchen with its compliance and who
may see drafts, read-your-writes through the cache, and every refusal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from urllib.parse import urlencode
from uuid import uuid4

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from aggregates.kitchen import KITCHEN_STATUSES
from api.queries.kitchens.fast_reads import KitchenReadsMiddleware
from api.queries.kitchens.schemas import KitchenStatus
from api.queries.kitchens.search import KitchenSort
from queries.kitchens import SORTS
from tests.api.conftest import Api, User, assert_problem
from tests.api.reading import ids, read, read_ok
from tests.waiting import wait_until


def unique_city() -> str:
    return f"Testville {uuid4().hex[:10]}"


def test_the_routes_literals_are_the_domains() -> None:
    assert get_args(KitchenSort) == SORTS
    assert get_args(KitchenStatus) == KITCHEN_STATUSES


# --- search --------------------------------------------------------------------------


def test_search_filters_sorts_and_pages_bookable_kitchens(api: Api) -> None:
    host = api.register("host")
    city = unique_city()
    cheap = api.published_kitchen(
        host,
        city=city,
        name="Alpha Bakery",
        hourly_rate="30.00",
        capacity=4,
        amenities=["Oven"],
        description="Sourdough ovens and proofing racks",
    )
    middle = api.published_kitchen(
        host,
        city=city,
        name="Bravo Commissary",
        hourly_rate="55.50",
        capacity=12,
        amenities=["oven", "Walk-in Fridge"],
    )
    dear = api.published_kitchen(
        host,
        city=city,
        name="Charlie Kitchen",
        hourly_rate="120.00",
        capacity=30,
        amenities=["walk-in fridge"],
    )
    draft = api.draft_kitchen(host, city=city, name="Delta Draft")
    after = max(k["position"] for k in (cheap, middle, dear, draft))

    page = read_ok(api, "/kitchens", after=after, params={"city": city.upper()})
    assert ids(page) == [cheap["id"], middle["id"], dear["id"]]  # by name; no draft
    assert page["total"] == 3 and page["limit"] == 20 and page["offset"] == 0
    first = page["items"][0]
    assert first["hourly_rate"] == "30.00"
    assert first["status"] == "published"
    assert first["compliant_through"] == "2031-12-31"
    assert first["amenities"] == ["oven"]
    assert first["host_id"] == str(host.id)

    def search(**params: Any) -> list[str]:
        return ids(read_ok(api, "/kitchens", params={"city": city, **params}))

    assert search(min_rate="55.50") == [middle["id"], dear["id"]]
    assert search(max_rate="55.50") == [cheap["id"], middle["id"]]
    assert search(min_rate="31", max_rate="120") == [middle["id"], dear["id"]]
    assert search(capacity=12) == [middle["id"], dear["id"]]
    assert search(amenity="OVEN") == [cheap["id"], middle["id"]]
    assert search(amenity=["oven", "walk-in fridge"]) == [middle["id"]]
    assert search(q="sourdough") == [cheap["id"]]
    assert search(q="commissary fridge") == [middle["id"]]
    assert search(jurisdiction="los_angeles") == [cheap["id"], middle["id"], dear["id"]]
    assert search(jurisdiction="san_francisco") == []
    assert search(sort="rate_desc") == [dear["id"], middle["id"], cheap["id"]]
    assert search(sort="rate_asc") == [cheap["id"], middle["id"], dear["id"]]
    assert search(sort="newest") == [dear["id"], middle["id"], cheap["id"]]

    second = read_ok(api, "/kitchens", params={"city": city, "limit": 2, "offset": 2})
    assert ids(second) == [dear["id"]]
    assert (second["total"], second["limit"], second["offset"]) == (3, 2, 2)
    past_the_end = read_ok(api, "/kitchens", params={"city": city, "offset": 10})
    assert past_the_end["items"] == [] and past_the_end["total"] == 3


def test_search_leaves_out_kitchens_booked_in_the_window(api: Api) -> None:
    host = api.register("host")
    city = unique_city()
    booked = api.published_kitchen(host, city=city, name="Booked")
    free = api.published_kitchen(host, city=city, name="Free")
    customer = api.customer()
    window = api.window(days=3, hours=3)
    booking = api.ok(
        api.post("/bookings", customer, json={"kitchen_id": booked["id"], "guests": 2, **window}),
        201,
    )

    def available(start: str, end: str) -> list[str]:
        params = {"city": city, "available_from": start, "available_to": end}
        return ids(read_ok(api, "/kitchens", after=booking["position"], params=params))

    start, end = window["start_time"], window["end_time"]
    assert available(start, end) == [free["id"]]
    hour = timedelta(hours=1)
    starts = datetime.fromisoformat(start)
    ends = datetime.fromisoformat(end)
    # Touching the booking is not overlapping it.
    assert available(ends.isoformat(), (ends + hour).isoformat()) == [booked["id"], free["id"]]
    assert available((starts - hour).isoformat(), starts.isoformat()) == [
        booked["id"],
        free["id"],
    ]
    assert available((ends - hour).isoformat(), (ends + hour).isoformat()) == [free["id"]]
    # 04:00 in Los Angeles is outside its operating hours: nothing is bookable then.
    night = starts.replace(hour=12)
    assert available(night.isoformat(), (night + hour).isoformat()) == []
    # A date means 00:00 UTC (16:00 the day before in Los Angeles): open, and unbooked.
    day = (starts + timedelta(days=10)).date()
    four_hours_later = datetime(day.year, day.month, day.day, 4, tzinfo=UTC).isoformat()
    assert available(day.isoformat(), four_hours_later) == [booked["id"], free["id"]]

    # Once cancelled, the slot is free again.
    cancelled = api.ok(api.patch(f"/bookings/{booking['id']}/cancel", customer))
    params = {"city": city, "available_from": start, "available_to": end}
    again = read_ok(api, "/kitchens", after=cancelled["position"], params=params)
    assert ids(again) == [booked["id"], free["id"]]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "validation_error"),
        ({"limit": 101}, "validation_error"),
        ({"offset": -1}, "validation_error"),
        ({"sort": "price"}, "validation_error"),
        ({"min_rate": "cheap"}, "validation_error"),
        ({"min_rate": "1.234"}, "validation_error"),
        ({"max_rate": "-1"}, "validation_error"),
        ({"max_rate": "NaN"}, "validation_error"),
        ({"capacity": 0}, "validation_error"),
        ({"capacity": 51}, "validation_error"),
        ({"available_from": "tomorrow", "available_to": "2030-02-01"}, "validation_error"),
        (
            {"available_from": "2030-02-01T10:00:00", "available_to": "2030-02-01T12:00:00Z"},
            "validation_error",
        ),
        ({"available_from": "2030-02-30", "available_to": "2030-03-01"}, "validation_error"),
        (
            {"available_from": "9999-12-31T23:00:00-05:00", "available_to": "2030-03-01"},
            "validation_error",
        ),
        ({"q": "x" * 1001}, "validation_error"),
        ({"available_from": "2030-02-01T10:00:00Z"}, "invalid_window"),
        (
            {"available_from": "2030-02-01T12:00:00Z", "available_to": "2030-02-01T10:00:00Z"},
            "invalid_window",
        ),
        ({"min_rate": "60", "max_rate": "50"}, "invalid_rate_range"),
        ({"min_rate": "100000.01"}, "invalid_rate_range"),
        ({"jurisdiction": "atlantis"}, "unknown_jurisdiction"),
        ({"city": "x" * 101}, "invalid_city"),
        ({"q": " ".join(["word"] * 21)}, "invalid_query"),
        ({"amenity": ["a"] * 51}, "validation_error"),
        ({"city": "Los\x00Angeles"}, "validation_error"),
        ({"q": "oven\x00"}, "validation_error"),
        ({"amenity": ["oven", "\x00"]}, "validation_error"),
        ({"jurisdiction": "los_angeles\x00"}, "validation_error"),
    ],
)
def test_search_refuses_bad_filters_with_a_422_problem(
    api: Api, params: dict[str, Any], code: str
) -> None:
    body = assert_problem(api.get("/kitchens", params=params), 422, code)
    assert body["errors"][0]["loc"][0] == "query"


def test_a_kitchen_is_public_but_a_bad_token_sent_for_it_is_refused(api: Api) -> None:
    kitchen = api.published_kitchen(api.register("host"))
    response = api.get(
        f"/kitchens/{kitchen['id']}", headers={"Authorization": "Bearer not-a-token"}
    )
    assert_problem(response, 401, "invalid_token")


# --- one kitchen ---------------------------------------------------------------------


def test_a_published_kitchen_is_public_with_its_compliance(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host, hourly_rate="42.25")
    detail = read_ok(api, f"/kitchens/{kitchen['id']}", after=kitchen["position"])
    assert detail["id"] == kitchen["id"]
    assert detail["hourly_rate"] == "42.25"
    assert detail["status"] == "published"
    assert detail["description"] == "A clean commercial kitchen"
    assert detail["address"] == "1 Main St"
    compliance = detail["compliance"]
    assert compliance["compliant"] is True
    assert compliance["missing_kinds"] == [] and compliance["expired_kinds"] == []
    assert compliance["required_kinds"] == [
        "business_license",
        "fire_inspection",
        "health_permit",
        "liability_insurance",
    ]
    assert {c["status"] for c in compliance["certificates"]} == {"verified"}
    assert compliance["compliant_through"] == "2031-12-31"
    # The same answer for anyone signed in (and from the cache the second time).
    customer = api.register("customer")
    assert read_ok(api, f"/kitchens/{kitchen['id']}", customer) == detail


def test_a_draft_is_visible_to_its_host_and_admins_only(api: Api) -> None:
    host = api.register("host")
    draft = api.draft_kitchen(host)
    certificate = api.attach_certificate(host, draft["id"], "health_permit")
    path = f"/kitchens/{draft['id']}"
    after = certificate["position"]

    own = read_ok(api, path, host, after=after)
    assert own["status"] == "draft"
    compliance = own["compliance"]
    assert compliance["compliant"] is False
    # A certificate waiting for review covers nothing yet.
    assert compliance["missing_kinds"] == compliance["required_kinds"]
    assert compliance["certificates"][0]["status"] == "pending"
    assert read_ok(api, path, api.admin, after=after)["id"] == draft["id"]

    for stranger in (None, api.register("customer"), api.register("host")):
        assert_problem(read(api, path, stranger, after=after), 404, "kitchen_not_found")


def test_a_suspended_kitchen_leaves_search_and_public_view(api: Api) -> None:
    host = api.register("host")
    city = unique_city()
    kitchen = api.published_kitchen(host, city=city)
    path = f"/kitchens/{kitchen['id']}"
    assert read_ok(api, path, after=kitchen["position"])["status"] == "published"
    assert ids(read_ok(api, "/kitchens", params={"city": city})) == [kitchen["id"]]

    suspended = api.ok(
        api.post(f"/admin/kitchens/{kitchen['id']}/suspend", api.admin, json={"reason": "Pests"})
    )
    after = suspended["position"]
    assert_problem(read(api, path, after=after), 404, "kitchen_not_found")
    assert read_ok(api, "/kitchens", after=after, params={"city": city})["items"] == []
    own = read_ok(api, path, host, after=after)
    assert (own["status"], own["status_reason"]) == ("suspended", "Pests")


def test_an_edit_is_read_back_through_the_cache(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    path = f"/kitchens/{kitchen['id']}"
    assert read_ok(api, path, after=kitchen["position"])["hourly_rate"] == "50.00"
    edited = api.ok(api.patch(path, host, json={"hourly_rate": "65.00", "name": "Renamed"}))
    detail = read_ok(api, path, after=edited["position"])
    assert (detail["hourly_rate"], detail["name"]) == ("65.00", "Renamed")


def test_an_unknown_kitchen_is_404_and_a_malformed_id_422(api: Api) -> None:
    missing = api.get(f"/kitchens/{uuid4()}")
    assert_problem(missing, 404, "kitchen_not_found")
    # A problem answering a query says how far the read model had got, as success would.
    assert int(missing.headers["X-Prep-Position"]) >= 0
    body = assert_problem(api.get("/kitchens/not-a-uuid"), 422, "validation_error")
    assert body["errors"][0]["loc"] == ["path", "kitchen_id"]


def test_a_position_beyond_the_store_is_refused_at_once(api: Api) -> None:
    """Never waited for: no command answered it (a position within the store's head that
    the read model does not reach in time is a 503, see ``test_query_accounts``)."""
    head = api.services.runtime.app.position()
    for path in ("/kitchens", f"/kitchens/{uuid4()}"):
        response = api.get(path, headers={"X-Prep-Min-Position": str(head + 1000)})
        body = assert_problem(response, 422, "min_position_ahead_of_store")
        assert body["errors"][0]["loc"] == ["header", "X-Prep-Min-Position"]


def test_search_and_detail_answer_with_the_read_models_position(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    for path in ("/kitchens", f"/kitchens/{kitchen['id']}"):
        response = read(api, path, after=kitchen["position"])
        assert response.status_code == 200
        position = int(response.headers["X-Prep-Position"])
        assert kitchen["position"] <= position <= api.services.runtime.app.position()


# --- published pages, answered before routing ---------------------------------------


def answered_before_routing(api: Api, path: str, headers: list[tuple[bytes, bytes]]) -> Any:
    """What the kitchen reads middleware alone answers for ``GET path`` (``None``: it
    hands the request on to the routes)."""
    sent: list[Message] = []

    async def routes(scope: Scope, receive: Receive, send: Send) -> None:
        sent.append({"type": "routed"})

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    middleware = KitchenReadsMiddleware(routes, prefix="/api/v1")
    path, _, query = path.partition("?")
    scope = {
        "type": "http", "method": "GET", "path": "/api/v1" + path, "headers": headers,
        "query_string": query.encode(), "app": api.app,
    }  # fmt: skip
    asyncio.run(middleware(scope, receive, send))
    if sent == [{"type": "routed"}]:
        return None
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"], scope["route"].path_format


def test_a_published_page_is_answered_as_the_route_answers_it(api: Api) -> None:
    kitchen = api.published_kitchen(api.register("host"))
    path = f"/kitchens/{kitchen['id']}"
    routed = read(api, path, after=kitchen["position"])  # the route makes the page
    assert routed.status_code == 200
    answered = answered_before_routing(api, path, [])
    if api.services.kitchen_pages is None:
        # Where this process does not hear every change (SQLite), the route answers.
        assert api.settings.database_url.startswith("sqlite")
        assert answered is None
        return
    status, headers, body, route = answered
    assert (status, body, route) == (200, routed.content, "/api/v1/kitchens/{kitchen_id}")
    assert headers == {
        b"content-length": routed.headers["content-length"].encode(),
        b"content-type": routed.headers["content-type"].encode(),
        b"x-prep-position": headers[b"x-prep-position"],
    }
    assert int(headers[b"x-prep-position"]) >= int(routed.headers["X-Prep-Position"])
    # Through the whole application: the same page, with the request id and metrics.
    again = api.get(path, headers={"X-Request-ID": "page-again"})
    assert (again.status_code, again.content) == (200, routed.content)
    assert again.headers["X-Request-ID"] == "page-again"
    metrics = api.client.get("/metrics").text
    assert 'route="/api/v1/kitchens/{kitchen_id}",status="200"' in metrics


def test_what_a_published_page_cannot_settle_goes_to_the_route(api: Api) -> None:
    kitchen = api.published_kitchen(api.register("host"))
    path = f"/kitchens/{kitchen['id']}"
    assert read(api, path, after=kitchen["position"]).status_code == 200
    head = api.services.runtime.app.position()
    for headers in (
        [(b"authorization", b"Bearer not-a-token")],  # a token is checked, always
        [(b"x-prep-min-position", b"soon")],
        [(b"x-prep-min-position", b"-1")],
        [(b"x-prep-min-position", str(2**63).encode())],
        [(b"x-prep-min-position", str(head + 1000).encode())],  # not reached yet
        [(b"x-prep-min-position", b"1"), (b"x-prep-min-position", b"2")],
    ):
        assert answered_before_routing(api, path, headers) is None, headers
    spellings = (kitchen["id"].upper(), kitchen["id"].replace("-", ""), f"{{{kitchen['id']}}}")
    for other in (
        "/kitchens/not-a-uuid",
        f"/kitchens/{uuid4()}",
        *(f"/kitchens/{spelling}" for spelling in spellings),
    ):
        assert answered_before_routing(api, other, []) is None, other
    assert_problem(
        api.get(path, headers={"Authorization": "Bearer not-a-token"}), 401, "invalid_token"
    )
    assert_problem(api.get(path, headers={"X-Prep-Min-Position": "soon"}), 422, "validation_error")


def test_a_change_retires_the_published_page_at_once(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    path = f"/kitchens/{kitchen['id']}"
    assert read_ok(api, path, after=kitchen["position"])["name"] != "Renamed Page"
    edited = api.ok(api.patch(path, host, json={"name": "Renamed Page"}))
    # Waits for the read model, then answers from the route, never from the old page.
    assert read_ok(api, path, after=edited["position"])["name"] == "Renamed Page"
    pages = api.services.kitchen_pages
    if pages is not None:
        answered = answered_before_routing(api, path, [])
        assert answered is not None and orjson.loads(answered[2])["name"] == "Renamed Page"


# --- searches, answered from the search index before routing --------------------------


def indexed_answer(api: Api, query: str, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    """The middleware's answer to ``GET /kitchens?query`` once the process's search
    index holds (each try may start a build; builds pause after each other)."""
    return wait_until(
        lambda: answered_before_routing(api, f"/kitchens?{query}", headers or []),
        30,
        "the search index to answer",
    )


@dataclass
class SearchWorld:
    city: str
    kitchens: list[dict[str, Any]]
    window: dict[str, str]
    booking: dict[str, Any]
    customer: User


def search_world(api: Api) -> SearchWorld:
    """Kitchens in a city of their own, the second booked."""
    host = api.register("host")
    city = unique_city()
    kitchens = [
        api.published_kitchen(
            host, city=city, name=name, hourly_rate=rate, capacity=capacity, amenities=amenities
        )
        for name, rate, capacity, amenities in (
            ("Alpha", "30.00", 4, ["Oven"]),
            ("Bravo", "55.50", 12, ["oven", "hood"]),
            ("charlie", "55.50", 30, ["hood"]),
        )
    ]
    window = api.window(days=3, hours=3)
    customer = api.customer()
    booking = api.ok(
        api.post(
            "/bookings", customer, json={"kitchen_id": kitchens[1]["id"], "guests": 2, **window}
        ),
        201,
    )
    assert read(api, "/kitchens", after=booking["position"]).status_code == 200
    return SearchWorld(city, kitchens, window, booking, customer)


def test_a_search_is_answered_from_the_index_as_the_route_answers_it(api: Api) -> None:
    world = search_world(api)
    city, window = world.city, world.window
    end_of_day = window["end_time"][:10] + "T23:00:00-05:00"
    if api.services.search_index is None:
        # Where this process does not hear every change (SQLite), the route answers.
        assert api.settings.database_url.startswith("sqlite")
        assert answered_before_routing(api, f"/kitchens?{urlencode({'city': city})}", []) is None
        return
    customer = api.customer()
    for params in (
        {"city": city},
        {"city": city.upper(), "sort": "rate_desc", "limit": "2"},
        {"city": city, "sort": "rate_asc", "offset": "1"},
        {"city": city, "sort": "newest", "capacity": "5"},
        {"city": city, "min_rate": "55.5", "max_rate": "100"},
        {"city": city, "amenity": ["HOOD", "oven"]},
        {"city": city, "jurisdiction": "los_angeles", "max_rate": "30"},
        {"city": city, "available_from": window["start_time"], "available_to": window["end_time"]},
        {"city": city, "available_from": window["end_time"][:10], "available_to": end_of_day},
        {"city": city, "offset": "10"},
    ):
        query = urlencode(params, doseq=True)
        status, headers, body, route = indexed_answer(api, query)
        # With a token the middleware steps aside; the search route ignores who asks.
        routed = api.get(f"/kitchens?{query}", customer)
        assert (status, body, route) == (200, routed.content, "/api/v1/kitchens"), params
        assert headers == {
            b"content-length": routed.headers["content-length"].encode(),
            b"content-type": routed.headers["content-type"].encode(),
            b"x-prep-position": headers[b"x-prep-position"],
        }
        assert int(headers[b"x-prep-position"]) >= world.booking["position"]
    # Through the whole application: the same answer, with the request id and metrics.
    query = urlencode({"city": city})
    expected = indexed_answer(api, query)[2]
    again = api.get(f"/kitchens?{query}", headers={"X-Request-ID": "search-again"})
    assert (again.status_code, again.content) == (200, expected)
    assert again.headers["X-Request-ID"] == "search-again"
    assert 'route="/api/v1/kitchens",status="200"' in api.client.get("/metrics").text


def test_what_the_search_index_cannot_settle_goes_to_the_route(api: Api) -> None:
    world = search_world(api)
    if api.services.search_index is None:
        return
    plain = urlencode({"city": world.city})
    indexed_answer(api, plain)
    head = api.services.runtime.app.position()
    for headers in (
        [(b"authorization", b"Bearer not-a-token")],
        [(b"x-prep-min-position", b"soon")],
        [(b"x-prep-min-position", str(head + 1000).encode())],  # not reached yet
    ):
        assert answered_before_routing(api, f"/kitchens?{plain}", headers) is None, headers
    for query in (
        f"{plain}&q=oven",  # text search is SQL's
        f"{plain}&utm_source=mail",  # not a parameter of the route
        f"{plain}&city=Elsewhere",  # given twice
        f"{plain}&capacity=",  # blank
        f"{plain}&min_rate=1e2",
        f"{plain}&min_rate=05",
        f"{plain}&max_rate=1.234",
        f"{plain}&capacity=07",
        f"{plain}&capacity=51",
        f"{plain}&limit=0",
        f"{plain}&limit=101",
        f"{plain}&offset=-1",
        f"{plain}&sort=price",
        f"{plain}&jurisdiction=atlantis",
        f"{plain}&min_rate=60&max_rate=50",
        f"{plain}&available_from=2030-02-01T10:00:00z&available_to=2030-02-01T12:00:00Z",
        f"{plain}&available_from=2030-02-01T10:00:00+01:00&available_to=2030-02-02",
        f"{plain}&available_from=2030-02-01T10:00:00&available_to=2030-02-01T12:00:00Z",
        f"{plain}&available_from=2030-02-30&available_to=2030-03-01",
        f"{plain}&available_from=2030-02-01",
        f"{plain}&amenity=" + "&amenity=".join(["a"] * 51),
        f"{plain}&city=%00",
        f"{plain}&amenity=fridge\u00e9",  # not ASCII: left to the route's decoding
    ):
        assert answered_before_routing(api, f"/kitchens?{query}", []) is None, query
    assert api.get(f"/kitchens?{plain}&utm_source=mail").status_code == 200
    assert_problem(api.get(f"/kitchens?{plain}&capacity=51"), 422, "validation_error")
    assert_problem(api.get(f"/kitchens?{plain}&jurisdiction=atlantis"), 422, "unknown_jurisdiction")


def test_a_change_to_kitchens_retires_the_search_index_at_once(api: Api) -> None:
    world = search_world(api)
    if api.services.search_index is None:
        return
    window, kitchens = world.window, world.kitchens
    query = urlencode(
        {
            "city": world.city,
            "available_from": window["start_time"],
            "available_to": window["end_time"],
        }
    )
    found = orjson.loads(indexed_answer(api, query)[2])
    assert [k["id"] for k in found["items"]] == [kitchens[0]["id"], kitchens[2]["id"]]
    index = api.services.search_index
    builds, refreshes = index.builds, index.refreshes
    cancelled = api.ok(api.patch(f"/bookings/{world.booking['id']}/cancel", world.customer))
    after = [(b"x-prep-min-position", str(cancelled["position"]).encode())]
    # Once the read model has the cancellation, no answer comes from the index before it.
    assert read(api, "/kitchens", after=cancelled["position"]).status_code == 200
    found = orjson.loads(indexed_answer(api, query, after)[2])
    assert [k["id"] for k in found["items"]] == [k["id"] for k in kitchens]
    # Only the kitchen's bookings were read again, not the whole index.
    assert index.builds == builds and index.refreshes > refreshes
