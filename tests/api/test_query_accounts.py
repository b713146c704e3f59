"""Account queries over HTTP, on each backend: the caller's balance, held and available
amounts and statement (newest first, paged) as top-ups, holds and captures happen; and
an account the read model has not seen yet (404), or a position it has not reached
(503), with the projectors held back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prep_es.app import create_app
from prep_es.services.passwords import Argon2Passwords
from projections import PROJECTIONS
from projections.generations import ensure_ready
from projections.runners import ProjectionRunner
from projections.users import UsersProjection
from tests.api.conftest import ADMIN_EMAIL, PASSWORD, Api, api_settings, assert_problem
from tests.api.reading import head, read, read_ok
from tests.support import START_OF_TESTS, MutableClock


def test_a_new_customers_account_is_empty(api: Api) -> None:
    customer = api.register("customer")
    account = read_ok(api, "/accounts/me", customer, after=head(api))
    assert account["owner_id"] == str(customer.id)
    assert (account["balance"], account["held"], account["available"]) == ("0.00", "0.00", "0.00")
    assert read_ok(api, "/accounts/me/entries", customer) == {
        "items": [],
        "total": 0,
        "limit": 20,
        "offset": 0,
    }


def test_top_ups_and_holds_show_in_balance_and_statement(api: Api) -> None:
    customer = api.register("customer")
    api.top_up(customer, "250.00")
    api.top_up(customer, "0.55")
    api.top_up(customer, "7.00", "pm_card_chargeDeclined")  # credits nothing
    kitchen = api.published_kitchen(api.register("host"), hourly_rate="60.00")
    booking = api.ok(
        api.post(
            "/bookings",
            customer,
            json={"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=9, hours=2)},
        ),
        201,
    )

    account = read_ok(api, "/accounts/me", customer, after=booking["position"])
    assert (account["balance"], account["held"], account["available"]) == (
        "250.55",
        "120.00",
        "130.55",
    )
    statement = read_ok(api, "/accounts/me/entries", customer, after=booking["position"])
    assert statement["total"] == 3
    hold, second, credited = statement["items"]
    assert hold["kind"] == "hold_placed"
    assert (hold["amount"], hold["held_delta"]) == ("0.00", "120.00")
    assert (hold["balance_after"], hold["held_after"], hold["available_after"]) == (
        "250.55",
        "120.00",
        "130.55",
    )
    assert hold["booking_id"] == booking["id"]
    assert hold["counter_account"] is None
    assert second["kind"] == "top_up" and second["amount"] == "0.55"
    assert credited["kind"] == "top_up" and credited["amount"] == "250.00"
    assert credited["counter_account"] == "payments_in"
    assert credited["balance_after"] == "250.00"
    assert hold["position"] > second["position"] > credited["position"]
    assert {entry["account_id"] for entry in statement["items"]} == {account["account_id"]}

    page = read_ok(api, "/accounts/me/entries", customer, params={"limit": 1, "offset": 1})
    assert [entry["id"] for entry in page["items"]] == [second["id"]]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)


def test_each_user_sees_their_own_account_only(api: Api) -> None:
    rich = api.customer(top_up="900.00")
    poor = api.register("customer")
    rich_account = read_ok(api, "/accounts/me", rich, after=head(api))
    poor_account = read_ok(api, "/accounts/me", poor)
    assert rich_account["account_id"] != poor_account["account_id"]
    assert poor_account["balance"] == "0.00"
    assert read_ok(api, "/accounts/me/entries", poor)["total"] == 0


@pytest.mark.parametrize("role", ["host", "admin", "analyst"])
def test_every_role_has_an_account(api: Api, role: str) -> None:
    user = api.admin if role == "admin" else api.user_with_role(role)
    assert read_ok(api, "/accounts/me", user, after=head(api))["owner_id"] == str(user.id)


def test_accounts_need_a_token(api: Api) -> None:
    assert_problem(api.get("/accounts/me"), 401, "not_authenticated")
    assert_problem(api.get("/accounts/me/entries"), 401, "not_authenticated")


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -5}, {"limit": "x"}])
def test_a_bad_statement_page_is_422(api: Api, params: dict[str, Any]) -> None:
    customer = api.register("customer")
    response = api.get("/accounts/me/entries", customer, params=params)
    assert_problem(response, 422, "validation_error")


# --- with the projectors held back ---------------------------------------------------


@pytest.fixture
def stalled(tmp_path: Path) -> Iterator[Api]:
    """An API process that runs no projectors: every read model exists (as a projector
    process elsewhere would have made them) but only the users read model is caught up,
    by hand."""
    settings = api_settings(
        f"sqlite:///{tmp_path / 'stalled.db'}", run_projectors=False, min_position_wait_s=0.2
    )
    clock = MutableClock(START_OF_TESTS)
    app = create_app(settings, clock=clock, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as client:
        yield Api(app=app, client=client, clock=clock, settings=settings)


def catch_up_users(api: Api) -> None:
    database = api.services.read_side.write_database
    for projection in PROJECTIONS:
        ensure_ready(database, projection)
    ProjectionRunner(UsersProjection, api.services.runtime.app, database).catch_up()


def test_an_account_the_read_model_has_not_seen_is_404(stalled: Api) -> None:
    created = stalled.ok(
        stalled.post(
            "/auth/register",
            json={
                "email": "late@example.com",
                "password": PASSWORD,
                "full_name": "Late",
                "role": "customer",
            },
        ),
        201,
    )
    catch_up_users(stalled)
    user = stalled.log_in("late@example.com")
    assert_problem(read(stalled, "/accounts/me", user), 404, "account_not_found")
    assert read_ok(stalled, "/accounts/me/entries", user)["total"] == 0

    response = read(stalled, "/accounts/me", user, after=created["position"])
    assert_problem(response, 503, "read_model_behind")
    assert response.headers["Retry-After"] == "1"
    assert stalled.log_in(ADMIN_EMAIL).role == "admin"
