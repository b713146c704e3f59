"""Booking commands over HTTP — request, confirm, decline, cancel, reschedule, complete —
with the money they hold, release and capture, and every refusal, on each backend.

Windows are placed relative to the module's clock (``Api.window``); the one test that
moves the clock moves it forward by whole days, which keeps every other window valid.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import pytest

from aggregates.policies import format_money
from tests.api.conftest import Api, User, assert_problem


@pytest.fixture
def host(api: Api) -> User:
    return api.register("host")


@pytest.fixture
def kitchen(api: Api, host: User) -> dict[str, Any]:
    return api.published_kitchen(host)


@pytest.fixture
def customer(api: Api) -> User:
    return api.customer(top_up="1000.00")


def request(
    api: Api,
    customer: User,
    kitchen: dict[str, Any],
    *,
    days: float = 3,
    hours: float = 2,
    **fields: Any,
) -> Any:
    body = {
        "kitchen_id": kitchen["id"],
        "guests": 2,
        **api.window(days=days, hours=hours),
        **fields,
    }
    return api.post("/bookings", customer, json=body)


def booked(api: Api, customer: User, kitchen: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return api.ok(request(api, customer, kitchen, **kwargs), 201)


def account_held(api: Api, user: User) -> str:
    """The user's held amount, as the write model has it."""
    return format_money(api.account(user).held_cents)


# --- request ---------------------------------------------------------------------------


def test_a_customer_requests_a_pending_booking_and_its_price_is_held(
    api: Api, kitchen: dict[str, Any], customer: User
) -> None:
    response = request(api, customer, kitchen, notes="Bring aprons")
    assert response.status_code == 201, response.text
    booking = response.json()
    assert int(response.headers["X-Prep-Position"]) == booking["position"] > 0
    assert booking["status"] == "pending"
    assert booking["kitchen_id"] == kitchen["id"]
    assert booking["customer_id"] == str(customer.id)
    assert booking["host_id"] == kitchen["host_id"]
    assert booking["hourly_rate"] == "50.00"
    assert booking["price"] == "100.00"
    assert booking["refund"] is None
    assert booking["notes"] == "Bring aprons"
    assert booking["start_time"].endswith("Z")
    assert account_held(api, customer) == "100.00"


def test_times_with_an_offset_are_answered_in_utc(
    api: Api, kitchen: dict[str, Any], customer: User
) -> None:
    window = api.window(days=4)
    start = window["start_time"].replace("17:00:00+00:00", "09:00:00-08:00")
    end = window["end_time"].replace("19:00:00+00:00", "11:00:00-08:00")
    body = {"kitchen_id": kitchen["id"], "guests": 2, "start_time": start, "end_time": end}
    booking = api.ok(api.post("/bookings", customer, json=body), 201)
    assert booking["start_time"] == window["start_time"].replace("+00:00", "Z")


def test_an_instant_book_kitchen_confirms_at_once(api: Api, customer: User) -> None:
    kitchen = api.published_kitchen(api.register("host"), instant_book=True)
    assert booked(api, customer, kitchen)["status"] == "confirmed"


def test_a_price_beyond_the_available_balance_is_402(api: Api, kitchen: dict[str, Any]) -> None:
    poor = api.customer(top_up="99.99")
    assert_problem(request(api, poor, kitchen), 402, "insufficient_funds")
    assert account_held(api, poor) == "0.00"


def test_an_overlapping_request_is_409(api: Api, kitchen: dict[str, Any], customer: User) -> None:
    booked(api, customer, kitchen, days=5, hours=3)
    other = api.customer()
    overlapping = request(api, other, kitchen, days=5 + 2 / 24, hours=2)
    assert_problem(overlapping, 409, "booking_conflict")
    adjacent = request(api, other, kitchen, days=5 + 3 / 24, hours=2)
    assert adjacent.status_code == 201, adjacent.text


def test_a_kitchen_that_cannot_take_the_booking_is_409(api: Api, customer: User) -> None:
    host = api.register("host")
    draft = api.draft_kitchen(host)
    assert_problem(request(api, customer, draft), 409, "kitchen_not_bookable")
    uncertified = api.draft_kitchen(host)
    api.ok(api.post(f"/kitchens/{uncertified['id']}/submit", host))
    api.ok(api.post(f"/admin/kitchens/{uncertified['id']}/approve", api.admin))
    assert_problem(request(api, customer, uncertified), 409, "certificate_missing")
    published = api.published_kitchen(host)
    # 04:00 in Los Angeles: before its 05:00 opening.
    assert_problem(
        request(api, customer, published, days=2 + 19 / 24), 409, "outside_operating_hours"
    )


def test_a_certificate_expiring_before_the_window_ends_is_409(api: Api, customer: User) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    rules = api.services.runtime.jurisdictions.get("los_angeles")
    expires_on = (api.clock.now + timedelta(days=2)).date().isoformat()
    for kind in sorted(rules.required_certificates):
        certificate = api.attach_certificate(host, kitchen["id"], kind, expires_on=expires_on)
        api.ok(
            api.post(
                f"/admin/kitchens/{kitchen['id']}/certificates/{certificate['id']}/verify",
                api.admin,
            )
        )
    api.ok(api.post(f"/kitchens/{kitchen['id']}/submit", host))
    api.ok(api.post(f"/admin/kitchens/{kitchen['id']}/approve", api.admin))
    assert_problem(request(api, customer, kitchen, days=5), 409, "certificate_expired")


def test_window_rules_are_422(api: Api, kitchen: dict[str, Any], customer: User) -> None:
    window = api.window(days=3)
    cases: list[tuple[dict[str, Any], str]] = [
        (api.window(days=-1), "booking_in_past"),
        (api.window(days=3, hours=0.5), "booking_too_short"),
        (api.window(days=3, hours=1 + 7 / 60), "booking_not_aligned"),
        (
            {"start_time": window["end_time"], "end_time": window["start_time"]},
            "invalid_time_range",
        ),
        (
            {
                "start_time": window["start_time"].replace("+00:00", ""),
                "end_time": window["end_time"].replace("+00:00", ""),
            },
            "naive_datetime",
        ),
        ({**api.window(days=2 + 12 / 24, hours=17)}, "booking_too_long"),
        ({**window, "guests": 0}, "invalid_guests"),
        ({**window, "guests": 11}, "guests_over_capacity"),
        ({**window, "notes": "n" * 1001}, "notes_too_long"),
    ]
    for fields, code in cases:
        body = {"kitchen_id": kitchen["id"], "guests": 2, **fields}
        problem = assert_problem(api.post("/bookings", customer, json=body), 422, code)
        assert problem["errors"] == [{"loc": ["body"], "msg": problem["detail"], "type": code}]


@pytest.mark.parametrize(
    "fields",
    [
        {"kitchen_id": "not-a-uuid"},
        {"start_time": "tomorrow at nine"},
        {"start_time": "9999-12-31T20:00:00-05:00", "end_time": "9999-12-31T22:00:00-05:00"},
        {"guests": "two"},
        {"guests": None},
        {"price": "1.00"},
    ],
)
def test_a_booking_body_of_the_wrong_shape_is_422(
    api: Api, kitchen: dict[str, Any], customer: User, fields: dict[str, Any]
) -> None:
    assert_problem(request(api, customer, kitchen, **fields), 422, "validation_error")


def test_who_may_request_a_booking(api: Api, kitchen: dict[str, Any], host: User) -> None:
    assert_problem(request(api, host, kitchen), 403, "forbidden")
    customer = api.customer()
    unknown = {**kitchen, "id": str(uuid4())}
    assert_problem(request(api, customer, unknown), 404, "kitchen_not_found")
    response = api.post("/bookings", json={"kitchen_id": kitchen["id"], **api.window(days=3)})
    assert_problem(response, 401, "not_authenticated")


def test_a_retried_request_with_its_idempotency_key_books_and_holds_once(
    api: Api, kitchen: dict[str, Any], customer: User
) -> None:
    key = {"Idempotency-Key": f"booking-{uuid4()}"}
    body = {"kitchen_id": kitchen["id"], "guests": 2, **api.window(days=6)}
    first = api.post("/bookings", customer, json=body, headers=key)
    again = api.post("/bookings", customer, json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert account_held(api, customer) == "100.00"
    changed = api.post("/bookings", customer, json={**body, "guests": 3}, headers=key)
    assert_problem(changed, 422, "idempotency_key_reused")
    # Keys are the caller's own: another customer's use of the same key is a new booking.
    other = api.customer()
    body_later = {**body, **api.window(days=7)}
    theirs = api.post("/bookings", other, json=body_later, headers=key)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]


# --- the host's answer -----------------------------------------------------------------


def test_the_host_confirms_a_pending_booking_once(
    api: Api, kitchen: dict[str, Any], host: User, customer: User
) -> None:
    booking = booked(api, customer, kitchen)
    path = f"/bookings/{booking['id']}/confirm"
    assert_problem(api.post(path, customer), 403, "forbidden")
    assert_problem(api.post(path, api.register("host")), 403, "forbidden")
    response = api.post(path, host)
    assert response.status_code == 200, response.text
    confirmed = response.json()
    assert confirmed["status"] == "confirmed"
    assert int(response.headers["X-Prep-Position"]) == confirmed["position"]
    assert_problem(api.post(path, host), 409, "invalid_state_transition")
    assert_problem(api.post(f"/bookings/{uuid4()}/confirm", host), 404, "booking_not_found")


def test_the_host_declines_and_the_hold_is_released(
    api: Api, kitchen: dict[str, Any], host: User, customer: User
) -> None:
    booking = booked(api, customer, kitchen)
    declined = api.ok(
        api.post(f"/bookings/{booking['id']}/decline", host, json={"reason": "Closed that day"})
    )
    assert declined["status"] == "declined"
    assert declined["refund"] == {"released": "100.00", "captured": "0.00"}
    assert account_held(api, customer) == "0.00"
    again = api.post(f"/bookings/{booking['id']}/decline", host)
    assert_problem(again, 409, "invalid_state_transition")
    other = booked(api, customer, kitchen, days=4)
    assert api.ok(api.post(f"/bookings/{other['id']}/decline", host))["status"] == "declined"
    assert_problem(api.post(f"/bookings/{other['id']}/decline", customer), 403, "forbidden")


# --- cancel ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "released", "captured"),
    [(3, "100.00", "0.00"), (1.5, "50.00", "50.00"), (0.5, "0.00", "100.00")],
)
def test_a_customer_cancels_and_the_refund_follows_the_notice_given(
    api: Api,
    kitchen: dict[str, Any],
    customer: User,
    days: float,
    released: str,
    captured: str,
) -> None:
    booking = booked(api, customer, kitchen, days=days)
    response = api.patch(f"/bookings/{booking['id']}/cancel", customer, json={"reason": "Sick"})
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["refund"] == {"released": released, "captured": captured}
    assert int(response.headers["X-Prep-Position"]) == cancelled["position"]
    again = api.patch(f"/bookings/{booking['id']}/cancel", customer)
    assert_problem(again, 409, "already_cancelled")


def test_the_host_cancels_and_everything_is_released(
    api: Api, kitchen: dict[str, Any], host: User, customer: User
) -> None:
    booking = booked(api, customer, kitchen, days=0.5)
    cancelled = api.ok(api.patch(f"/bookings/{booking['id']}/cancel", host))
    assert cancelled["refund"] == {"released": "100.00", "captured": "0.00"}


def test_only_the_bookings_customer_or_host_cancels(
    api: Api, kitchen: dict[str, Any], customer: User
) -> None:
    booking = booked(api, customer, kitchen)
    path = f"/bookings/{booking['id']}/cancel"
    assert_problem(api.patch(path, api.customer()), 403, "forbidden")
    assert_problem(api.patch(path, api.register("host")), 403, "forbidden")
    assert_problem(api.patch(path, api.admin), 403, "forbidden")
    assert_problem(api.patch(path), 401, "not_authenticated")
    assert_problem(api.patch(f"/bookings/{uuid4()}/cancel", customer), 404, "booking_not_found")
    assert_problem(api.patch(path, customer, json={"reason": 7}), 422, "validation_error")
    assert_problem(api.post(path, customer), 405, "method_not_allowed")


# --- reschedule ------------------------------------------------------------------------


def test_a_reschedule_reprices_at_the_original_rate(
    api: Api, kitchen: dict[str, Any], host: User, customer: User
) -> None:
    booking = booked(api, customer, kitchen, days=8)
    api.ok(api.patch(f"/kitchens/{kitchen['id']}", host, json={"hourly_rate": "80.00"}))
    response = api.patch(
        f"/bookings/{booking['id']}/reschedule", customer, json=api.window(days=9, hours=3)
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["start_time"] == api.window(days=9)["start_time"].replace("+00:00", "Z")
    assert moved["hourly_rate"] == "50.00"
    assert moved["price"] == "150.00"
    assert moved["status"] == "pending"
    assert account_held(api, customer) == "150.00"


def test_a_reschedule_is_refused_like_a_new_booking(
    api: Api, kitchen: dict[str, Any], host: User
) -> None:
    customer = api.customer(top_up="150.00")
    booking = booked(api, customer, kitchen, days=10)
    other = booked(api, api.customer(), kitchen, days=11)
    path = f"/bookings/{booking['id']}/reschedule"
    assert_problem(api.patch(path, customer, json=api.window(days=11)), 409, "booking_conflict")
    assert_problem(
        api.patch(path, customer, json=api.window(days=12, hours=4)), 402, "insufficient_funds"
    )
    assert_problem(api.patch(path, customer, json=api.window(days=-1)), 422, "booking_in_past")
    assert_problem(api.patch(path, customer, json={}), 422, "validation_error")
    assert_problem(api.patch(path, host, json=api.window(days=12)), 403, "forbidden")
    assert_problem(
        api.patch(f"/bookings/{other['id']}/reschedule", customer, json=api.window(days=12)),
        403,
        "forbidden",
    )
    assert_problem(
        api.patch(f"/bookings/{uuid4()}/reschedule", customer, json=api.window(days=12)),
        404,
        "booking_not_found",
    )


# --- time passes: complete -------------------------------------------------------------


def test_complete_after_the_end_captures_the_hold(api: Api) -> None:
    host = api.register("host")
    kitchen = api.published_kitchen(host)
    customer = api.customer()
    by_host = booked(api, customer, kitchen, days=1)
    by_admin = booked(api, customer, kitchen, days=1 + 3 / 24)
    started = booked(api, customer, kitchen, days=1 + 6 / 24)
    for booking in (by_host, by_admin, started):
        api.ok(api.post(f"/bookings/{booking['id']}/confirm", host))
    assert_problem(api.post(f"/bookings/{by_host['id']}/complete", host), 409, "booking_not_ended")

    api.clock.advance(timedelta(days=2))
    host, customer = api.log_in(host.email), api.log_in(customer.email)

    assert_problem(api.post(f"/bookings/{by_host['id']}/complete", customer), 403, "forbidden")
    completed = api.ok(api.post(f"/bookings/{by_host['id']}/complete", host))
    assert completed["status"] == "completed"
    assert completed["refund"] == {"released": "0.00", "captured": "100.00"}
    assert api.ok(api.post(f"/bookings/{by_admin['id']}/complete", api.admin))["status"] == (
        "completed"
    )
    assert_problem(
        api.post(f"/bookings/{by_host['id']}/complete", host), 409, "invalid_state_transition"
    )
    assert_problem(
        api.patch(f"/bookings/{started['id']}/cancel", customer), 409, "booking_already_started"
    )
    assert_problem(api.post(f"/bookings/{uuid4()}/complete", host), 404, "booking_not_found")
    # The host was paid the price less the 10 % commission, twice.
    assert api.account(host).balance_cents == 18000
    assert date.fromisoformat(completed["end_time"][:10]) < api.clock.now.date()
