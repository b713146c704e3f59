"""Deposits and payouts, an admin's changes to users, and projection rebuilds over HTTP,
on each backend."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.api.conftest import Api, assert_problem

# --- deposits --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["customer", "host", "analyst"])
def test_a_user_deposits_into_their_own_account(api: Api, role: str) -> None:
    user = api.user_with_role(role)
    response = api.post("/accounts/me/deposits", user, json={"amount": "250.00"})
    assert response.status_code == 201, response.text
    entry = response.json()
    assert int(response.headers["X-Prep-Position"]) == entry["position"] > 0
    assert entry["kind"] == "deposit"
    assert entry["amount"] == "250.00"
    assert entry["balance"] == "250.00"
    assert entry["held"] == "0.00"
    assert entry["available"] == "250.00"
    second = api.ok(api.post("/accounts/me/deposits", user, json={"amount": "99.5"}), 201)
    assert second["amount"] == "99.50"
    assert second["balance"] == "349.50"
    assert second["account_id"] == entry["account_id"]
    assert second["id"] != entry["id"]


def test_a_retried_deposit_with_its_idempotency_key_is_made_once(api: Api) -> None:
    user = api.register("customer")
    key = {"Idempotency-Key": f"webhook-{uuid4()}"}
    first = api.post("/accounts/me/deposits", user, json={"amount": "10.00"}, headers=key)
    again = api.post("/accounts/me/deposits", user, json={"amount": "10.00"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    after = api.ok(api.post("/accounts/me/deposits", user, json={"amount": "1.00"}), 201)
    assert after["balance"] == "11.00"
    # Later too, the original result, position included, though the store moved on.
    later = api.post("/accounts/me/deposits", user, json={"amount": "10.00"}, headers=key)
    assert (later.status_code, later.json()) == (201, first.json())
    assert (
        later.headers["X-Prep-Position"] == str(first.json()["position"]) != str(after["position"])
    )
    reused = api.post("/accounts/me/deposits", user, json={"amount": "20.00"}, headers=key)
    assert_problem(reused, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": "0.00"}, "invalid_amount"),
        ({"amount": "-5.00"}, "validation_error"),
        ({"amount": "1.001"}, "validation_error"),
        ({"amount": "Infinity"}, "validation_error"),
        ({"amount": "12345678901234.00"}, "validation_error"),
        ({"amount": None}, "validation_error"),
        ({}, "validation_error"),
        ({"amount": "1.00", "currency": "EUR"}, "validation_error"),
    ],
)
def test_a_deposit_of_a_wrong_amount_is_422(api: Api, body: dict[str, object], code: str) -> None:
    user = api.register("customer")
    assert_problem(api.post("/accounts/me/deposits", user, json=body), 422, code)


def test_a_deposit_needs_a_token(api: Api) -> None:
    response = api.post("/accounts/me/deposits", json={"amount": "1.00"})
    assert_problem(response, 401, "not_authenticated")


# --- payouts ---------------------------------------------------------------------------


def test_a_host_is_paid_out_up_to_the_available_balance(api: Api) -> None:
    host = api.register("host")
    api.ok(api.post("/accounts/me/deposits", host, json={"amount": "100.00"}), 201)
    response = api.post("/accounts/me/payouts", host, json={"amount": "60.00"})
    assert response.status_code == 201, response.text
    payout = response.json()
    assert payout["kind"] == "payout"
    assert payout["amount"] == "60.00"
    assert payout["balance"] == "40.00"
    assert int(response.headers["X-Prep-Position"]) == payout["position"]
    beyond = api.post("/accounts/me/payouts", host, json={"amount": "40.01"})
    assert_problem(beyond, 402, "insufficient_funds")
    assert_problem(
        api.post("/accounts/me/payouts", host, json={"amount": "0.00"}), 422, "invalid_amount"
    )


@pytest.mark.parametrize("role", ["customer", "admin", "analyst"])
def test_only_hosts_are_paid_out(api: Api, role: str) -> None:
    user = api.admin if role == "admin" else api.user_with_role(role)
    response = api.post("/accounts/me/payouts", user, json={"amount": "1.00"})
    assert_problem(response, 403, "forbidden")


# --- users -----------------------------------------------------------------------------


def test_an_admin_changes_a_users_role_and_active_flag(api: Api) -> None:
    user = api.register("customer")
    response = api.patch(f"/admin/users/{user.id}", api.admin, json={"role": "analyst"})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["id"] == str(user.id)
    assert changed["role"] == "analyst"
    assert changed["active"] is True
    assert int(response.headers["X-Prep-Position"]) == changed["position"]
    both = api.ok(
        api.patch(f"/admin/users/{user.id}", api.admin, json={"role": "host", "active": False})
    )
    assert (both["role"], both["active"]) == ("host", False)
    unchanged = api.ok(api.patch(f"/admin/users/{user.id}", api.admin, json={}))
    assert (unchanged["role"], unchanged["active"]) == ("host", False)


def test_changing_a_user_is_refused_when_it_should_be(api: Api) -> None:
    user = api.register("customer")
    path = f"/admin/users/{user.id}"
    assert_problem(api.patch(path, api.admin, json={"role": "owner"}), 422, "invalid_role")
    assert_problem(api.patch(path, api.admin, json={"active": "maybe"}), 422, "validation_error")
    assert_problem(api.patch(path, api.admin, json={"email": "x@y.z"}), 422, "validation_error")
    assert_problem(
        api.patch(f"/admin/users/{uuid4()}", api.admin, json={"active": False}),
        404,
        "user_not_found",
    )
    assert_problem(api.patch(path, user, json={"role": "admin"}), 403, "forbidden")
    assert_problem(api.patch(path, api.register("host"), json={"active": False}), 403, "forbidden")
    assert_problem(api.patch(path, json={"active": False}), 401, "not_authenticated")


@pytest.mark.parametrize("change", [{"active": False}, {"role": "analyst"}])
def test_an_admin_cannot_lock_themselves_out(api: Api, change: dict[str, object]) -> None:
    own = f"/admin/users/{api.admin.id}"
    assert_problem(api.patch(own, api.admin, json=change), 403, "forbidden")
    unchanged = api.ok(api.patch(own, api.admin, json={"active": True, "role": "admin"}))
    assert (unchanged["role"], unchanged["active"]) == ("admin", True)
    api.ok(api.get("/users/me", api.admin))


# --- projections -----------------------------------------------------------------------


def test_an_admin_starts_a_projection_rebuild(api: Api) -> None:
    response = api.post("/admin/projections/users/rebuild", api.admin)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["projection"] == "users"
    assert accepted["state"] == "building"
    assert accepted["generation"] >= 2
    assert response.headers["Location"] == "/api/v1/admin/projections"
    # Queries keep being answered while it builds, and once it has switched in.
    user = api.register("customer")
    assert api.ok(api.get("/users/me", user))["id"] == str(user.id)


def test_a_rebuild_is_for_admins_and_known_projections(api: Api) -> None:
    assert_problem(
        api.post("/admin/projections/nonesuch/rebuild", api.admin), 404, "projection_not_found"
    )
    for role in ("customer", "host", "analyst"):
        user = api.user_with_role(role)
        assert_problem(api.post("/admin/projections/users/rebuild", user), 403, "forbidden")
    assert_problem(api.post("/admin/projections/users/rebuild"), 401, "not_authenticated")
