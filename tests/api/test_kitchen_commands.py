"""Kitchen commands over HTTP: listing, editing, submitting, certificates, and the admin's
moderation and certificate review — every success and every refusal, on each backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from tests.api.conftest import DOCUMENT_SHA256, Api, assert_problem
from tests.api.reading import head, ids, read, read_ok


def assert_position(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert int(response.headers["X-Prep-Position"]) == body["position"] > 0
    return body


# --- listing -------------------------------------------------------------------------


def test_a_host_lists_a_draft_kitchen(api: Api) -> None:
    host = api.register("host")
    response = api.post(
        "/kitchens",
        host,
        json={
            "name": "Sunset Commissary",
            "city": "Los Angeles",
            "jurisdiction": "los_angeles",
            "address": "1200 Sunset Blvd",
            "hourly_rate": "45.50",
            "capacity": 8,
            "amenities": ["Walk-in Fridge", "oven"],
        },
    )
    assert response.status_code == 201, response.text
    kitchen = assert_position(response)
    assert kitchen["status"] == "draft"
    assert kitchen["host_id"] == str(host.id)
    assert kitchen["hourly_rate"] == "45.50"
    assert kitchen["description"] == ""
    assert kitchen["instant_book"] is False
    assert kitchen["amenities"] == ["oven", "walk-in fridge"]
    assert kitchen["certificates"] == []
    assert kitchen["compliance_problem"] == "certificate_missing"


def test_an_hourly_rate_is_a_json_string(api: Api) -> None:
    kitchen = api.draft_kitchen(api.register("host"), hourly_rate="60")
    assert kitchen["hourly_rate"] == "60.00"
    as_number = api.post("/kitchens", api.register("host"), json=_kitchen_body(hourly_rate=60))
    problem = assert_problem(as_number, 422, "validation_error")
    assert [error["loc"] for error in problem["errors"]] == [["body", "hourly_rate"]]


@pytest.mark.parametrize("role", ["customer", "admin", "analyst"])
def test_only_hosts_list_kitchens(api: Api, role: str) -> None:
    user = api.admin if role == "admin" else api.user_with_role(role)
    response = api.post("/kitchens", user, json=_kitchen_body())
    assert_problem(response, 403, "forbidden")


def test_listing_a_kitchen_needs_a_token(api: Api) -> None:
    assert_problem(api.post("/kitchens", json=_kitchen_body()), 401, "not_authenticated")


def _kitchen_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Test Kitchen",
        "city": "Los Angeles",
        "jurisdiction": "los_angeles",
        "address": "1 Main St",
        "hourly_rate": "50.00",
        "capacity": 10,
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"capacity": 0}, "invalid_capacity"),
        ({"capacity": 51}, "invalid_capacity"),
        ({"hourly_rate": "0.00"}, "invalid_hourly_rate"),
        ({"jurisdiction": "atlantis"}, "unknown_jurisdiction"),
        ({"name": " "}, "invalid_name"),
        ({"amenities": ["x" * 61]}, "invalid_amenities"),
    ],
)
def test_listing_refuses_what_the_rules_refuse(api: Api, fields: dict[str, Any], code: str) -> None:
    host = api.register("host")
    assert_problem(api.post("/kitchens", host, json=_kitchen_body(**fields)), 422, code)


@pytest.mark.parametrize(
    "fields",
    [
        {"hourly_rate": "45.505"},
        {"hourly_rate": "-5.00"},
        {"hourly_rate": "NaN"},
        {"hourly_rate": "ten dollars"},
        {"hourly_rate": "1e400"},
        {"capacity": "many"},
        {"instant_book": "perhaps"},
        {"hourly_rate_cents": 4500},
    ],
)
def test_listing_refuses_a_body_of_the_wrong_shape(api: Api, fields: dict[str, Any]) -> None:
    host = api.register("host")
    response = api.post("/kitchens", host, json=_kitchen_body(**fields))
    assert_problem(response, 422, "validation_error")


# --- editing and submitting ------------------------------------------------------------


def test_the_host_edits_only_the_fields_given(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    response = api.patch(
        f"/kitchens/{kitchen['id']}", host, json={"hourly_rate": "75.25", "instant_book": True}
    )
    assert response.status_code == 200, response.text
    edited = assert_position(response)
    assert edited["hourly_rate"] == "75.25"
    assert edited["instant_book"] is True
    assert edited["name"] == kitchen["name"]
    assert edited["version"] == kitchen["version"] + 1


def test_another_host_may_see_a_published_kitchen_but_not_change_it(api: Api) -> None:
    kitchen = api.published_kitchen(api.register("host"))
    other = api.register("host")
    response = api.patch(f"/kitchens/{kitchen['id']}", other, json={"name": "Mine now"})
    assert_problem(response, 403, "forbidden")
    assert api.get(f"/kitchens/{kitchen['id']}").json()["name"] == kitchen["name"]


def test_another_host_cannot_see_a_kitchen_to_edit_it(api: Api) -> None:
    kitchen = api.draft_kitchen(api.register("host"))
    other = api.register("host")
    response = api.patch(f"/kitchens/{kitchen['id']}", other, json={"name": "Mine now"})
    assert_problem(response, 404, "kitchen_not_found")
    assert_problem(
        api.patch(f"/kitchens/{uuid4()}", other, json={"name": "x"}), 404, "kitchen_not_found"
    )


def test_editing_refuses_invalid_values(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    response = api.patch(f"/kitchens/{kitchen['id']}", host, json={"capacity": 0})
    assert_problem(response, 422, "invalid_capacity")
    response = api.patch(f"/kitchens/{kitchen['id']}", host, json={"status": "published"})
    assert_problem(response, 422, "validation_error")
    response = api.patch("/kitchens/not-a-uuid", host, json={"name": "x"})
    assert_problem(response, 422, "validation_error")


def test_the_host_submits_a_draft_once(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    response = api.post(f"/kitchens/{kitchen['id']}/submit", host)
    assert response.status_code == 200, response.text
    assert assert_position(response)["status"] == "pending_review"
    again = api.post(f"/kitchens/{kitchen['id']}/submit", host)
    assert_problem(again, 409, "invalid_state_transition")
    other = api.register("host")
    assert_problem(api.post(f"/kitchens/{kitchen['id']}/submit", other), 404, "kitchen_not_found")
    customer = api.register("customer")
    assert_problem(api.post(f"/kitchens/{kitchen['id']}/submit", customer), 403, "forbidden")


# --- certificates ----------------------------------------------------------------------


def test_the_host_attaches_a_pending_certificate(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    response = api.post(
        f"/kitchens/{kitchen['id']}/certificates",
        host,
        json={
            "kind": "fire_inspection",
            "number": "FI-7",
            "issued_on": "2029-06-01",
            "expires_on": "2031-05-31",
            "document_sha256": DOCUMENT_SHA256,
        },
    )
    assert response.status_code == 201, response.text
    certificate = assert_position(response)
    assert certificate["kitchen_id"] == kitchen["id"]
    assert certificate["status"] == "pending"
    assert certificate["kind"] == "fire_inspection"
    assert certificate["expires_on"] == "2031-05-31"
    assert certificate["rejection_reason"] is None


def test_a_certificate_that_already_expired_is_refused(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    yesterday = (api.clock.now - timedelta(days=1)).date().isoformat()
    body = {
        "kind": "health_permit",
        "number": "HP-1",
        "issued_on": "2020-01-01",
        "expires_on": yesterday,
        "document_sha256": "a" * 64,
    }
    path = f"/kitchens/{kitchen['id']}/certificates"
    problem = assert_problem(api.post(path, host, json=body), 422, "invalid_certificate_dates")
    assert yesterday in problem["detail"]
    today = api.clock.now.date().isoformat()
    api.ok(api.post(path, host, json={**body, "expires_on": today}), 201)


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"kind": "moon_license"}, 422, "invalid_certificate_kind"),
        ({"issued_on": "2031-01-01", "expires_on": "2030-01-01"}, 422, "invalid_certificate_dates"),
        ({"document_sha256": "xyz"}, 422, "invalid_document_sha256"),
        ({"expires_on": "next year"}, 422, "validation_error"),
        ({"expires_on": "9999-12-31"}, 422, "validation_error"),
        ({"issued_on": "0001-01-01"}, 422, "validation_error"),
        ({"number": None}, 422, "validation_error"),
    ],
)
def test_attaching_refuses_invalid_certificates(
    api: Api, fields: dict[str, Any], status: int, code: str
) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    body = {
        "kind": "health_permit",
        "number": "HP-1",
        "issued_on": "2029-01-01",
        "expires_on": "2031-12-31",
        "document_sha256": DOCUMENT_SHA256,
        **fields,
    }
    response = api.post(f"/kitchens/{kitchen['id']}/certificates", host, json=body)
    assert_problem(response, status, code)


def test_only_the_kitchens_host_attaches_certificates(api: Api) -> None:
    kitchen = api.draft_kitchen(api.register("host"))
    body = {
        "kind": "health_permit",
        "number": "HP-1",
        "issued_on": "2029-01-01",
        "expires_on": "2031-12-31",
        "document_sha256": DOCUMENT_SHA256,
    }
    other = api.register("host")
    response = api.post(f"/kitchens/{kitchen['id']}/certificates", other, json=body)
    assert_problem(response, 404, "kitchen_not_found")
    response = api.post(f"/kitchens/{kitchen['id']}/certificates", api.admin, json=body)
    assert_problem(response, 403, "forbidden")


def test_attaching_a_certificate_with_an_idempotency_key_is_done_once(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    key = {"Idempotency-Key": uuid4().hex}
    body = {
        "kind": "health_permit",
        "number": "HP-1",
        "issued_on": "2029-01-01",
        "expires_on": "2031-12-31",
        "document_sha256": DOCUMENT_SHA256,
    }
    path = f"/kitchens/{kitchen['id']}/certificates"
    first = api.post(path, host, json=body, headers=key)
    again = api.post(path, host, json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    edited = api.ok(api.patch(f"/kitchens/{kitchen['id']}", host, json={"name": "Renamed"}))
    assert len(edited["certificates"]) == 1
    reused = api.post(path, host, json={**body, "number": "HP-2"}, headers=key)
    assert_problem(reused, 422, "idempotency_key_reused")


# --- moderation ------------------------------------------------------------------------


def submitted_kitchen(api: Api) -> dict[str, Any]:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    return api.ok(api.post(f"/kitchens/{kitchen['id']}/submit", host))


def test_an_admin_approves_a_kitchen_under_review(api: Api) -> None:
    kitchen = submitted_kitchen(api)
    response = api.post(f"/admin/kitchens/{kitchen['id']}/approve", api.admin)
    assert response.status_code == 200, response.text
    assert assert_position(response)["status"] == "published"
    again = api.post(f"/admin/kitchens/{kitchen['id']}/approve", api.admin)
    assert_problem(again, 409, "invalid_state_transition")


def test_an_admin_rejects_with_a_reason_and_the_host_resubmits(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    api.ok(api.post(f"/kitchens/{kitchen['id']}/submit", host))
    path = f"/admin/kitchens/{kitchen['id']}/reject"
    assert_problem(api.post(path, api.admin, json={}), 422, "validation_error")
    assert_problem(api.post(path, api.admin, json={"reason": "  "}), 422, "invalid_reason")
    rejected = api.ok(api.post(path, api.admin, json={"reason": "Photos missing"}))
    assert rejected["status"] == "rejected"
    assert rejected["status_reason"] == "Photos missing"
    edited = api.ok(
        api.patch(f"/kitchens/{kitchen['id']}", host, json={"description": "Now with photos"})
    )
    assert edited["status"] == "rejected"
    resubmitted = api.ok(api.post(f"/kitchens/{kitchen['id']}/submit", host))
    assert resubmitted["status"] == "pending_review"


def test_an_admin_suspends_and_reinstates_a_published_kitchen(api: Api) -> None:
    kitchen = api.published_kitchen(api.register("host"))
    path = f"/admin/kitchens/{kitchen['id']}"
    assert_problem(api.post(f"{path}/reinstate", api.admin), 409, "invalid_state_transition")
    suspended = api.ok(api.post(f"{path}/suspend", api.admin, json={"reason": "Complaint"}))
    assert suspended["status"] == "suspended"
    assert suspended["status_reason"] == "Complaint"
    assert_problem(
        api.post(f"{path}/suspend", api.admin, json={"reason": "Again"}),
        409,
        "invalid_state_transition",
    )
    reinstated = api.ok(api.post(f"{path}/reinstate", api.admin))
    assert reinstated["status"] == "published"


def test_reinstating_a_kitchen_edited_materially_while_suspended_sends_it_to_review(
    api: Api,
) -> None:
    """A host cannot get a new address published unreviewed by editing it while the
    kitchen is suspended: the reinstatement sends it to review, into the queue."""
    host = api.register("host")
    city = f"Town {uuid4().hex[:8]}"
    kitchen = api.published_kitchen(host, city=city)
    path = f"/admin/kitchens/{kitchen['id']}"
    api.ok(api.post(f"{path}/suspend", api.admin, json={"reason": "Complaint"}))
    edited = api.ok(
        api.patch(
            f"/kitchens/{kitchen['id']}", host, json={"address": "666 Shady Ln", "capacity": 50}
        )
    )
    assert (edited["status"], edited["changed_since_approval"]) == (
        "suspended",
        ["address", "capacity"],
    )

    reinstated = assert_position(api.post(f"{path}/reinstate", api.admin))
    assert (reinstated["status"], reinstated["changed_since_approval"]) == (
        "pending_review",
        ["address", "capacity"],
    )
    after = reinstated["position"]
    assert ids(read_ok(api, "/kitchens", params={"city": city}, after=after)) == []
    queue = read_ok(
        api,
        "/admin/moderation/kitchens",
        api.admin,
        params={"status": "pending_review", "limit": 100},
        after=after,
    )
    (queued,) = [item for item in queue["items"] if item["id"] == kitchen["id"]]
    assert queued["changed_since_approval"] == ["address", "capacity"]
    approved = api.ok(api.post(f"{path}/approve", api.admin))
    assert (approved["status"], approved["changed_since_approval"]) == ("published", [])


def test_reinstating_a_kitchen_edited_only_descriptively_publishes_it(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    path = f"/admin/kitchens/{kitchen['id']}"
    api.ok(api.post(f"{path}/suspend", api.admin, json={"reason": "Complaint"}))
    api.ok(api.patch(f"/kitchens/{kitchen['id']}", host, json={"name": "Renamed Kitchen"}))
    reinstated = api.ok(api.post(f"{path}/reinstate", api.admin))
    assert (reinstated["status"], reinstated["changed_since_approval"]) == ("published", [])


# --- edits of a published kitchen --------------------------------------------------


def test_a_material_edit_sends_a_published_kitchen_back_to_review(api: Api) -> None:
    """Its existing booking stands; search drops it at once and new bookings wait
    until an admin approves it again."""
    host = api.register("host")
    city = f"Town {uuid4().hex[:8]}"
    kitchen = api.published_kitchen(host, city=city)
    customer = api.customer()
    booking = api.ok(
        api.post(
            "/bookings",
            customer,
            json={"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=3)},
        ),
        201,
    )
    assert ids(read_ok(api, "/kitchens", params={"city": city}, after=head(api))) == [kitchen["id"]]

    response = api.patch(f"/kitchens/{kitchen['id']}", host, json={"capacity": 6})
    edited = assert_position(response)
    assert (edited["status"], edited["capacity"]) == ("pending_review", 6)
    assert edited["changed_since_approval"] == ["capacity"]

    assert ids(read_ok(api, "/kitchens", params={"city": city}, after=edited["position"])) == []
    assert_problem(
        read(api, f"/kitchens/{kitchen['id']}", after=edited["position"]), 404, "kitchen_not_found"
    )
    window = api.window(days=4)
    refused = api.post(
        "/bookings", customer, json={"kitchen_id": kitchen["id"], "guests": 2, **window}
    )
    assert_problem(refused, 409, "kitchen_not_bookable")
    assert api.ok(api.get(f"/bookings/{booking['id']}", customer))["status"] == "pending"
    queue = read_ok(
        api,
        "/admin/moderation/kitchens",
        api.admin,
        params={"status": "pending_review", "limit": 100},
        after=edited["position"],
    )
    (queued,) = [item for item in queue["items"] if item["id"] == kitchen["id"]]
    assert queued["changed_since_approval"] == ["capacity"]

    approved = api.ok(api.post(f"/admin/kitchens/{kitchen['id']}/approve", api.admin))
    assert (approved["status"], approved["changed_since_approval"]) == ("published", [])
    assert ids(read_ok(api, "/kitchens", params={"city": city}, after=approved["position"])) == [
        kitchen["id"]
    ]
    api.ok(
        api.post("/bookings", customer, json={"kitchen_id": kitchen["id"], "guests": 2, **window}),
        201,
    )


def test_a_descriptive_edit_stays_live_and_waits_in_the_moderation_queue(api: Api) -> None:
    host = api.register("host")
    city = f"Town {uuid4().hex[:8]}"
    kitchen = api.published_kitchen(host, city=city)
    response = api.patch(
        f"/kitchens/{kitchen['id']}",
        host,
        json={"description": "Now with a pastry station", "hourly_rate": "55.00"},
    )
    edited = assert_position(response)
    assert edited["status"] == "published"
    assert edited["changed_since_approval"] == ["description", "hourly_rate"]
    assert ids(read_ok(api, "/kitchens", params={"city": city}, after=edited["position"])) == [
        kitchen["id"]
    ]
    changed = {"status": "published", "changed_since_approval": "true", "limit": 100}
    queue = read_ok(
        api, "/admin/moderation/kitchens", api.admin, params=changed, after=edited["position"]
    )
    (queued,) = [item for item in queue["items"] if item["id"] == kitchen["id"]]
    assert queued["changed_since_approval"] == ["description", "hourly_rate"]

    approved = api.ok(api.post(f"/admin/kitchens/{kitchen['id']}/approve", api.admin))
    assert (approved["status"], approved["changed_since_approval"]) == ("published", [])
    queue = read_ok(
        api, "/admin/moderation/kitchens", api.admin, params=changed, after=approved["position"]
    )
    assert kitchen["id"] not in ids(queue)
    again = api.post(f"/admin/kitchens/{kitchen['id']}/approve", api.admin)
    assert_problem(again, 409, "invalid_state_transition")


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("approve", None),
        ("reject", {"reason": "No"}),
        ("suspend", {"reason": "No"}),
        ("reinstate", None),
    ],
)
def test_moderation_is_for_admins_and_known_kitchens(
    api: Api, action: str, body: dict[str, str] | None
) -> None:
    kitchen = submitted_kitchen(api)
    for role in ("customer", "host", "analyst"):
        user = api.user_with_role(role)
        response = api.post(f"/admin/kitchens/{kitchen['id']}/{action}", user, json=body)
        assert_problem(response, 403, "forbidden")
    response = api.post(f"/admin/kitchens/{kitchen['id']}/{action}", json=body)
    assert_problem(response, 401, "not_authenticated")
    response = api.post(f"/admin/kitchens/{uuid4()}/{action}", api.admin, json=body)
    assert_problem(response, 404, "kitchen_not_found")


def test_an_admin_verifies_or_rejects_a_pending_certificate(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    first = api.attach_certificate(host, kitchen["id"], "health_permit")
    second = api.attach_certificate(host, kitchen["id"], "business_license")
    base = f"/admin/kitchens/{kitchen['id']}/certificates"
    response = api.post(f"{base}/{first['id']}/verify", api.admin)
    assert response.status_code == 200, response.text
    assert assert_position(response)["status"] == "verified"
    assert_problem(
        api.post(f"{base}/{first['id']}/verify", api.admin), 409, "invalid_state_transition"
    )
    assert_problem(
        api.post(f"{base}/{second['id']}/reject", api.admin, json={}), 422, "validation_error"
    )
    rejected = api.ok(
        api.post(f"{base}/{second['id']}/reject", api.admin, json={"reason": "Illegible"})
    )
    assert rejected["status"] == "rejected"
    assert rejected["rejection_reason"] == "Illegible"
    assert_problem(api.post(f"{base}/{uuid4()}/verify", api.admin), 404, "certificate_not_found")
    assert_problem(
        api.post(f"/admin/kitchens/{uuid4()}/certificates/{first['id']}/verify", api.admin),
        404,
        "kitchen_not_found",
    )
    assert_problem(api.post(f"{base}/{second['id']}/verify", host), 403, "forbidden")


def test_a_published_kitchen_is_compliant(api: Api) -> None:
    kitchen = api.published_kitchen(api.register("host"))
    assert kitchen["status"] == "published"
    assert kitchen["compliance_problem"] is None
    assert {c["status"] for c in kitchen["certificates"]} == {"verified"}
