"""``X-Prep-Min-Position`` at the edge, on each backend: a position the event store has
not reached is refused at once, one within its head is waited for, and the waits a
process holds at a time are bounded.

The application runs without projectors, so a test decides when the read models catch
up; waits are long (30 s), so an answer that comes at all before that came without one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import PASSWORD, assert_problem, catch_up_projections, services_of
from tests.support import TEST_PAYMENT_SETTINGS, settle_payment_notifications
from tests.waiting import wait_until

API = "/api/v1"
LONG_WAIT_S = 30.0
CONDITION_TIMEOUT_S = 20.0


@pytest.fixture
def serve(serve: Callable[..., TestClient]) -> Callable[..., TestClient]:
    """The API tests' ``serve``, with a read-your-writes wait of 30 s and the tests'
    sandbox (notifications due at once, each sent once)."""
    defaults = {"min_position_wait_s": LONG_WAIT_S, **TEST_PAYMENT_SETTINGS}
    return lambda **overrides: serve(**(defaults | overrides))


def signed_in_customer(client: TestClient, email: str) -> dict[str, str]:
    """A registered customer's Authorization header (the read models caught up)."""
    registered = client.post(
        f"{API}/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Ana Test", "role": "customer"},
    )
    assert registered.status_code == 201, registered.text
    catch_up_projections(services_of(client))
    login = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def top_up(client: TestClient, headers: dict[str, str], amount: str) -> int:
    """The event store position once a top-up is credited by the sandbox's
    notification (the read models do not have it yet)."""
    response = client.post(
        f"{API}/accounts/me/top-ups",
        headers=headers,
        json={"amount": amount, "payment_method": "pm_card_visa"},
    )
    assert response.status_code == 202, response.text
    runtime = services_of(client).runtime
    settle_payment_notifications(runtime)
    return runtime.app.position()


class Background:
    """A request sent from another thread; :meth:`response` joins it."""

    def __init__(self, send: Callable[[], httpx.Response]) -> None:
        self._answers: list[httpx.Response] = []
        self._thread = threading.Thread(target=lambda: self._answers.append(send()))
        self._thread.start()

    def response(self) -> httpx.Response:
        self._thread.join(timeout=LONG_WAIT_S + CONDITION_TIMEOUT_S)
        assert not self._thread.is_alive()
        (answer,) = self._answers
        return answer


def test_a_position_beyond_the_head_is_refused_at_once(serve: Callable[..., TestClient]) -> None:
    client = serve()
    headers = signed_in_customer(client, "ana@example.com")
    head = services_of(client).runtime.app.position()

    for ahead in (head + 1, 2**63 - 1):
        position_header = {"X-Prep-Min-Position": str(ahead)}
        # A query route (anonymous), and one whose authentication waits for the users
        # read model too: neither waits (a wait would end in a 503 after 30 s).
        for path, sent in (
            ("/kitchens", position_header),
            ("/accounts/me", headers | position_header),
        ):
            response = client.get(API + path, headers=sent)
            body = assert_problem(response, 422, "min_position_ahead_of_store")
            assert body["errors"] == [
                {
                    "loc": ["header", "X-Prep-Min-Position"],
                    "msg": body["detail"],
                    "type": "min_position_ahead_of_store",
                }
            ]
            assert str(ahead) in body["detail"]
    assert services_of(client).read_positions.waiting == 0


def test_a_position_the_store_reached_since_is_waited_for(
    serve: Callable[..., TestClient],
) -> None:
    """The head this process last read is behind: it is read again before refusing."""
    reader = serve()
    writer = serve()
    headers = signed_in_customer(writer, "ana@example.com")
    assert reader.get(f"{API}/accounts/me", headers=headers).status_code == 200
    position = top_up(writer, headers, "25.00")

    waiting = Background(
        lambda: reader.get(
            f"{API}/accounts/me", headers=headers | {"X-Prep-Min-Position": str(position)}
        )
    )
    wait_until(
        lambda: services_of(reader).read_positions.waiting == 1,
        CONDITION_TIMEOUT_S,
        "the query to wait",
    )
    catch_up_projections(services_of(writer))
    response = waiting.response()
    assert response.status_code == 200, response.text
    assert response.json()["available"] == "25.00"
    assert int(response.headers["X-Prep-Position"]) >= position


def test_waits_beyond_the_limit_are_refused_at_once(serve: Callable[..., TestClient]) -> None:
    client = serve(min_position_waiters_max=1)
    headers = signed_in_customer(client, "ana@example.com")
    position = top_up(client, headers, "10.00")
    after_top_up = headers | {"X-Prep-Min-Position": str(position)}

    waiting = Background(lambda: client.get(f"{API}/accounts/me", headers=after_top_up))
    wait_until(
        lambda: services_of(client).read_positions.waiting == 1,
        CONDITION_TIMEOUT_S,
        "the query to wait",
    )
    refused = client.get(f"{API}/accounts/me/entries", headers=after_top_up)
    assert_problem(refused, 503, "too_many_waiters")
    assert refused.headers["Retry-After"] == "1"
    # A query that needs no wait is answered as ever.
    assert client.get(f"{API}/accounts/me", headers=headers).status_code == 200

    catch_up_projections(services_of(client))
    assert waiting.response().status_code == 200
    assert services_of(client).read_positions.waiting == 0
    assert client.get(f"{API}/accounts/me/entries", headers=after_top_up).status_code == 200
