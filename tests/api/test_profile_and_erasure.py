"""PATCH /users/me (rectification), DELETE /users/me and POST /admin/users/{id}/erase
(erasure) over HTTP, on each backend: what they answer, what they refuse as problems,
and what an erased user's tokens, email and login do afterwards."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.api.conftest import PASSWORD, Api, User, assert_problem

REASON = "Asked to be forgotten, ticket 4711"
WRONG_PASSWORD = "not the password at all"


def me(api: Api, user: User, position: int = 0) -> dict[str, Any]:
    headers = {"X-Prep-Min-Position": str(position)} if position else {}
    return api.ok(api.get("/users/me", user, headers=headers))


def erase_me(api: Api, user: User, password: str = PASSWORD, **kwargs: Any) -> Any:
    return api.client.request(
        "DELETE",
        "/api/v1/users/me",
        json={"password": password},
        headers={**user.headers, **kwargs.pop("headers", {})},
        **kwargs,
    )


def erase(api: Api, user_id: UUID | str, body: Any, **kwargs: Any) -> Any:
    return api.post(f"/admin/users/{user_id}/erase", api.admin, json=body, **kwargs)


def login(api: Api, email: str, password: str = PASSWORD) -> Any:
    return api.post("/auth/login", json={"email": email, "password": password})


# --- PATCH /users/me --------------------------------------------------------------------


def test_a_user_changes_their_full_name(api: Api) -> None:
    user = api.register()
    response = api.patch("/users/me", user, json={"full_name": "  Ana María López "})
    changed = api.ok(response)
    assert changed["full_name"] == "Ana María López" and changed["email"] == user.email
    assert response.headers["X-Prep-Position"] == str(changed["position"])
    assert me(api, user, changed["position"])["full_name"] == "Ana María López"
    # Fields left out or null stay as they are.
    unchanged = api.ok(api.patch("/users/me", user, json={"full_name": None, "email": None}))
    assert unchanged["version"] == changed["version"]


def test_a_user_changes_their_email_and_signs_in_with_it(api: Api) -> None:
    user = api.register()
    new_email = f"new-{uuid4().hex[:10]}@example.com"
    changed = api.ok(
        api.patch(
            "/users/me",
            user,
            json={"email": new_email.upper(), "current_password": PASSWORD},
        )
    )
    assert changed["email"] == new_email
    # The token goes on working: it names the user, not the email.
    assert me(api, user, changed["position"])["email"] == new_email
    assert_problem(login(api, user.email), 401, "invalid_credentials")
    assert api.log_in(new_email).id == user.id
    # The old email is free for anyone.
    other = api.register(email=user.email)
    assert other.id != user.id


def test_an_email_change_needs_the_current_password_entered_again(api: Api) -> None:
    user = api.register()
    email = f"other-{uuid4().hex[:10]}@example.com"
    missing = assert_problem(
        api.patch("/users/me", user, json={"email": email}), 422, "current_password_required"
    )
    assert missing["errors"][0]["loc"] == ["body", "current_password"]
    assert_problem(
        api.patch("/users/me", user, json={"email": email, "current_password": WRONG_PASSWORD}),
        403,
        "wrong_password",
    )
    assert me(api, user)["email"] == user.email


def test_wrong_current_passwords_are_limited_across_profile_password_and_erasure(
    api: Api,
) -> None:
    user = api.register()
    failures_max = api.settings.login_failures_max
    body = {"email": f"x-{uuid4().hex[:8]}@example.com", "current_password": WRONG_PASSWORD}
    for _ in range(failures_max - 1):
        assert_problem(api.patch("/users/me", user, json=body), 403, "wrong_password")
    assert_problem(erase_me(api, user, WRONG_PASSWORD), 403, "wrong_password")
    limited = api.post(
        "/users/me/password",
        user,
        json={"current_password": PASSWORD, "new_password": "a new horse battery staple"},
    )
    assert_problem(limited, 429, "too_many_password_attempts")
    assert int(limited.headers["Retry-After"]) >= 1
    assert_problem(erase_me(api, user), 429, "too_many_password_attempts")
    assert_problem(api.patch("/users/me", user, json=body), 429, "too_many_password_attempts")
    # A name alone checks no password: it is not limited.
    api.ok(api.patch("/users/me", user, json={"full_name": "Still Me"}))


def test_an_email_taken_in_any_case_is_409(api: Api) -> None:
    user = api.register()
    other = api.register()
    taken = api.patch(
        "/users/me", user, json={"email": other.email.upper(), "current_password": PASSWORD}
    )
    assert_problem(taken, 409, "email_taken")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"full_name": ""}, 422, "invalid_full_name"),
        ({"full_name": "x" * 201}, 422, "invalid_full_name"),
        ({"full_name": "\u200b\u200b"}, 422, "invalid_full_name"),
        ({"full_name": 5}, 422, "validation_error"),
        ({"full_name": ["Ana"]}, 422, "validation_error"),
        ({"full_name": "x" * 2000}, 422, "validation_error"),
        ({"full_name": "nul\x00"}, 422, "validation_error"),
        ({"nickname": "Ana"}, 422, "validation_error"),
        ({"email": "not-an-email", "current_password": PASSWORD}, 422, "invalid_email"),
        ({"email": "a" * 300 + "@example.com", "current_password": PASSWORD}, 422, "invalid_email"),
        ({"email": 42, "current_password": PASSWORD}, 422, "validation_error"),
        ({"email": "a@example.com", "current_password": 12}, 422, "validation_error"),
        ([], 422, "validation_error"),
    ],
)
def test_a_patch_the_rules_refuse_is_a_problem(api: Api, body: Any, status: int, code: str) -> None:
    user = api.register()
    assert_problem(api.patch("/users/me", user, json=body), status, code)


def test_malformed_json_and_anonymous_patches_are_problems(api: Api) -> None:
    user = api.register()
    malformed = api.patch(
        "/users/me",
        user,
        content=b'{"full_name": ',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(malformed, 400, "malformed_json")
    assert_problem(api.patch("/users/me", json={"full_name": "Anon"}), 401, "not_authenticated")


def test_a_profile_change_under_an_idempotency_key_is_done_once(api: Api) -> None:
    user = api.register()
    headers = {"Idempotency-Key": f"profile-{uuid4()}"}
    first = api.ok(api.patch("/users/me", user, json={"full_name": "Once"}, headers=headers))
    again = api.ok(api.patch("/users/me", user, json={"full_name": "Once"}, headers=headers))
    assert again == first
    assert_problem(
        api.patch("/users/me", user, json={"full_name": "Twice"}, headers=headers),
        422,
        "idempotency_key_reused",
    )


# --- DELETE /users/me -------------------------------------------------------------------


def test_a_user_erases_themselves_and_is_gone(api: Api) -> None:
    user = api.register()
    response = erase_me(api, user)
    erased = api.ok(response)
    assert erased["id"] == str(user.id) and erased["forced"] is False
    assert erased["blockers"] == [] and erased["kitchens_withdrawn"] == []
    assert response.headers["X-Prep-Position"] == str(erased["position"])
    assert api.services.runtime.app.personal_data_destroyed(user.id)
    # Every token of theirs stops at once, for commands and queries alike.
    assert_problem(api.get("/users/me", user), 401, "user_erased")
    assert_problem(api.patch("/users/me", user, json={"full_name": "Back"}), 401, "user_erased")
    # Nobody signs in as them: their email is no one's.
    assert_problem(login(api, user.email), 401, "invalid_credentials")
    # Their email can be registered again, by a new user.
    again = api.register("host", email=user.email.upper())
    assert again.id != user.id and me(api, again)["email"] == user.email


def test_a_user_with_money_on_their_account_is_refused_naming_it(api: Api) -> None:
    customer = api.customer("25.00")
    blocked = assert_problem(erase_me(api, customer), 409, "erasure_blocked")
    assert blocked["blockers"] == [{"kind": "balance", "available": "25.00", "held": "0.00"}]
    assert blocked["blockers_total"] == 1
    assert me(api, customer)["email"] == customer.email


def test_a_booking_blocks_both_its_customer_and_its_host(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    customer = api.customer("100.00")
    booking = api.ok(
        api.post(
            "/bookings",
            customer,
            json={"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=20)},
        ),
        201,
    )
    as_customer = assert_problem(erase_me(api, customer), 409, "erasure_blocked")
    assert as_customer["blockers"] == [
        {"kind": "balance", "available": "0.00", "held": "100.00"},
        {"kind": "booking", "id": booking["id"], "as": "customer", "status": "pending"},
    ]
    as_host = assert_problem(erase_me(api, host), 409, "erasure_blocked")
    assert as_host["blockers"] == [
        {"kind": "booking", "id": booking["id"], "as": "host", "status": "pending"}
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (None, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"password": 12}, 422, "validation_error"),
        ({"password": "x" * 5000}, 422, "validation_error"),
        ({"password": PASSWORD, "reason": "bye"}, 422, "validation_error"),
        ({"password": WRONG_PASSWORD}, 403, "wrong_password"),
    ],
)
def test_an_erasure_the_rules_refuse_is_a_problem(
    api: Api, body: Any, status: int, code: str
) -> None:
    user = api.register()
    response = api.client.request("DELETE", "/api/v1/users/me", json=body, headers=user.headers)
    assert_problem(response, status, code)
    assert me(api, user)["id"] == str(user.id)


def test_an_admin_does_not_erase_themselves(api: Api) -> None:
    admin = api.admin
    assert_problem(erase_me(api, admin), 403, "admin_self_erasure")
    assert_problem(erase(api, admin.id, {"reason": REASON}), 403, "admin_self_erasure")


# --- POST /admin/users/{id}/erase -------------------------------------------------------


def test_an_admin_erases_a_user_saying_why(api: Api) -> None:
    user = api.register()
    key = {"Idempotency-Key": f"erase-{uuid4()}"}
    erased = api.ok(erase(api, user.id, {"reason": REASON}, headers=key))
    assert erased["id"] == str(user.id) and not erased["forced"]
    assert api.ok(erase(api, user.id, {"reason": REASON}, headers=key)) == erased
    assert_problem(api.get("/users/me", user), 401, "user_erased")
    # Erased, the user is no one to admins' user commands.
    assert_problem(erase(api, user.id, {"reason": REASON}), 404, "user_not_found")
    assert_problem(
        api.patch(f"/admin/users/{user.id}", api.admin, json={"active": True}),
        404,
        "user_not_found",
    )


def test_an_admin_forces_past_the_blockers_and_the_hosts_kitchens_leave_the_market(
    api: Api,
) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    customer = api.customer("100.00")
    booking = api.ok(
        api.post(
            "/bookings",
            customer,
            json={"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=21)},
        ),
        201,
    )
    blocked = assert_problem(erase(api, host.id, {"reason": REASON}), 409, "erasure_blocked")
    assert [blocker["kind"] for blocker in blocked["blockers"]] == ["booking"]

    forced = api.ok(erase(api, host.id, {"reason": REASON, "force": True}))

    assert forced["forced"] is True and forced["blockers"] == blocked["blockers"]
    assert forced["kitchens_withdrawn"] == [kitchen["id"]]
    position = {"X-Prep-Min-Position": str(forced["position"])}
    assert_problem(
        api.get(f"/kitchens/{kitchen['id']}", headers=position), 404, "kitchen_not_found"
    )
    suspended = api.ok(api.get(f"/kitchens/{kitchen['id']}", api.admin, headers=position))
    assert suspended["status"] == "suspended"
    # The booking was cancelled with it, its whole price released to its customer.
    assert forced["bookings_settled"] == [
        {"id": booking["id"], "as": "host", "was": "pending", "released": "100.00"}
    ]
    seen = api.ok(api.get(f"/bookings/{booking['id']}", customer, headers=position))
    assert (seen["status"], seen["cancelled_by_role"]) == ("cancelled", "admin")
    assert (api.account(customer).balance_cents, api.account(customer).held_cents) == (100_00, 0)
    assert_problem(
        api.patch(f"/bookings/{booking['id']}/cancel", customer, json={}),
        409,
        "already_cancelled",
    )


def test_a_forced_erasure_of_a_customer_cancels_their_booking_for_its_host_to_see(
    api: Api,
) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    customer = api.customer("100.00")
    booking = api.ok(
        api.post(
            "/bookings",
            customer,
            json={"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=21)},
        ),
        201,
    )
    api.ok(api.post(f"/bookings/{booking['id']}/confirm", host))

    forced = api.ok(erase(api, customer.id, {"reason": REASON, "force": True}))

    assert [blocker["kind"] for blocker in forced["blockers"]] == ["balance", "booking"]
    assert forced["bookings_settled"] == [
        {"id": booking["id"], "as": "customer", "was": "confirmed", "released": "100.00"}
    ]
    position = {"X-Prep-Min-Position": str(forced["position"])}
    seen = api.ok(api.get(f"/bookings/{booking['id']}", host, headers=position))
    assert (seen["status"], seen["cancelled_by_role"], seen["notes"]) == (
        "cancelled",
        "admin",
        None,
    )
    # The money stays on the erased account, held no more: the operator's to settle.
    assert (api.account(customer).balance_cents, api.account(customer).held_cents) == (100_00, 0)
    assert_problem(
        api.post(f"/bookings/{booking['id']}/confirm", host), 409, "invalid_state_transition"
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (None, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"reason": ""}, 422, "invalid_reason"),
        ({"reason": "   "}, 422, "invalid_reason"),
        ({"reason": "x" * 1001}, 422, "invalid_reason"),
        ({"reason": "x" * 10_001}, 422, "validation_error"),
        ({"reason": 7}, 422, "validation_error"),
        ({"reason": REASON, "force": "yes"}, 422, "validation_error"),
        ({"reason": REASON, "force": 1}, 422, "validation_error"),
        ({"reason": REASON, "forced": True}, 422, "validation_error"),
    ],
)
def test_an_admin_erasure_the_rules_refuse_is_a_problem(
    api: Api, body: Any, status: int, code: str
) -> None:
    user = api.register()
    assert_problem(erase(api, user.id, body), status, code)
    assert me(api, user)["id"] == str(user.id)


def test_an_unknown_or_malformed_user_id_and_a_non_admin_are_refused(api: Api) -> None:
    assert_problem(erase(api, uuid4(), {"reason": REASON}), 404, "user_not_found")
    assert_problem(erase(api, "not-a-uuid", {"reason": REASON}), 422, "validation_error")
    user = api.register()
    other = api.register()
    assert_problem(
        api.post(f"/admin/users/{other.id}/erase", user, json={"reason": REASON}), 403, "forbidden"
    )


def test_the_erasure_routes_are_listed_and_documented(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    me_path = paths["/api/v1/users/me"]
    assert {"get", "patch", "delete"} <= set(me_path)
    erase_path = paths["/api/v1/admin/users/{user_id}/erase"]["post"]
    assert {"200", "403", "404", "409", "422"} <= set(erase_path["responses"])
    assert "Idempotency-Key" in {p["name"] for p in erase_path["parameters"]}
