"""Top-ups and payouts (deposits are gone), an admin's changes to users, and projection
rebuilds over HTTP, on each backend."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.api.conftest import Api, User, assert_problem

# --- top-ups ---------------------------------------------------------------------------


def top_up_body(amount: str) -> dict[str, str]:
    return {"amount": amount, "payment_method": "pm_card_visa"}


def balance_read(api: Api, user: User) -> dict[str, object]:
    """``GET /accounts/me`` once the read model has everything stored so far."""
    head = {"X-Prep-Min-Position": str(api.services.runtime.app.position())}
    return api.ok(api.get("/accounts/me", user, headers=head))


def test_a_customer_tops_up_their_own_account_once_the_provider_confirms(api: Api) -> None:
    user = api.register("customer")
    response = api.post("/accounts/me/top-ups", user, json=top_up_body("250.00"))
    assert response.status_code == 202, response.text
    top_up = response.json()
    assert int(response.headers["X-Prep-Position"]) == top_up["position"] > 0
    # Processing until the notification, which the application's own delivery thread
    # may already have handed over.
    assert top_up["status"] in ("processing", "succeeded") and top_up["amount"] == "250.00"
    assert top_up["test_mode"] is True and top_up["provider"] == "sandbox"
    api.settle_payments()
    account = balance_read(api, user)
    assert (account["balance"], account["held"], account["available"]) == (
        "250.00",
        "0.00",
        "250.00",
    )
    second = api.top_up(user, "99.5")
    assert second["amount"] == "99.50"
    assert second["id"] != top_up["id"]
    assert balance_read(api, user)["balance"] == "349.50"


@pytest.mark.parametrize("role", ["host", "analyst", "admin"])
def test_only_customers_top_up(api: Api, role: str) -> None:
    user = api.admin if role == "admin" else api.user_with_role(role)
    response = api.post("/accounts/me/top-ups", user, json=top_up_body("1.00"))
    assert_problem(response, 403, "forbidden")


def test_a_retried_top_up_with_its_idempotency_key_pays_once(api: Api) -> None:
    user = api.register("customer")
    key = {"Idempotency-Key": f"top-up-{uuid4()}"}
    first = api.post("/accounts/me/top-ups", user, json=top_up_body("10.00"), headers=key)
    again = api.post("/accounts/me/top-ups", user, json=top_up_body("10.00"), headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    api.settle_payments()
    api.top_up(user, "1.00")
    assert api.account(user).balance_cents == 1100
    # Later too, the same top-up, as it stands now: paid once.
    later = api.post("/accounts/me/top-ups", user, json=top_up_body("10.00"), headers=key)
    assert later.status_code == 202
    assert (later.json()["id"], later.json()["status"]) == (first.json()["id"], "succeeded")
    api.settle_payments()
    assert api.account(user).balance_cents == 1100
    reused = api.post("/accounts/me/top-ups", user, json=top_up_body("20.00"), headers=key)
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
        ({"payment_method": None}, "validation_error"),
        ({"payment_method": "4242424242424242"}, "invalid_payment_method"),
        ({"amount": "1.00", "currency": "EUR"}, "validation_error"),
    ],
)
def test_a_top_up_of_a_wrong_amount_or_card_is_422(
    api: Api, body: dict[str, object], code: str
) -> None:
    user = api.register("customer")
    sent = {key: value for key, value in (top_up_body("1.00") | body).items() if value is not None}
    assert_problem(api.post("/accounts/me/top-ups", user, json=sent), 422, code)
    assert_problem(api.post("/accounts/me/top-ups", user, json={}), 422, "validation_error")


def test_a_top_up_needs_a_token(api: Api) -> None:
    response = api.post("/accounts/me/top-ups", json=top_up_body("1.00"))
    assert_problem(response, 401, "not_authenticated")


def test_deposits_are_gone(api: Api) -> None:
    user = api.register("customer")
    response = api.post("/accounts/me/deposits", user, json={"amount": "100000000.00"})
    assert_problem(response, 410, "deposits_removed")
    assert "/accounts/me/top-ups" in response.headers["Link"]
    assert api.account(user).balance_cents == 0


# --- payouts ---------------------------------------------------------------------------


def test_a_host_is_paid_out_up_to_the_available_balance(api: Api) -> None:
    host = api.register("host")
    api.earn(host, api.published_kitchen(host), days=2)
    assert api.account(host).balance_cents == 9000
    missing = api.post("/accounts/me/payouts", host, json={"amount": "60.00"})
    assert_problem(missing, 409, "payout_destination_missing")
    destination = {"destination": "bank-of-test"}
    set_ = api.ok(api.put("/accounts/me/payout-destination", host, json=destination))
    assert (set_["payout_destination"], set_["balance"]) == ("bank-of-test", "90.00")
    response = api.post("/accounts/me/payouts", host, json={"amount": "60.00"})
    assert response.status_code == 201, response.text
    requested = response.json()
    [payout] = requested["payouts"]
    # The tests' sandbox settles at once; with a delay it would answer ``pending`` first.
    assert (payout["method"], payout["amount"], payout["status"]) == ("payout", "60.00", "paid")
    assert payout["destination"] == "bank-of-test"
    assert requested["account"]["balance"] == requested["account"]["available"] == "30.00"
    assert int(response.headers["X-Prep-Position"]) == requested["position"]
    beyond = api.post("/accounts/me/payouts", host, json={"amount": "30.01"})
    assert_problem(beyond, 402, "insufficient_funds")
    assert_problem(
        api.post("/accounts/me/payouts", host, json={"amount": "0.00"}), 422, "invalid_amount"
    )
    api.settle_payments()
    assert api.account(host).balance_cents == 3000
    assert api.account(host).payouts_pending == {}  # posted


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
