"""Admin queries over HTTP, on each backend: users, the moderation queue, certificates
and those expiring soon, the trial balance, the audit trail with its keyset pages, an
aggregate's events and its state at a version or a moment, the projections' progress —
and every refusal they give."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args
from uuid import uuid4

import pytest

from aggregates.kitchen import CERTIFICATE_STATUSES
from aggregates.user import ROLES
from api.queries.admin.certificates import CertificateStatus
from api.queries.admin.users import Role
from projections import PROJECTIONS
from tests.api.conftest import Api, User, assert_problem
from tests.api.reading import head, ids, read, read_ok


def test_the_routes_literals_are_the_domains() -> None:
    assert get_args(Role) == ROLES
    assert get_args(CertificateStatus) == CERTIFICATE_STATUSES


def every_item(api: Api, path: str, user: User, **params: Any) -> list[dict[str, Any]]:
    """Every page of a list, read after every write so far."""
    items: list[dict[str, Any]] = []
    after = head(api)
    while True:
        page = read_ok(
            api, path, user, after=after, params={**params, "limit": 100, "offset": len(items)}
        )
        items += page["items"]
        if len(items) >= page["total"]:
            assert len(items) == page["total"]
            return items


# --- users ---------------------------------------------------------------------------


def test_admins_list_users_by_role_and_active_flag(api: Api) -> None:
    admin = api.admin
    analyst = api.user_with_role("analyst")
    leaving = api.register("customer")
    api.ok(api.patch(f"/admin/users/{leaving.id}", admin, json={"active": False}))

    everyone = every_item(api, "/admin/users", admin)
    emails = [user["email"] for user in everyone]
    assert {analyst.email, leaving.email, "root@example.com"} <= set(emails)
    registered = [user["registered_at"] for user in everyone]
    assert registered == sorted(registered)

    analysts = every_item(api, "/admin/users", admin, role="analyst")
    assert analyst.email in [user["email"] for user in analysts]
    assert {user["role"] for user in analysts} == {"analyst"}

    inactive = every_item(api, "/admin/users", admin, active="false")
    assert [user["id"] for user in inactive if user["email"] == leaving.email] == [str(leaving.id)]
    assert not any(user["active"] for user in inactive)
    active_customers = every_item(api, "/admin/users", admin, role="customer", active="true")
    assert leaving.email not in [user["email"] for user in active_customers]

    page = read_ok(api, "/admin/users", admin, params={"limit": 1, "offset": 1})
    assert len(page["items"]) == 1 and page["total"] == len(everyone)
    assert page["items"][0]["id"] == everyone[1]["id"]
    assert "password_hash" not in page["items"][0]


@pytest.mark.parametrize(
    "params", [{"role": "owner"}, {"active": "maybe"}, {"limit": 101}, {"offset": -1}]
)
def test_bad_user_filters_are_422(api: Api, params: dict[str, Any]) -> None:
    assert_problem(api.get("/admin/users", api.admin, params=params), 422, "validation_error")


# --- kitchens and certificates -------------------------------------------------------


def test_the_moderation_queue_and_certificate_review(api: Api) -> None:
    admin = api.admin
    host = api.register("host")
    kitchen = api.draft_kitchen(host, name="Awaiting Review")
    certificate = api.attach_certificate(host, kitchen["id"], "fire_inspection")
    submitted = api.ok(api.post(f"/kitchens/{kitchen['id']}/submit", host))

    queue = every_item(api, "/admin/moderation/kitchens", admin, status="pending_review")
    assert kitchen["id"] in ids({"items": queue})
    assert {k["status"] for k in queue} == {"pending_review"}
    mine = next(k for k in queue if k["id"] == kitchen["id"])
    assert (mine["name"], mine["hourly_rate"], mine["host_id"]) == (
        "Awaiting Review",
        "50.00",
        str(host.id),
    )
    drafts = every_item(api, "/admin/moderation/kitchens", admin, status="draft")
    assert kitchen["id"] not in ids({"items": drafts})
    everything = every_item(api, "/admin/moderation/kitchens", admin)
    assert kitchen["id"] in ids({"items": everything})
    assert submitted["position"] <= head(api)

    pending = every_item(api, "/admin/certificates", admin, status="pending")
    record = next(c for c in pending if c["id"] == certificate["id"])
    assert record["kitchen"] == {
        "id": kitchen["id"],
        "name": "Awaiting Review",
        "status": "pending_review",
        "jurisdiction": "los_angeles",
    }
    assert (record["kind"], record["status"], record["host_id"]) == (
        "fire_inspection",
        "pending",
        str(host.id),
    )
    assert record["reviewed_at"] is None

    api.ok(
        api.post(
            f"/admin/kitchens/{kitchen['id']}/certificates/{certificate['id']}/reject",
            admin,
            json={"reason": "Illegible scan"},
        )
    )
    rejected = every_item(api, "/admin/certificates", admin, status="rejected")
    record = next(c for c in rejected if c["id"] == certificate["id"])
    assert record["rejection_reason"] == "Illegible scan"
    assert record["reviewed_at"] is not None
    assert certificate["id"] not in ids(
        {"items": every_item(api, "/admin/certificates", admin, status="pending")}
    )


def test_certificates_expiring_soon_with_their_kitchens(api: Api) -> None:
    admin = api.admin
    host = api.register("host")
    kitchen = api.published_kitchen(host, name="Expiring Soon")
    today = api.clock.now.date()
    soon = api.attach_certificate(
        host, kitchen["id"], "food_handler", expires_on=(today + timedelta(days=10)).isoformat()
    )
    api.ok(api.post(f"/admin/kitchens/{kitchen['id']}/certificates/{soon['id']}/verify", admin))

    expiring = every_item(api, "/admin/compliance/expiring", admin)
    found = next(c for c in expiring if c["id"] == soon["id"])
    assert found["days_left"] == 10
    assert found["kitchen"]["id"] == kitchen["id"]
    assert found["kitchen"]["status"] == "published"
    assert found["status"] == "verified"
    assert [c["days_left"] for c in expiring] == sorted(c["days_left"] for c in expiring)
    # The kitchen's other certificates run to 2031: not within the default 30 days.
    assert {c["kitchen"]["id"] for c in expiring if c["kitchen"]["id"] == kitchen["id"]} == {
        kitchen["id"]
    }
    assert len([c for c in expiring if c["kitchen"]["id"] == kitchen["id"]]) == 1

    page = read_ok(api, "/admin/compliance/expiring", admin, params={"within_days": 9})
    assert soon["id"] not in ids(page)
    assert page["within_days"] == 9
    page = read_ok(api, "/admin/compliance/expiring", admin, params={"within_days": 10})
    assert soon["id"] in ids(page)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/admin/moderation/kitchens", {"status": "archived"}),
        ("/admin/certificates", {"status": "valid"}),
        ("/admin/compliance/expiring", {"within_days": 0}),
        ("/admin/compliance/expiring", {"within_days": 366}),
        ("/admin/compliance/expiring", {"within_days": "soon"}),
        ("/admin/certificates", {"limit": 0}),
    ],
)
def test_bad_moderation_filters_are_422(api: Api, path: str, params: dict[str, Any]) -> None:
    assert_problem(api.get(path, api.admin, params=params), 422, "validation_error")


# --- ledger --------------------------------------------------------------------------


def test_the_trial_balance_nets_to_zero(api: Api) -> None:
    admin = api.admin
    customer = api.customer(top_up="321.09")
    trial = read_ok(api, "/admin/ledger/trial-balance", admin, after=head(api))
    assert trial["sum"] == "0.00" and trial["balanced"] is True
    assert trial["items"][0]["account"] == "payments_in"  # what the provider confirmed
    assert trial["items"][0]["balance"].startswith("-")
    assert trial["total"] >= 2
    lines = every_item(api, "/admin/ledger/trial-balance", admin)
    mine = [line for line in lines if line["owner_id"] == str(customer.id)]
    assert [line["balance"] for line in mine] == ["321.09"]
    assert mine[0]["account"] == "user" and mine[0]["owner_name"] == "Test User"
    cents = sum(int(line["balance"].replace(".", "")) for line in lines)
    assert cents == 0

    page = read_ok(api, "/admin/ledger/trial-balance", admin, params={"limit": 1, "offset": 1})
    assert [line["account_id"] for line in page["items"]] == [lines[1]["account_id"]]
    assert page["sum"] == "0.00" and page["total"] == len(lines)


# --- audit ---------------------------------------------------------------------------


def test_the_audit_trail_says_who_why_and_when_oldest_first(api: Api) -> None:
    admin = api.admin
    host = api.register("host")
    request_id = f"req-{uuid4().hex[:12]}"
    created = api.ok(
        api.post(
            "/kitchens",
            host,
            json={
                "name": "Audited",
                "city": "Los Angeles",
                "jurisdiction": "los_angeles",
                "address": "9 Audit Way",
                "hourly_rate": "10.00",
                "capacity": 2,
            },
            headers={"X-Request-ID": request_id, "Idempotency-Key": "audit-key-1"},
        ),
        201,
    )
    updated = api.ok(api.patch(f"/kitchens/{created['id']}", host, json={"capacity": 3}))

    trail = read_ok(
        api,
        "/admin/audit",
        admin,
        after=updated["position"],
        params={"aggregate_id": created["id"]},
    )
    assert [e["event_type"] for e in trail["items"]] == [
        "Kitchen.KitchenCreated",
        "Kitchen.KitchenUpdated",
    ]
    assert trail["next_after_position"] is None and trail["limit"] == 20
    first, second = trail["items"]
    assert first["aggregate_id"] == created["id"] and first["aggregate_type"] == "Kitchen"
    assert (first["actor_id"], first["actor_role"]) == (str(host.id), "host")
    assert first["request_id"] == request_id
    assert first["correlation_id"] == "audit-key-1"
    assert first["payload"]["name"] == "Audited"
    assert first["aggregate_version"] == 1 and second["aggregate_version"] == 2
    assert first["position"] < second["position"] <= updated["position"]

    by_type = read_ok(
        api,
        "/admin/audit",
        admin,
        params={"actor_id": str(host.id), "event_type": "Kitchen.KitchenUpdated"},
    )
    assert [e["position"] for e in by_type["items"]] == [second["position"]]
    in_time = read_ok(
        api,
        "/admin/audit",
        admin,
        params={"aggregate_id": created["id"], "since": "2020-01-01", "until": "2999-12-31"},
    )
    assert len(in_time["items"]) == 2
    too_early = read_ok(
        api,
        "/admin/audit",
        admin,
        params={"aggregate_id": created["id"], "until": "2020-01-01T00:00:00+01:00"},
    )
    assert too_early["items"] == []


def test_audit_pages_by_keyset(api: Api) -> None:
    admin = api.admin
    customer = api.register("customer")
    for amount in ("1.00", "2.00", "3.00", "4.00", "5.00"):
        api.ok(
            api.post(
                "/accounts/me/top-ups",
                customer,
                json={"amount": amount, "payment_method": "pm_card_visa"},
            ),
            202,
        )
    params: dict[str, Any] = {"actor_id": str(customer.id), "limit": 2}
    whole = read_ok(api, "/admin/audit", admin, after=head(api), params={**params, "limit": 100})
    positions = [e["position"] for e in whole["items"]]
    assert len(positions) >= 5 and positions == sorted(positions)  # the top-ups

    seen: list[int] = []
    after_position = None
    while True:
        sent = params if after_position is None else {**params, "after_position": after_position}
        page = read_ok(api, "/admin/audit", admin, params=sent)
        assert len(page["items"]) <= 2
        seen += [e["position"] for e in page["items"]]
        after_position = page["next_after_position"]
        if after_position is None:
            break
        assert after_position == seen[-1]
    assert seen == positions


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"since": "2030-02-02", "until": "2030-02-01"}, "invalid_range"),
        ({"since": "2030-02-02T10:00:00"}, "validation_error"),
        ({"until": "next week"}, "validation_error"),
        ({"after_position": -1}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"limit": 101}, "validation_error"),
        ({"aggregate_id": "k-1"}, "validation_error"),
        ({"actor_id": "1"}, "validation_error"),
        ({"event_type": "x" * 201}, "validation_error"),
        ({"event_type": "Kitchen.KitchenCreated\x00"}, "validation_error"),
    ],
)
def test_bad_audit_filters_are_422(api: Api, params: dict[str, Any], code: str) -> None:
    assert_problem(api.get("/admin/audit", api.admin, params=params), 422, code)


# --- time travel ---------------------------------------------------------------------


def test_an_aggregates_events_and_its_state_at_a_point(api: Api) -> None:
    admin = api.admin
    host = api.register("host")
    kitchen = api.draft_kitchen(host, name="Time Machine")
    renamed = api.ok(api.patch(f"/kitchens/{kitchen['id']}", host, json={"name": "Renamed"}))
    submitted = api.ok(api.post(f"/kitchens/{kitchen['id']}/submit", host))

    response = api.get(f"/admin/aggregates/{kitchen['id']}/events", admin)
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Prep-Position"]) >= submitted["position"]
    events = response.json()
    assert events["aggregate_id"] == kitchen["id"] and events["total"] == 3
    assert [(e["version"], e["type"]) for e in events["items"]] == [
        (1, "Kitchen.KitchenCreated"),
        (2, "Kitchen.KitchenUpdated"),
        (3, "Kitchen.KitchenSubmittedForReview"),
    ]
    assert {(e["actor_id"], e["actor_role"]) for e in events["items"]} == {(str(host.id), "host")}
    assert events["items"][1]["payload"]["name"] == "Renamed"
    assert (events["limit"], events["offset"]) == (20, 0)
    second_page = api.ok(
        api.get(
            f"/admin/aggregates/{kitchen['id']}/events", admin, params={"limit": 2, "offset": 2}
        )
    )
    assert [e["version"] for e in second_page["items"]] == [3]
    assert (second_page["total"], second_page["limit"], second_page["offset"]) == (3, 2, 2)
    too_many = {"limit": 101}
    assert_problem(
        api.get(f"/admin/aggregates/{kitchen['id']}/events", admin, params=too_many),
        422,
        "validation_error",
    )

    path = f"/admin/aggregates/{kitchen['id']}/state"
    first = api.ok(api.get(path, admin, params={"version": 1}))
    assert (first["version"], first["latest_version"]) == (1, 3)
    assert first["aggregate_type"] == "Kitchen" and first["as_of"] is None
    assert (first["state"]["name"], first["state"]["status"]) == ("Time Machine", "draft")
    second = api.ok(api.get(path, admin, params={"version": 2}))
    assert (second["state"]["name"], second["state"]["status"]) == ("Renamed", "draft")
    moment = events["items"][1]["timestamp"]
    as_of = api.ok(api.get(path, admin, params={"as_of": moment}))
    assert as_of["version"] == 2 and as_of["as_of"] is not None
    latest = api.ok(api.get(path, admin, params={"as_of": "2999-01-01"}))
    assert (latest["version"], latest["state"]["status"]) == (3, "pending_review")
    assert renamed["version"] == 2


def test_a_users_state_never_shows_the_password_hash(api: Api) -> None:
    customer = api.register("customer")
    state = api.ok(
        api.get(f"/admin/aggregates/{customer.id}/state", api.admin, params={"version": 1})
    )
    assert state["aggregate_type"] == "User"
    assert "correct horse" not in str(state)
    assert all(value == "***" for key, value in state["state"].items() if "password" in key)
    events = api.ok(api.get(f"/admin/aggregates/{customer.id}/events", api.admin))
    assert "argon2" not in str(events)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 422, "version_or_as_of_required"),
        ({"version": 1, "as_of": "2030-01-01"}, 422, "version_or_as_of_required"),
        ({"version": 99}, 422, "version_out_of_range"),
        ({"version": 0}, 422, "validation_error"),
        ({"version": "first"}, 422, "validation_error"),
        ({"as_of": "2030-01-01T00:00:00"}, 422, "validation_error"),
        ({"as_of": "2000-01-01"}, 404, "not_found"),
    ],
)
def test_state_needs_exactly_one_point_that_exists(
    api: Api, params: dict[str, Any], status: int, code: str
) -> None:
    kitchen = api.draft_kitchen(api.register("host"))
    response = api.get(f"/admin/aggregates/{kitchen['id']}/state", api.admin, params=params)
    assert_problem(response, status, code)


def test_an_unknown_aggregate_is_404_and_a_malformed_id_422(api: Api) -> None:
    admin = api.admin
    assert_problem(api.get(f"/admin/aggregates/{uuid4()}/events", admin), 404, "not_found")
    unknown_state = api.get(f"/admin/aggregates/{uuid4()}/state", admin, params={"version": 1})
    assert_problem(unknown_state, 404, "not_found")
    assert_problem(api.get("/admin/aggregates/xyz/events", admin), 422, "validation_error")


# --- projections ---------------------------------------------------------------------


def test_projections_show_position_head_lag_and_status(api: Api) -> None:
    api.customer(top_up="5.00")
    after = head(api)
    read_ok(api, "/accounts/me/entries", api.admin, after=after)  # accounts caught up
    response = api.get("/admin/projections", api.admin)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [p["name"] for p in items] == [p.name for p in PROJECTIONS]
    for projection in items:
        assert projection["status"] == "running"
        assert 0 <= projection["position"] <= projection["head"]
        assert projection["head"] >= after
        assert projection["lag_events"] == projection["head"] - projection["position"]
        assert projection["lag_seconds"] >= 0
        assert projection["failure"] is None
        assert projection["generation"] >= 1
        assert projection["version"] == projection["code_version"]
    assert int(response.headers["X-Prep-Position"]) == min(p["position"] for p in items)
    accounts = next(p for p in items if p["name"] == "accounts")
    assert accounts["position"] >= after


# --- who may ask ---------------------------------------------------------------------

ADMIN_QUERIES = [
    "/admin/users",
    "/admin/moderation/kitchens",
    "/admin/certificates",
    "/admin/compliance/expiring",
    "/admin/ledger/trial-balance",
    "/admin/audit",
    f"/admin/aggregates/{uuid4()}/events",
    f"/admin/aggregates/{uuid4()}/state?version=1",
    "/admin/projections",
]


def test_admin_queries_refuse_everyone_else(api: Api) -> None:
    others = [api.user_with_role(role) for role in ("customer", "host", "analyst")]
    for path in ADMIN_QUERIES:
        assert_problem(api.get(path), 401, "not_authenticated")
        for user in others:
            assert_problem(read(api, path, user), 403, "forbidden")
