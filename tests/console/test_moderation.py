"""Moderation and users in the console: each action runs the API's command with its
rules, refusals are pages with the API's status and code, and the page an action leads
to shows its effect and the position it reached."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.api.conftest import USERS_WAIT_S, User
from tests.console.conftest import Console, ConsoleSession

REASON_LENGTH_MAX = 1000
READ_MODEL_WAIT_S = 10.0
DONE_LOCATION = re.compile(
    r"done=(?P<done>[a-z_]+)&proof=[A-Za-z0-9_-]+&position=(?P<position>[0-9]+)$"
)


def caught_up(console: Console, *read_models: str) -> None:
    """``read_models`` have applied every event stored so far: a page read next shows
    what the test did through the API (the console's own actions wait by their
    redirect's position instead)."""
    services = console.api.services
    head = services.runtime.app.position()
    for name in read_models:
        services.read_positions.wait_for(name, head, READ_MODEL_WAIT_S)


def unique_name(prefix: str) -> str:
    return f"{prefix} {uuid4().hex[:8]}"


def certified_kitchen(console: Console, host: User, name: str) -> dict[str, Any]:
    """A draft kitchen with every certificate its jurisdiction requires, verified."""
    api = console.api
    kitchen = api.draft_kitchen(host, name=name)
    rules = api.services.runtime.jurisdictions.get(kitchen["jurisdiction"])
    admin = api.admin
    for kind in sorted(rules.required_certificates):
        certificate = api.attach_certificate(host, kitchen["id"], kind)
        api.ok(
            api.post(
                f"/admin/kitchens/{kitchen['id']}/certificates/{certificate['id']}/verify",
                admin,
            )
        )
    return kitchen


def pending_kitchen(console: Console, name: str) -> tuple[User, dict[str, Any]]:
    host = console.api.register("host")
    kitchen = certified_kitchen(console, host, name)
    console.api.ok(console.api.post(f"/kitchens/{kitchen['id']}/submit", host))
    return host, kitchen


def published_kitchen(console: Console, name: str) -> tuple[User, dict[str, Any]]:
    host = console.api.register("host")
    return host, console.api.published_kitchen(host, name=name)


def assert_done(response: httpx.Response, path: str, what: str) -> int:
    """The action's redirect: to ``path`` (with its filters), saying ``what`` was done
    and at which position."""
    assert response.status_code == 303, (response.status_code, response.text[:2000])
    location = response.headers["location"]
    assert location.startswith(path), location
    found = DONE_LOCATION.search(location)
    assert found is not None, location
    assert found["done"] == what
    return int(found["position"])


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    """The error page of the API's problem: the same status and code."""
    assert response.status_code == status, (response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("text/html")
    assert f"<code>{code}</code>" in response.text, response.text[:2000]


def row_of(page: str, marker: str) -> str:
    """The table row of ``page`` holding ``marker`` (an id)."""
    for row in re.findall(r"<tr>.*?</tr>", page, flags=re.DOTALL):
        if marker in row:
            return str(row)
    raise AssertionError(f"no row holds {marker}")


def kitchen_status(console: Console, kitchen_id: str) -> str:
    body = console.api.ok(console.api.get(f"/kitchens/{kitchen_id}", console.api.admin))
    return str(body["status"])


# --- kitchens -----------------------------------------------------------------------


def test_approving_from_the_queue_publishes_the_kitchen_and_shows_it_at_once(
    console: Console,
) -> None:
    name = unique_name("Queue Kitchen")
    _, kitchen = pending_kitchen(console, name)
    caught_up(console, "kitchens")
    admin = console.admin()
    queue = admin.page("/moderation/kitchens")
    assert f'aria-label="Approve {name}"' in queue
    assert f"Reason to reject {name}</label>" in queue
    assert f'href="/console/aggregates/{kitchen["id"]}"' in queue

    response = admin.post(
        f"/moderation/kitchens/{kitchen['id']}/approve", {"back": "status=pending_review"}
    )
    position = assert_done(
        response, "/console/moderation/kitchens?status=pending_review&", "kitchen_approved"
    )
    after = admin.follow(response)
    assert "Kitchen approved." in after
    assert f"Event store position <strong>{position}</strong>." in after
    assert kitchen["id"] not in after  # the read model had caught up: read-your-writes
    assert kitchen_status(console, kitchen["id"]) == "published"

    # The API's answer to approving it again: 409, as a page.
    again = admin.post(f"/moderation/kitchens/{kitchen['id']}/approve")
    assert_refused(again, 409, "invalid_state_transition")
    assert "<dt>Status</dt><dd>409</dd>" in again.text


def test_rejecting_a_kitchen_needs_a_reason_the_api_would_take(console: Console) -> None:
    name = unique_name("Rejected Kitchen")
    _, kitchen = pending_kitchen(console, name)
    caught_up(console, "kitchens")
    admin = console.admin()
    admin.page("/moderation/kitchens")
    target = f"/moderation/kitchens/{kitchen['id']}/reject"
    assert_refused(admin.post(target, {"reason": ""}), 422, "invalid_reason")
    assert_refused(admin.post(target, {"reason": "   "}), 422, "invalid_reason")
    too_long = admin.post(target, {"reason": "x" * (REASON_LENGTH_MAX + 1)})
    assert_refused(too_long, 422, "invalid_reason")
    assert_refused(admin.post(target, {"reason": "x" * 10_001}), 422, "reason_too_long")
    assert_refused(admin.post(target, {"reason": "nul \x00 here"}), 422, "invalid_reason")
    assert kitchen_status(console, kitchen["id"]) == "pending_review"

    response = admin.post(target, {"reason": "The permit <b>number</b> does not match"})
    assert_done(response, "/console/moderation/kitchens", "kitchen_rejected")
    assert "Kitchen rejected." in admin.follow(response)
    rejected = admin.page("/moderation/kitchens?status=rejected")
    row = row_of(rejected, kitchen["id"])
    assert "The permit &lt;b&gt;number&lt;/b&gt; does not match" in row  # escaped
    assert kitchen_status(console, kitchen["id"]) == "rejected"


def test_published_kitchens_edited_since_approval_can_be_approved_with_their_edits(
    console: Console,
) -> None:
    name = unique_name("Edited Kitchen")
    host, kitchen = published_kitchen(console, name)
    console.api.ok(
        console.api.patch(
            f"/kitchens/{kitchen['id']}", host, json={"description": "Now with a blast chiller"}
        )
    )
    caught_up(console, "kitchens")
    admin = console.admin()
    filters = "status=published&changed_since_approval=true"
    edited = admin.page(f"/moderation/kitchens?{filters}")
    row = row_of(edited, kitchen["id"])
    assert f'aria-label="Approve edits to {name}"' in row
    assert "description" in row
    unedited = admin.page("/moderation/kitchens?status=published&changed_since_approval=false")
    assert kitchen["id"] not in unedited
    either = admin.page("/moderation/kitchens?status=published&changed_since_approval=")
    assert kitchen["id"] in either

    response = admin.post(f"/moderation/kitchens/{kitchen['id']}/approve", {"back": filters})
    assert_done(response, f"/console/moderation/kitchens?{filters}&", "kitchen_approved")
    after = admin.follow(response)
    assert "Kitchen approved." in after
    assert kitchen["id"] not in after
    assert kitchen_status(console, kitchen["id"]) == "published"


def test_a_published_kitchen_is_suspended_with_a_reason_and_reinstated(console: Console) -> None:
    name = unique_name("Suspended Kitchen")
    _, kitchen = published_kitchen(console, name)
    caught_up(console, "kitchens")
    admin = console.admin()
    published = admin.page("/moderation/kitchens?status=published")
    assert f'aria-label="Suspend {name}"' in row_of(published, kitchen["id"])
    target = f"/moderation/kitchens/{kitchen['id']}/suspend"
    assert_refused(admin.post(target, {"reason": ""}), 422, "invalid_reason")

    response = admin.post(
        target, {"reason": "Complaints about hygiene", "back": "status=suspended"}
    )
    assert_done(response, "/console/moderation/kitchens?status=suspended&", "kitchen_suspended")
    suspended = admin.follow(response)
    assert "Kitchen suspended." in suspended
    row = row_of(suspended, kitchen["id"])
    assert "Complaints about hygiene" in row
    assert f'aria-label="Reinstate {name}"' in row

    response = admin.post(f"/moderation/kitchens/{kitchen['id']}/reinstate")
    assert_done(response, "/console/moderation/kitchens", "kitchen_reinstated")
    assert "Kitchen reinstated: it is published again." in admin.follow(response)
    assert kitchen_status(console, kitchen["id"]) == "published"
    # Reinstating a published kitchen: the API's 409.
    assert admin.post(f"/moderation/kitchens/{kitchen['id']}/reinstate").status_code == 409


def test_the_return_query_keeps_only_the_pages_own_filters(console: Console) -> None:
    _, kitchen = pending_kitchen(console, unique_name("Filtered Kitchen"))
    admin = console.admin()
    admin.page("/moderation/kitchens")
    response = admin.post(
        f"/moderation/kitchens/{kitchen['id']}/approve",
        {"back": "status=pending_review&next=//evil.example&done=signed_out&offset=0"},
    )
    location = response.headers["location"]
    assert location.startswith("/console/moderation/kitchens?status=pending_review&offset=0&")
    assert "evil" not in location
    assert location.count("done=") == 1


@pytest.mark.parametrize(
    "query",
    [
        "?status=bogus",
        "?changed_since_approval=maybe",
        "?offset=-1",
        "?offset=99999999999",
    ],
)
def test_bad_filters_of_the_kitchens_page_are_422_pages(console: Console, query: str) -> None:
    admin = console.admin()
    assert_refused(admin.get(f"/moderation/kitchens{query}"), 422, "validation_error")


# --- certificates -------------------------------------------------------------------


def test_certificates_are_verified_or_rejected_with_a_reason(console: Console) -> None:
    host = console.api.register("host")
    kitchen = console.api.draft_kitchen(host, name=unique_name("Certified Kitchen"))
    number_ok = f"HP-{uuid4().hex[:6]}"
    number_bad = f"HP-{uuid4().hex[:6]}"
    sha_ok = "cd" * 32
    kept = console.api.attach_certificate(
        host, kitchen["id"], number=number_ok, document_sha256=sha_ok
    )
    refused = console.api.attach_certificate(
        host, kitchen["id"], "business_license", number=number_bad
    )
    caught_up(console, "compliance")
    admin = console.admin()
    pending = admin.page("/moderation/certificates")
    row = row_of(pending, kept["id"])
    for shown in (
        "health_permit",
        number_ok,
        sha_ok,
        kept["issued_on"],
        kept["expires_on"],
        "pending",
        kitchen["name"],
        f'href="/console/aggregates/{kitchen["id"]}"',
        f'aria-label="Verify certificate {number_ok}"',
        f'aria-label="Reject certificate {number_ok}"',
        f"Reason to reject certificate {number_ok}</label>",
    ):
        assert shown in row, shown

    base = f"/moderation/kitchens/{kitchen['id']}/certificates"
    response = admin.post(f"{base}/{kept['id']}/verify", {"back": "status=pending"})
    position = assert_done(
        response, "/console/moderation/certificates?status=pending&", "certificate_verified"
    )
    after = admin.follow(response)
    assert "Certificate verified." in after
    assert f"Event store position <strong>{position}</strong>." in after
    assert kept["id"] not in after
    assert_refused(admin.post(f"{base}/{kept['id']}/verify"), 409, "invalid_state_transition")

    reject = f"{base}/{refused['id']}/reject"
    assert_refused(admin.post(reject, {"reason": ""}), 422, "invalid_reason")
    response = admin.post(reject, {"reason": "The license is for another address"})
    assert_done(response, "/console/moderation/certificates", "certificate_rejected")
    assert "Certificate rejected." in admin.follow(response)
    rejected = row_of(admin.page("/moderation/certificates?status=rejected"), refused["id"])
    assert "rejected" in rejected
    assert "The license is for another address" in rejected
    verified = admin.page("/moderation/certificates?status=verified")
    assert kept["id"] in verified
    assert refused["id"] in admin.page("/moderation/certificates?status=all")
    assert_refused(admin.get("/moderation/certificates?status=lost"), 422, "validation_error")


def test_expiring_certificates_name_the_kitchens_they_keep_bookable(console: Console) -> None:
    host = console.api.register("host")
    name = unique_name("Expiring Kitchen")
    kitchen = console.api.draft_kitchen(host, name=name)
    number = f"EXP-{uuid4().hex[:6]}"
    expires_on = console.api.clock.now.date() + timedelta(days=10)
    certificate = console.api.attach_certificate(
        host, kitchen["id"], number=number, expires_on=expires_on.isoformat()
    )
    console.api.ok(
        console.api.post(
            f"/admin/kitchens/{kitchen['id']}/certificates/{certificate['id']}/verify",
            console.api.admin,
        )
    )
    caught_up(console, "compliance")
    admin = console.admin()
    soon = admin.page("/moderation/expiring?within_days=30")
    row = row_of(soon, number)
    assert expires_on.isoformat() in row
    assert "10 days" in row
    assert f'href="/console/aggregates/{kitchen["id"]}"' in row
    assert name in row
    assert number in admin.page("/moderation/expiring")  # 30 days by default
    assert number not in admin.page("/moderation/expiring?within_days=5")
    for bad in ("0", "366", "soon"):
        assert_refused(
            admin.get(f"/moderation/expiring?within_days={bad}"), 422, "validation_error"
        )


# --- users --------------------------------------------------------------------------


def test_an_admin_deactivates_reactivates_and_changes_the_role_of_a_user(
    console: Console,
) -> None:
    customer = console.api.register("customer")
    caught_up(console, "users")
    admin = console.admin()
    filters = "role=customer&active="
    listed = admin.page(f"/users?{filters}")
    row = row_of(listed, str(customer.id))
    account_id = str(console.api.account(customer).id)
    assert f'href="/console/aggregates/{customer.id}"' in row
    assert f'href="/console/aggregates/{account_id}"' in row
    assert f'aria-label="Deactivate {customer.email}"' in row
    assert "Active" in row

    response = admin.post(f"/users/{customer.id}/deactivate", {"back": filters})
    position = assert_done(response, f"/console/users?{filters}&", "user_deactivated")
    after = admin.follow(response)
    assert "User deactivated." in after
    assert f"Event store position <strong>{position}</strong>." in after
    row = row_of(after, str(customer.id))
    assert "Deactivated" in row
    assert f'aria-label="Reactivate {customer.email}"' in row
    # Their API token stops working at once.
    assert console.api.get("/users/me", customer).status_code == 401
    assert str(customer.id) not in admin.page("/users?active=true&role=customer")

    response = admin.post(f"/users/{customer.id}/reactivate", {"back": filters})
    assert_done(response, f"/console/users?{filters}&", "user_reactivated")
    assert "Active" in row_of(admin.follow(response), str(customer.id))
    # Tokens issued until the deactivation stay revoked; a later sign-in works.
    assert console.api.get("/users/me", customer).status_code == 401
    console.api.clock.advance(timedelta(seconds=1))
    console.api.log_in(customer.email)

    response = admin.post(f"/users/{customer.id}/role", {"role": "host", "back": "role=host"})
    assert_done(response, "/console/users?role=host&", "role_changed")
    after = admin.follow(response)
    assert "Role changed." in after
    assert "<td>host</td>" in row_of(after, str(customer.id))
    assert_refused(admin.post(f"/users/{customer.id}/role", {"role": "king"}), 422, "invalid_role")


def test_an_admin_cannot_deactivate_or_demote_their_own_account(console: Console) -> None:
    me = console.api.admin
    caught_up(console, "users")
    admin = console.admin()
    own = row_of(admin.page("/users?role=admin"), str(me.id))
    assert "Deactivate" not in own
    assert_refused(admin.post(f"/users/{me.id}/deactivate"), 403, "forbidden")
    assert_refused(admin.post(f"/users/{me.id}/role", {"role": "customer"}), 403, "forbidden")
    assert_refused(admin.post(f"/users/{uuid4()}/deactivate"), 404, "user_not_found")


def test_erased_users_show_as_erased_with_no_actions(console: Console) -> None:
    customer = console.api.register("customer")
    erased = console.api.ok(
        console.api.post(
            f"/admin/users/{customer.id}/erase",
            console.api.admin,
            json={"reason": "Asked to be forgotten"},
        )
    )
    console.api.services.read_positions.wait_for("users", erased["position"], USERS_WAIT_S)
    page = console.admin().page("/users?role=customer")
    row = row_of(page, str(customer.id))
    assert "Erased" in row
    assert customer.email not in row
    assert "<form" not in row
    admin = console.admin()
    admin.page("/")
    assert_refused(admin.post(f"/users/{customer.id}/reactivate"), 404, "user_not_found")


@pytest.mark.parametrize("query", ["?role=king", "?active=perhaps", "?offset=-5"])
def test_bad_filters_of_the_users_page_are_422_pages(console: Console, query: str) -> None:
    assert_refused(console.admin().get(f"/users{query}"), 422, "validation_error")


# --- who may -----------------------------------------------------------------------

PAGES = (
    "/moderation/kitchens",
    "/moderation/certificates",
    "/moderation/expiring",
    "/users",
)


def actions(kitchen_id: str, certificate_id: str, user_id: str) -> list[tuple[str, dict[str, str]]]:
    kitchen = f"/moderation/kitchens/{kitchen_id}"
    certificate = f"{kitchen}/certificates/{certificate_id}"
    return [
        (f"{kitchen}/approve", {}),
        (f"{kitchen}/reject", {"reason": "no"}),
        (f"{kitchen}/suspend", {"reason": "no"}),
        (f"{kitchen}/reinstate", {}),
        (f"{certificate}/verify", {}),
        (f"{certificate}/reject", {"reason": "no"}),
        (f"/users/{user_id}/deactivate", {}),
        (f"/users/{user_id}/reactivate", {}),
        (f"/users/{user_id}/role", {"role": "admin"}),
    ]


@pytest.fixture(scope="module")
def targets(console: Console) -> list[tuple[str, dict[str, str]]]:
    host, kitchen = pending_kitchen(console, unique_name("Target Kitchen"))
    certificate = console.api.attach_certificate(host, kitchen["id"], number="T-1")
    return actions(kitchen["id"], certificate["id"], str(host.id))


def test_analysts_get_403_on_every_moderation_page_and_action(
    console: Console, targets: list[tuple[str, dict[str, str]]]
) -> None:
    analyst: ConsoleSession = console.analyst()
    for path in PAGES:
        assert_refused(analyst.get(path), 403, "forbidden")
    for path, data in targets:
        assert_refused(analyst.post(path, data), 403, "forbidden")


def test_every_moderation_form_without_its_token_is_refused(
    console: Console, targets: list[tuple[str, dict[str, str]]]
) -> None:
    admin = console.admin()
    for path, data in targets:
        response = admin.client.post("/console" + path, data=data)
        assert_refused(response, 403, "form_token_invalid")
    kitchen_path = targets[0][0].removesuffix("/approve")
    assert kitchen_status(console, kitchen_path.rsplit("/", 1)[1]) == "pending_review"


def test_a_page_past_the_end_says_there_is_nothing_there(console: Console) -> None:
    page = console.admin().page("/users?offset=100000")
    assert "None past" in page
    assert "100001–" not in page
