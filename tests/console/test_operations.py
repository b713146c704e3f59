"""The operations pages: projections with their lag and rebuilds (live), the trial
balance and reconciliation, each saying what the API's admin route says."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
from starlette.requests import Request

from api.console.pages.operations import ProjectionRow, ProjectionsView, summary_of
from api.console.rendering import environment
from prep_es.services.reconciliation import Difference, Reconciliation
from projections.status import GenerationProgress, ProjectionFailure, ProjectionStatus
from tests.console.conftest import Console, ConsoleSession, form_token_in
from tests.waiting import wait_until

HTMX = {"HX-Request": "true"}
REBUILD_TIMEOUT_S = 60
CATCH_UP_TIMEOUT_S = 30
POLL_INTERVAL_S = 0.2

ROW = re.compile(r'<tr data-projection="([^"]+)">(.*?)</tr>', re.S)
FIELD = re.compile(r'data-field="([a-z_]+)" data-value="([^"]*)"')
ACCOUNT_ROW = re.compile(r'<tr data-account="([^"]+)">(.*?)</tr>', re.S)


def projection_rows(html: str) -> dict[str, dict[str, str]]:
    """Each row of the projections table, by projection: its cells' values."""
    return {name: dict(FIELD.findall(cells)) for name, cells in ROW.findall(html)}


def api_projections(console: Console) -> dict[str, dict[str, Any]]:
    api = console.api
    items = api.ok(api.get("/admin/projections", api.admin))["items"]
    return {item["name"]: item for item in items}


def as_shown(item: dict[str, Any]) -> dict[str, str]:
    """What the page's row says of an API item, value for value."""
    generation = item["generation"]
    return {
        "status": item["status"],
        "position": str(item["position"]),
        "head": str(item["head"]),
        "lag_events": str(item["lag_events"]),
        "lag_seconds": f"{item['lag_seconds']:.1f}",
        "generation": "" if generation is None else str(generation),
    }


def caught_up(console: Console) -> dict[str, dict[str, Any]]:
    """The API's projections once all are caught up, none rebuilding ({} until then)."""
    items = api_projections(console)
    if all(item["lag_events"] == 0 and not item["rebuilding"] for item in items.values()):
        return items
    return {}


def fragment(session: ConsoleSession, **params: str) -> httpx.Response:
    return session.get("/operations/projections", headers=HTMX, params=params)


# --- projections ---------------------------------------------------------------------


def test_the_page_lists_every_projection_with_the_apis_numbers(console: Console) -> None:
    admin = console.admin()
    expected = wait_until(lambda: caught_up(console), CATCH_UP_TIMEOUT_S, "projections caught up")
    page = admin.page("/operations")
    assert 'id="projections"' in page
    rows = projection_rows(page)
    assert set(rows) == set(expected)
    for name, item in expected.items():
        # Nothing writes meanwhile: the page and the API read the same positions.
        assert rows[name] == as_shown(item), name
        assert f'aria-label="Rebuild {name}"' in page
        assert f'action="/console/operations/projections/{name}/rebuild"' in page
    assert "All " in page and "projections are caught up." in page
    # The table, refreshed by htmx from the fragment route; a link for the rest. The
    # live region is the summary alone, not the table, whose lag changes at every poll.
    refreshed = re.search(r'<div id="projections-refreshed"[^>]*>', page)
    assert refreshed is not None
    for attribute in (
        'hx-get="/console/operations/projections"',
        'hx-trigger="every 2s"',
        'hx-include="#projections-shown"',
    ):
        assert attribute in refreshed.group(0)
    assert "aria-live" not in refreshed.group(0)
    live = re.search(r'<p id="projections-summary"[^>]*>([^<]*)</p>', page)
    assert live is not None and 'aria-live="polite"' in live.group(0)
    assert "projections are caught up." in live.group(1)
    assert page.count("aria-live") == 1
    assert '<a href="/console/operations">reload the page</a>' in page
    assert "<script>" not in page and "style=" not in page


def test_the_fragment_is_the_table_alone_and_says_no_change_while_nothing_changed(
    console: Console,
) -> None:
    admin = console.admin()
    wait_until(lambda: caught_up(console), CATCH_UP_TIMEOUT_S, "projections caught up")
    response = fragment(admin)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert '<table id="projections">' in response.text
    assert "<html" not in response.text and "<h1>" not in response.text
    shown = re.search(r'name="shown" value="([0-9a-f]{32})"', response.text)
    assert shown is not None
    # The browser showed nothing yet: the summary comes along, for the live region.
    assert '<p id="projections-summary" hx-swap-oob="innerHTML">' in response.text
    # Nothing changed since: the browser keeps what it shows (and a screen reader is
    # not read the summary again).
    unchanged = fragment(admin, shown=shown.group(1))
    assert unchanged.status_code == 204 and unchanged.text == ""
    # Only the table changed: the summary it shows is not sent again.
    table_changed = fragment(admin, shown="0" * 16 + shown.group(1)[16:])
    assert table_changed.status_code == 200
    assert '<table id="projections">' in table_changed.text
    assert "projections-summary" not in table_changed.text
    assert "hx-swap-oob" in fragment(admin, shown="0" * 32).text
    # Asked for as a page (no htmx), it is the page.
    as_page = admin.get("/operations/projections")
    assert as_page.status_code == 303
    assert as_page.headers["location"] == "/console/operations"


def test_a_rebuild_from_the_console_builds_a_new_generation_that_switches_in(
    console: Console,
) -> None:
    admin = console.admin()
    before = wait_until(lambda: caught_up(console), CATCH_UP_TIMEOUT_S, "projections caught up")
    generation_before = before["users"]["generation"]
    admin.page("/operations")
    response = admin.post("/operations/projections/users/rebuild")
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/console/operations?done=rebuild_started&proof=")
    page = admin.follow(response)
    assert "Rebuild started." in page
    # Building, or (a small read model) already switched in: either way a new one.
    users = api_projections(console)["users"]
    building = [rebuild["generation"] for rebuild in users["rebuilding"]]
    assert max([users["generation"], *building]) > generation_before

    def switched_in() -> dict[str, str]:
        row = projection_rows(fragment(admin).text)["users"]
        return row if int(row["generation"]) > generation_before else {}

    row = wait_until(
        switched_in,
        REBUILD_TIMEOUT_S,
        "the new generation of users switched in",
        check_interval_s_max=POLL_INTERVAL_S,
    )
    html = fragment(admin).text
    users_row = dict(ROW.findall(html))["users"]
    assert "None under way." in users_row
    assert "<progress" not in users_row
    assert row["status"] == "running"
    assert api_projections(console)["users"]["generation"] == int(row["generation"])


def test_a_rebuild_under_way_shows_its_progress_as_text_and_a_labelled_bar() -> None:
    # A rebuild's progress lasts a moment on a small store: the table is rendered here
    # from a status as ``projection_statuses`` gives one mid-rebuild.
    status = ProjectionStatus(
        name="bookings",
        code_version=3,
        generation=4,
        version=2,
        state="running",
        position=2000,
        head=2000,
        lag_events=0,
        lag_s=0.0,
        events_applied=2000,
        updated_at=datetime(2030, 1, 7, 17, 0, tzinfo=UTC),
        failure=None,
        building=[
            GenerationProgress(
                generation=5,
                version=3,
                state="running",
                position=1234,
                lag_events=766,
                events_applied=1234,
                progress=0.617,
                failure=None,
            )
        ],
    )
    failed = status.model_copy(
        update={
            "name": "kitchens",
            "state": "failed",
            "failure": ProjectionFailure(position=7, topic="Kitchen.Approved", error="boom"),
            "building": [],
        }
    )
    rows = (ProjectionRow.of(status), ProjectionRow.of(failed))
    view = ProjectionsView(rows, summary_of(rows), head=2000, lowest_position=2000)
    html = environment.get_template("operations_projections_table.html").render(
        view=view,
        fragment_path="/console/operations/projections",
        refresh_every_s=2,
        new_summary=True,
        form_token_field="form_token",
        form_token="t",
    )
    bookings = dict(ROW.findall(html))["bookings"]
    assert (
        '<label for="rebuild-bookings-5">Generation 5 building: position 1,234 of 2,000 '
        "(61.7 %)</label>" in bookings
    )
    assert '<progress id="rebuild-bookings-5" max="2000" value="1234">61.7 %</progress>' in (
        bookings
    )
    assert "the code is at version 3: rebuild to apply it" in bookings
    kitchens = dict(ROW.findall(html))["kitchens"]
    assert "Failed" in kitchens and "stopped at position 7" in kitchens and "boom" in kitchens
    assert "Failed: kitchens." in html and "Rebuilding: bookings (61.7 %)." in html


def test_a_rebuild_form_without_its_token_is_refused_and_starts_nothing(
    console: Console,
) -> None:
    admin = console.admin()
    before = wait_until(lambda: caught_up(console), CATCH_UP_TIMEOUT_S, "projections caught up")
    refused = admin.client.post("/console/operations/projections/kitchens/rebuild", data={})
    assert refused.status_code == 403
    assert "form_token_invalid" in refused.text
    after = api_projections(console)["kitchens"]
    assert after["generation"] == before["kitchens"]["generation"]
    assert after["rebuilding"] == []


def test_an_unknown_projection_is_a_404_page(console: Console) -> None:
    admin = console.admin()
    admin.page("/operations")
    response = admin.post("/operations/projections/nonesuch/rebuild")
    assert response.status_code == 404
    assert "projection_not_found" in response.text
    assert "<h1>" in response.text
    too_long = admin.post("/operations/projections/" + "x" * 101 + "/rebuild")
    assert too_long.status_code == 422


def test_analysts_are_refused_every_operations_page_and_action(console: Console) -> None:
    analyst = console.analyst()
    for path in (
        "/operations",
        "/operations/ledger",
        "/operations/reconciliation",
    ):
        response = analyst.get(path)
        assert response.status_code == 403, path
        assert "forbidden" in response.text
    assert fragment(analyst).status_code == 403
    # With the analyst's own form token (the refusal page's sign-out form has it).
    token = form_token_in(analyst.get("/operations").text)
    refused = analyst.client.post(
        "/console/operations/projections/users/rebuild", data={"form_token": token}
    )
    assert refused.status_code == 403
    assert "forbidden" in refused.text


def test_the_fragment_sends_an_expired_session_to_sign_in_as_a_whole_page(
    console: Console,
) -> None:
    anonymous = console.session()
    response = fragment(anonymous)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].startswith("/console/sign-in?")


# --- trial balance -----------------------------------------------------------------------


def test_the_trial_balance_sums_to_zero_and_equals_the_apis(console: Console) -> None:
    api = console.api
    api.customer("250.00")
    api.customer("80.50")
    head = {"X-Prep-Min-Position": str(api.services.runtime.app.position())}
    expected = api.ok(api.get("/admin/ledger/trial-balance?limit=50", api.admin, headers=head))
    assert expected["sum"] == "0.00" and expected["total"] >= 3
    admin = console.admin()
    page = admin.page("/operations/ledger")
    assert "<strong>Balanced:</strong>" in page and "NOT balanced" not in page
    assert re.search(r'data-field="sum" data-value="0.00"', page)
    shown = {
        account: dict(FIELD.findall(cells))["balance"]
        for account, cells in ACCOUNT_ROW.findall(page)
    }
    assert shown == {item["account_id"]: item["balance"] for item in expected["items"]}
    for item in expected["items"]:
        assert f'href="/console/aggregates/{item["account_id"]}"' in page
        if item["owner_id"]:
            assert f'href="/console/aggregates/{item["owner_id"]}"' in page
    assert admin.get("/operations/ledger?offset=-1").status_code == 422


# --- reconciliation ---------------------------------------------------------------------


def test_reconciliation_renders_what_the_api_reports(console: Console) -> None:
    api = console.api
    api.customer("42.00")
    api.settle_payments()
    expected = api.ok(api.get("/admin/payments/reconciliation", api.admin))
    admin = console.admin()
    page = admin.page("/operations/reconciliation")
    assert f"<dd>{expected['payments_checked']}</dd>" in page
    assert f"<dd>{expected['transfers_checked']}</dd>" in page
    assert '<table id="reconciliation-top-ups">' in page
    assert '<table id="reconciliation-payouts">' in page
    kinds = re.findall(r'<tr data-kind="([a-z_]+)">', page)
    assert sorted(kinds) == sorted(difference["kind"] for difference in expected["differences"])
    if not expected["differences"]:
        assert "the provider and the ledger agree." in page
    later = admin.page("/operations/reconciliation?since=2999-01-01")
    assert 'value="2999-01-01"' in later and "<dd>0</dd>" in later
    assert admin.page("/operations/reconciliation?since=").count("the beginning") == 1
    refused = admin.get("/operations/reconciliation?since=yesterday")
    assert refused.status_code == 422
    assert "validation_error" in refused.text


def test_a_reconciliation_difference_shows_both_sides_amounts_and_links() -> None:
    # The sandbox delivers its notifications in the application's own thread, so a
    # difference cannot be held in place there: the page is rendered here from one as
    # ``reconcile`` reports it.
    top_up_id = uuid4()
    difference = Difference(
        kind="payment_not_credited",
        subject="top_up",
        id=top_up_id,
        reference="pi_sandbox_1",
        ledger_cents=None,
        provider_cents=4200,
        detail="the provider confirmed the payment, the ledger never credited it",
    )
    result = Reconciliation(
        provider="sandbox",
        test_mode=True,
        since=None,
        payments_checked=1,
        transfers_checked=0,
        differences=[difference],
    )
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/console/operations/reconciliation",
            "query_string": b"",
            "headers": [],
            "scheme": "http",
            "server": ("console.test", 80),
        }
    )
    html = environment.get_template("operations_reconciliation.html").render(
        request=request,
        user=None,
        section="operations",
        read=None,
        form_token_field="form_token",
        form_token="",
        result=result,
        since_date="",
        top_ups=[difference],
        payouts=[],
    )
    assert "<strong>1 difference</strong> between the provider and the ledger." in html
    top_ups = html.split('<table id="reconciliation-top-ups">')[1].split("</table>")[0]
    assert '<tr data-kind="payment_not_credited">' in top_ups
    assert "<td>Payment not credited</td>" in top_ups
    assert f'href="/console/aggregates/{top_up_id}"' in top_ups
    assert 'data-field="provider_amount" data-value="42.00">42.00<' in top_ups
    assert 'data-field="ledger_amount" data-value="">—<' in top_ups
    payouts = html.split('<table id="reconciliation-payouts">')[1].split("</table>")[0]
    assert "No differences: every transfer the provider paid is posted" in payouts
