"""Integers of any size a client sends get their 422, with or without an idempotency
key (the key's request hash once met an integer its JSON encoder refused), and the
read-your-writes position header is plain ASCII digits."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.api.conftest import Api, User, assert_problem

HUGE_INTEGERS = [10**20, -(10**20), 2**63, -(2**63) - 1, 2**64, 10**100]
"""Past what a 64-bit integer holds, either way."""


def _send(
    api: Api, method: str, path: str, user: User, body: dict[str, Any], key: bool
) -> httpx.Response:
    headers = {"Idempotency-Key": f"key-{uuid4()}"} if key else {}
    if method == "POST":
        return api.post(path, user, json=body, headers=headers)
    return api.patch(path, user, json=body, headers=headers)


@pytest.fixture(scope="module")
def host(api: Api) -> User:
    return api.register("host")


@pytest.fixture(scope="module")
def kitchen(api: Api, host: User) -> dict[str, Any]:
    return api.published_kitchen(host)


def test_a_booking_for_too_many_guests_is_a_422_with_a_key(
    api: Api, kitchen: dict[str, Any]
) -> None:
    """The reported case: 10**20 guests with an Idempotency-Key was a 500."""
    body = {"kitchen_id": kitchen["id"], **api.window(days=3), "guests": 10**20}
    response = _send(api, "POST", "/bookings", api.customer(), body, key=True)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_a_kitchen_for_too_many_people_is_a_422_with_a_key(api: Api, host: User) -> None:
    """The reported case: a capacity of 10**20 with an Idempotency-Key was a 500."""
    body = {
        "name": "Huge Kitchen",
        "city": "Los Angeles",
        "jurisdiction": "los_angeles",
        "address": "1 Main St",
        "hourly_rate": "50.00",
        "capacity": 10**20,
    }
    response = _send(api, "POST", "/kitchens", host, body, key=True)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


INTEGER_FIELDS = ["booking guests", "kitchen capacity", "kitchen update capacity"]
"""Every integer field of a request body (query parameters are bounded by ``Query``)."""


@pytest.mark.parametrize("key", [False, True], ids=["no-key", "key"])
@pytest.mark.parametrize("value", HUGE_INTEGERS)
@pytest.mark.parametrize("field", INTEGER_FIELDS)
def test_any_integer_in_any_integer_field_is_a_422(
    api: Api, host: User, kitchen: dict[str, Any], field: str, value: int, key: bool
) -> None:
    if field == "booking guests":
        body = {"kitchen_id": kitchen["id"], **api.window(days=3), "guests": value}
        response = _send(api, "POST", "/bookings", api.customer(), body, key)
    elif field == "kitchen capacity":
        body = {
            "name": "Huge Kitchen",
            "city": "Los Angeles",
            "jurisdiction": "los_angeles",
            "address": "1 Main St",
            "hourly_rate": "50.00",
            "capacity": value,
        }
        response = _send(api, "POST", "/kitchens", host, body, key)
    else:
        response = _send(api, "PATCH", f"/kitchens/{kitchen['id']}", host, {"capacity": value}, key)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_an_integer_of_thousands_of_digits_is_malformed_json(api: Api, host: User) -> None:
    """Past Python's 4300-digit limit on reading an integer: a 400, never a 500."""
    content = '{"capacity": ' + "9" * 5000 + "}"
    response = api.patch(
        f"/kitchens/{uuid4()}",
        host,
        content=content,
        headers={"Content-Type": "application/json", "Idempotency-Key": f"key-{uuid4()}"},
    )
    assert_problem(response, 400, "malformed_json")


LOOSE_POSITIONS = ["5_0", "+5", "0005", "00", "-0", "5.0", "0x5", "5 5", "9" * 19, "1" * 20]
"""What ``int()`` would take, or a position past 64 bits: none is a position as a response
gives it."""


@pytest.mark.parametrize("value", LOOSE_POSITIONS)
@pytest.mark.parametrize("path", ["/kitchens", "/kitchens/{kitchen_id}", "/users/me"])
def test_a_min_position_header_is_plain_ascii_digits(
    api: Api, host: User, kitchen: dict[str, Any], path: str, value: str
) -> None:
    """Every route that waits on it, the published-page fast path included."""
    response = api.get(
        path.format(kitchen_id=kitchen["id"]), host, headers={"X-Prep-Min-Position": value}
    )
    problem = assert_problem(response, 422, "validation_error")
    # A route whose user and read model both wait on it names it for each.
    assert {tuple(error["loc"]) for error in problem["errors"]} == {
        ("header", "X-Prep-Min-Position")
    }


def test_a_plain_min_position_header_is_taken(api: Api, kitchen: dict[str, Any]) -> None:
    for value in ("0", "1", str(kitchen["position"])):
        response = api.get(f"/kitchens/{kitchen['id']}", headers={"X-Prep-Min-Position": value})
        assert response.status_code == 200, (value, response.text)
