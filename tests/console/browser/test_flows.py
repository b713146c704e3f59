"""What admins and analysts do in the console, in a real browser on each backend: an
admin approves a kitchen, rejects a certificate with a reason, reads what a booking's
cancel changed and watches the projections; an analyst's revenue table holds the API's
numbers; a customer is refused; a form without its token is refused; signing out ends
the session."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, expect

from tests.console.browser.conftest import new_context, posted, sign_in
from tests.console.browser.world import (
    ADMIN_EMAIL,
    CERTIFICATE_TO_REJECT,
    CUSTOMER_EMAIL,
    KITCHEN_LEFT_PENDING,
    KITCHEN_TO_APPROVE,
    ConsoleWorld,
)

SESSION_COOKIE = "prep_console_session"
SIGN_IN_URL = re.compile(r"/console/sign-in(\?|$)")
POSITION = re.compile(r"Event store position (\d+)\.")


def session_cookie(context: BrowserContext) -> dict[str, Any] | None:
    return next(
        (dict(cookie) for cookie in context.cookies() if cookie["name"] == SESSION_COOKIE), None
    )


def open_page(page: Page, path: str) -> None:
    """``page`` at ``path``, which must answer 200 (a missing page fails here, at once)."""
    response = page.goto(path)
    assert response is not None and response.status == 200, (path, response and response.status)


def notice_position(page: Page, message: str) -> int:
    """The event store position the page's notice gives for ``message``'s action."""
    notice = page.get_by_role("status").filter(has_text=message)
    expect(notice).to_contain_text(POSITION)
    found = POSITION.search(notice.inner_text())
    assert found is not None
    return int(found.group(1))


# --- an admin --------------------------------------------------------------------------


def test_an_admin_signs_in_and_approves_a_kitchen_from_the_queue(
    world: ConsoleWorld, page: Page
) -> None:
    sign_in(page, ADMIN_EMAIL)
    expect(page).to_have_url(re.compile(r"/console/$"))
    open_page(page, "/console/moderation/kitchens")
    page.get_by_role("button", name=f"Approve {KITCHEN_TO_APPROVE}", exact=True).click()

    position = notice_position(page, "Kitchen approved.")
    assert position > 0
    expect(page.get_by_role("button", name=f"Approve {KITCHEN_TO_APPROVE}")).to_have_count(0)
    expect(page.get_by_role("link", name=KITCHEN_TO_APPROVE, exact=True)).to_have_count(0)
    # The other kitchen waiting for review is still there, with its buttons.
    expect(page.get_by_role("button", name=f"Approve {KITCHEN_LEFT_PENDING}")).to_be_visible()
    assert world.kitchen_status(world.kitchen_to_approve_id, position) == "published"


def test_an_admin_rejects_a_certificate_with_a_reason(
    world: ConsoleWorld, admin_page: Page
) -> None:
    page = admin_page
    reason = f"The scan of {CERTIFICATE_TO_REJECT} is unreadable; upload it again."
    open_page(page, "/console/moderation/certificates")
    row = page.get_by_role("row").filter(has_text=CERTIFICATE_TO_REJECT)
    expect(row).to_contain_text(re.compile(r"health[ _]permit", re.IGNORECASE))
    expect(row.get_by_role("link")).not_to_have_count(0)  # its kitchen
    page.get_by_label(f"Reason to reject certificate {CERTIFICATE_TO_REJECT}", exact=True).fill(
        reason
    )
    page.get_by_role("button", name=f"Reject certificate {CERTIFICATE_TO_REJECT}").click()

    assert notice_position(page, "Certificate rejected.") > 0
    expect(
        page.get_by_role("button", name=f"Reject certificate {CERTIFICATE_TO_REJECT}")
    ).to_have_count(0)
    # The rejected certificates show it, with its reason.
    page.get_by_label("Status", exact=True).select_option(label="Rejected")
    page.get_by_role("button", name="Show", exact=True).click()
    rejected = page.get_by_role("row").filter(has_text=CERTIFICATE_TO_REJECT)
    expect(rejected).to_contain_text("rejected")
    expect(rejected).to_contain_text(reason)


def test_an_admin_opens_a_bookings_history_and_sees_what_its_cancel_changed(
    world: ConsoleWorld, admin_page: Page
) -> None:
    page = admin_page
    version = world.cancel_version
    open_page(page, f"/console/aggregates/{world.cancelled_booking_id}")
    timeline = page.get_by_role("table", name="Timeline")
    version_link = page.get_by_role("link", name=f"Version {version}", exact=True)
    cancel = timeline.get_by_role("row").filter(has=version_link)
    expect(cancel).to_contain_text("BookingCancelled")
    cancel.get_by_role("link", name=f"Version {version}", exact=True).click()

    expect(page).to_have_url(re.compile(rf"[?&]version={version}(&|$)"))
    expect(page.get_by_text(f"State at version {version}", exact=False).first).to_be_visible()
    diff = page.locator("#diff-table")
    expect(diff).to_have_accessible_name(f"Changes in version {version}")
    status = diff.locator('tr[data-field="status"]')
    expect(status).to_have_class(re.compile(r"(^|\s)diff-changed(\s|$)"))
    expect(status).to_contain_text("changed")
    expect(status).to_contain_text("cancelled")


def test_the_projections_refresh_tells_the_live_region_its_sentence_again(
    world: ConsoleWorld, admin_page: Page
) -> None:
    page = admin_page
    open_page(page, "/console/operations")
    summary = page.locator("#projections-summary")
    expect(summary).to_have_attribute("aria-live", "polite")
    said = re.compile(r"[Rr]ebuild")  # every summary says whether one is under way
    expect(summary).to_contain_text(said)
    # The page is made to say something else than the server would: the next refresh
    # brings the sentence back, into the same live region (kept, so it is read out).
    page.evaluate(
        """() => {
            const summary = document.getElementById("projections-summary");
            summary.dataset.kept = "yes";
            summary.textContent = "stale";
            document.getElementById("projections-shown").value = "0".repeat(32);
        }"""
    )
    with page.expect_response(
        lambda response: (
            response.url.endswith("/console/operations/projections?shown=" + "0" * 32)
            and response.status == 200
        )
    ):
        pass
    expect(summary).to_contain_text(said)
    expect(summary).to_have_attribute("data-kept", "yes")
    expect(page.locator("#projections-summary")).to_have_count(1)
    expect(page.locator("#projections")).to_be_visible()


# --- an analyst ------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["day", "week"])
def test_an_analysts_revenue_table_holds_the_apis_numbers_beside_its_chart(
    world: ConsoleWorld, analyst_page: Page, granularity: str
) -> None:
    page = analyst_page
    last = datetime.now(UTC).date()
    first = last - timedelta(days=13)
    series = world.revenue(first, last, granularity)
    assert any(point["gmv"] != "0.00" for point in series["points"]), series

    open_page(
        page,
        f"/console/analytics/revenue?from={first.isoformat()}&to={last.isoformat()}"
        f"&granularity={granularity}",
    )
    table = page.locator("#revenue-table")
    expect(table.locator("tr[data-period]")).to_have_count(len(series["points"]))
    shown = table.locator("tr[data-period]").evaluate_all(
        """rows => rows.map(row => [
            row.dataset.period,
            row.querySelector('td[data-field="gmv"]').dataset.value,
            row.querySelector('td[data-field="platform_revenue"]').dataset.value,
        ])"""
    )
    expected = [
        [point["period_start"], point["gmv"], point["platform_revenue"]]
        for point in series["points"]
    ]
    assert shown == expected
    chart = page.locator("svg[role='img']").first
    expect(chart).to_be_visible()
    assert chart.locator("title").first.text_content(), "the chart has no title"
    expect(page.get_by_role("link", name="Download CSV")).to_be_visible()


# --- who gets in, and how they leave ---------------------------------------------------


def test_a_customer_is_refused_and_gets_no_session(world: ConsoleWorld, page: Page) -> None:
    page.goto("/console/sign-in")
    page.get_by_label("Email").fill(CUSTOMER_EMAIL)
    page.get_by_label("Password").fill("prep-demo-kitchens")
    with page.expect_response(posted("/sign-in")) as answer:
        page.get_by_role("button", name="Sign in").click()
    refused: Response = answer.value
    assert refused.status == 403
    expect(page.get_by_text("for admins and analysts")).to_be_visible()
    assert session_cookie(page.context) is None
    page.goto("/console/")
    expect(page).to_have_url(SIGN_IN_URL)


def test_a_form_posted_without_its_token_is_refused(world: ConsoleWorld, page: Page) -> None:
    sign_in(page, ADMIN_EMAIL)
    open_page(page, "/console/moderation/kitchens")
    approve = page.get_by_role("button", name=f"Approve {KITCHEN_LEFT_PENDING}", exact=True)
    approve.locator("xpath=ancestor::form").evaluate(
        "form => form.querySelector('input[name=\"form_token\"]').remove()"
    )
    path = f"/moderation/kitchens/{world.kitchen_left_pending_id}/approve"
    with page.expect_response(posted(path)) as answer:
        approve.click()
    assert answer.value.status == 403
    expect(page.locator("main")).to_contain_text("form_token_invalid")

    # Without a browser's form at all: the session's cookie alone is not enough.
    direct = page.request.post(
        f"/console/moderation/kitchens/{world.kitchen_left_pending_id}/reject",
        form={"reason": "Posted by another site."},
        max_redirects=0,
    )
    assert direct.status == 403
    assert world.kitchen_status(world.kitchen_left_pending_id) == "pending_review"
    # The session itself still holds.
    open_page(page, "/console/moderation/kitchens")
    expect(page.get_by_role("button", name=f"Approve {KITCHEN_LEFT_PENDING}")).to_be_visible()


def test_signing_out_ends_the_session(world: ConsoleWorld, browser: Browser, page: Page) -> None:
    sign_in(page, ADMIN_EMAIL)
    open_page(page, "/console/moderation/kitchens")
    cookie = session_cookie(page.context)
    assert cookie is not None
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(SIGN_IN_URL)
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    assert session_cookie(page.context) is None
    page.go_back()
    expect(page).to_have_url(SIGN_IN_URL)
    page.goto("/console/moderation/kitchens")
    expect(page).to_have_url(SIGN_IN_URL)

    # The old cookie, kept by someone, no longer opens anything.
    stolen = new_context(browser, world)
    try:
        stolen.add_cookies(
            [{"name": SESSION_COOKIE, "value": cookie["value"], "url": world.console_url("/")}]
        )
        elsewhere = stolen.new_page()
        elsewhere.goto("/console/moderation/kitchens")
        expect(elsewhere).to_have_url(SIGN_IN_URL)
        expect(elsewhere.get_by_text("You signed out. Sign in again.")).to_be_visible()
    finally:
        stolen.close()
