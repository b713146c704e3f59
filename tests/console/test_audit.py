"""The audit trail and an aggregate's history in the console: filters, pages by
position, the timeline, the state at a version and what that version changed, and
every refusal as a page."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import pytest

from tests.api.conftest import Api, User
from tests.console.conftest import Console

READ_WAIT_S = 10.0
ROW = re.compile(r"<tr data-position=\"(\d+)\">(.*?)</tr>", re.DOTALL)


def audited(api: Api, position: int) -> None:
    """Wait until the audit projection has applied ``position``."""
    api.services.read_positions.wait_for("audit", position, READ_WAIT_S)


def text_of(html: str) -> str:
    """What a reader sees of ``html``: its text, without tags."""
    return re.sub(r"<[^>]+>", "", html)


def positions_in(html: str) -> list[int]:
    return [int(position) for position, _ in ROW.findall(html)]


def rows_in(html: str) -> list[str]:
    return [row for _, row in ROW.findall(html)]


def diff_row(html: str, field: str) -> tuple[str, list[str]]:
    """The class of the diff table's row of ``field`` and its cells' text."""
    table = html.split('id="diff-table"', 1)[1].split("</table>", 1)[0]
    found = re.search(
        rf'<tr class="([a-z-]+)" data-field="{re.escape(field)}">(.*?)</tr>', table, re.DOTALL
    )
    assert found is not None, (field, table[:3000])
    cells = [
        text_of(cell).strip()
        for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", found.group(2), re.DOTALL)
    ]
    return found.group(1), cells


def next_page_path(html: str) -> str | None:
    found = re.search(r'<a href="\?([^"]+)" rel="next">Next page</a>', html)
    return None if found is None else "/audit?" + found.group(1).replace("&amp;", "&")


def kitchen_with_edits(api: Api, host: User, edits: int, **fields: Any) -> tuple[str, int]:
    """A draft kitchen edited ``edits`` times: its id and the last position."""
    kitchen = api.draft_kitchen(host, **fields)
    position = int(kitchen["position"])
    for capacity in range(2, 2 + edits):
        edited = api.ok(api.patch(f"/kitchens/{kitchen['id']}", host, json={"capacity": capacity}))
        position = int(edited["position"])
    return str(kitchen["id"]), position


def cancelled_booking(api: Api) -> str:
    """A booking requested, confirmed by the host, then cancelled by the customer."""
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    customer = api.customer(top_up="1000.00")
    booking = api.ok(
        api.post(
            "/bookings",
            customer,
            json={"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=5)},
        ),
        201,
    )
    api.ok(api.post(f"/bookings/{booking['id']}/confirm", host))
    api.ok(api.patch(f"/bookings/{booking['id']}/cancel", customer, json={"reason": "Sick"}))
    return str(booking["id"])


# --- the audit trail -------------------------------------------------------------------


def test_the_audit_filters_narrow_the_trail(console: Console) -> None:
    api = console.api
    host = api.register("host")
    kitchen_id, position = kitchen_with_edits(api, host, 1)
    other_id, last = kitchen_with_edits(api, api.register("host"), 0)
    audited(api, max(position, last))
    admin = console.admin()

    everything = admin.page("/audit?limit=100")
    assert "Audit trail" in everything and ">Audit trail" in everything

    of_kitchen = admin.page(f"/audit?aggregate_id={kitchen_id}")
    rows = rows_in(of_kitchen)
    assert len(rows) == 2
    assert "Kitchen.KitchenCreated" in text_of(rows[0])
    assert "Kitchen.KitchenUpdated" in text_of(rows[1])
    assert f'href="/console/aggregates/{kitchen_id}"' in rows[0]
    assert f'href="/console/aggregates/{host.id}"' in rows[0]  # the actor's history
    assert "host" in rows[0]
    assert other_id not in of_kitchen.split("<tbody>", 1)[1]

    updated = admin.page(
        f"/audit?actor_id={host.id}&event_type=Kitchen.KitchenUpdated&aggregate_id="
        "&since=&until=&limit=20"
    )
    assert len(rows_in(updated)) == 1 and "Kitchen.KitchenUpdated" in text_of(updated)

    in_time = admin.page(f"/audit?aggregate_id={kitchen_id}&since=2020-01-01&until=2999-12-31")
    assert len(rows_in(in_time)) == 2
    naive_means_utc = admin.page(f"/audit?aggregate_id={kitchen_id}&until=2020-01-01T00:00")
    assert rows_in(naive_means_utc) == []
    assert "match these filters" in naive_means_utc


def test_each_row_says_which_request_and_idempotency_key_caused_it(console: Console) -> None:
    api = console.api
    host = api.register("host")
    request_id = uuid4().hex
    created = api.ok(
        api.post(
            "/kitchens",
            host,
            json={
                "name": "Keyed",
                "city": "Los Angeles",
                "jurisdiction": "los_angeles",
                "address": "2 Key St",
                "hourly_rate": "10.00",
                "capacity": 2,
            },
            headers={"X-Request-ID": request_id, "Idempotency-Key": "console-audit-key-1"},
        ),
        201,
    )
    audited(api, int(created["position"]))
    admin = console.admin()
    for html in (
        admin.page(f"/audit?aggregate_id={created['id']}&event_type=&after_position="),
        admin.page(f"/aggregates/{created['id']}"),
    ):
        assert f"<code>{request_id}</code>" in html
        assert "idempotency key</span> <code>console-audit-key-1</code>" in html


def test_the_audit_trail_pages_by_position(console: Console) -> None:
    api = console.api
    host = api.register("host")
    kitchen_id, position = kitchen_with_edits(api, host, 4)
    audited(api, position)
    admin = console.admin()

    whole = positions_in(admin.page(f"/audit?aggregate_id={kitchen_id}&limit=100"))
    assert len(whole) == 5 and whole == sorted(whole)

    seen: list[int] = []
    path: str | None = f"/audit?aggregate_id={kitchen_id}&limit=2"
    pages = 0
    while path is not None:
        html = admin.page(path)
        page = positions_in(html)
        assert len(page) <= 2
        if seen:
            assert f"after_position={seen[-1]}" in path
            assert 'rel="first">First page</a>' in html
        seen += page
        path = next_page_path(html)
        pages += 1
        assert pages <= 5
    assert seen == whole
    first = admin.page(f"/audit?aggregate_id={kitchen_id}&limit=2&after_position=")
    assert positions_in(first) == whole[:2]


# --- an aggregate's history ------------------------------------------------------------


def test_a_cancelled_bookings_history_shows_the_cancel_as_a_change_of_status(
    console: Console,
) -> None:
    booking_id = cancelled_booking(console.api)
    admin = console.admin()

    latest = admin.page(f"/aggregates/{booking_id}")
    assert '<caption id="timeline-caption">Timeline</caption>' in latest
    timeline = latest.split('id="timeline"', 1)[1].split("</table>", 1)[0]
    for event_type in (
        "Booking.BookingRequested",
        "Booking.BookingConfirmed",
        "Booking.BookingCancelled",
    ):
        assert event_type in text_of(timeline)
    versions = [int(version) for version in re.findall(r"data-version=\"(\d+)\"", timeline)]
    assert versions == list(range(1, len(versions) + 1))
    cancel_version = versions[-1]
    assert f'<a href="?version={cancel_version}"' in timeline
    assert f"Version {cancel_version}</a>" in timeline
    assert "customer" in timeline and "host" in timeline  # who did what

    shown = admin.page(f"/aggregates/{booking_id}?version={cancel_version}")
    assert f"State at version {cancel_version}" in shown
    assert f">Changes in version {cancel_version}</caption>" in shown
    kind, cells = diff_row(shown, "status")
    assert kind == "diff-changed"
    assert cells == ["status", "changed", "confirmed", "cancelled"]
    assert shown.count('data-field="status"') == 2  # the state's row and the diff's
    assert latest.split('id="diff-table"', 1)[1] == shown.split('id="diff-table"', 1)[1]

    confirmed = admin.page(f"/aggregates/{booking_id}?version={cancel_version - 1}")
    assert diff_row(confirmed, "status")[1][1:] == ["changed", "pending", "confirmed"]

    first = admin.page(f"/aggregates/{booking_id}?version=1")
    table = first.split('id="diff-table"', 1)[1].split("</table>", 1)[0]
    classes = re.findall(r'<tr class="([a-z-]+)" data-field=', table)
    assert classes and set(classes) == {"diff-added"}
    assert diff_row(first, "status")[1] == ["status", "added", "absent", "pending"]
    kitchen_link = re.search(r'data-field="kitchen_id">.*?</tr>', table, re.DOTALL)
    assert kitchen_link is not None and 'href="/console/aggregates/' in kitchen_link.group(0)

    as_of = admin.page(f"/aggregates/{booking_id}?as_of=2999-01-01")
    assert f"State at version {cancel_version}" in as_of


def test_the_find_form_goes_to_the_history_of_a_known_id(console: Console) -> None:
    api = console.api
    kitchen_id, _ = kitchen_with_edits(api, api.register("host"), 0)
    admin = console.admin()
    found = admin.get(f"/aggregates?id=+{kitchen_id.upper()}+")
    assert found.status_code == 303
    assert found.headers["location"] == f"/console/aggregates/{kitchen_id}"
    assert "Kitchen" in admin.follow(found)
    assert admin.get("/aggregates?id=not-an-id").status_code == 422
    assert admin.get("/aggregates?id=").status_code == 422
    unknown = admin.get(f"/aggregates?id={uuid4()}")
    assert unknown.status_code == 404 and "not found" in unknown.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/aggregates/not-an-id", 422),
        ("/aggregates/{unknown}", 404),
        ("/aggregates/{kitchen}?version=0", 422),
        ("/aggregates/{kitchen}?version=2", 422),
        ("/aggregates/{kitchen}?version=first", 422),
        ("/aggregates/{kitchen}?version=99999999999", 422),
        ("/aggregates/{kitchen}?as_of=2000-01-01", 404),
        ("/aggregates/{kitchen}?as_of=yesterday", 422),
        ("/aggregates/{kitchen}?version=1&as_of=2999-01-01", 422),
        ("/aggregates/{kitchen}?offset=-1", 422),
        ("/audit?after_position=100000000000000000000", 422),
        ("/audit?after_position=-1", 422),
        ("/audit?since=next+week", 422),
        ("/audit?since=2030-02-02&until=2030-02-01", 422),
        ("/audit?aggregate_id=k-1", 422),
        ("/audit?limit=0", 422),
        ("/audit?limit=101", 422),
        ("/audit?event_type=" + "x" * 201, 422),
        ("/audit?event_type=Kitchen.KitchenCreated%00", 422),
    ],
)
def test_bad_input_is_a_page_with_its_4xx(console: Console, path: str, status: int) -> None:
    api = console.api
    kitchen = api.draft_kitchen(api.register("host"))
    admin = console.admin()
    response = admin.get(path.format(unknown=uuid4(), kitchen=kitchen["id"]))
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    assert f"<dt>Status</dt><dd>{status}</dd>" in response.text  # the error page


def test_analysts_are_refused_the_audit_pages(console: Console) -> None:
    api = console.api
    kitchen_id, _ = kitchen_with_edits(api, api.register("host"), 0)
    analyst = console.analyst()
    for path in ("/audit", f"/aggregates/{kitchen_id}", f"/aggregates?id={kitchen_id}"):
        response = analyst.get(path)
        assert response.status_code == 403, (path, response.text[:500])
        assert kitchen_id not in response.text.replace(f"id={kitchen_id}", "")


def test_stored_text_is_escaped(console: Console) -> None:
    api = console.api
    name = "<script>alert('kitchen')</script>"
    kitchen_id, position = kitchen_with_edits(api, api.register("host"), 0, name=name)
    audited(api, position)
    admin = console.admin()
    pages = [
        admin.page(f"/audit?aggregate_id={kitchen_id}"),
        admin.page(f"/aggregates/{kitchen_id}"),
        admin.page(f"/aggregates/{kitchen_id}?version=1"),
    ]
    for html in pages:
        assert name not in html and "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;kitchen&#39;)&lt;/script&gt;" in pages[0]
    assert "&lt;script&gt;alert(&#39;kitchen&#39;)&lt;/script&gt;" in pages[2]


def test_an_erased_users_personal_fields_read_erased(console: Console) -> None:
    api = console.api
    user = api.register("customer")
    erased = api.ok(
        api.post(f"/admin/users/{user.id}/erase", api.admin, json={"reason": "Asked to be erased"})
    )
    admin = console.admin()
    first = admin.page(f"/aggregates/{user.id}?version=1")
    state = first.split('id="state-table"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'data-field="email">.*?erased', state, re.DOTALL)
    assert diff_row(first, "email")[1] == ["email", "added", "absent", "erased"]
    audited(api, int(erased["position"]))
    trail = admin.page(f"/audit?aggregate_id={user.id}")
    assert "erased</span>: " in trail and user.email not in trail
