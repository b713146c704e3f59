"""A Redis that accepts connections and never answers (a blackhole: a firewall dropping
replies, a frozen server) costs one timeout per cool-down, not one per request: after
the first failure the query cache, the login limiter and readiness all skip it, and
every request is still answered (from the database, counting logins per process)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prep_es.app import create_app
from prep_es.services.passwords import Argon2Passwords
from tests.api.conftest import API, PASSWORD, USERS_WAIT_S, api_settings, services_of

ACCEPT_WAIT_S = 10.0
COOL_DOWN_S = 300.0
"""Longer than the test: nothing may touch the blackhole once it failed."""


class Blackhole:
    """A TCP listener that accepts every connection and never reads from it or answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._peer_ports: list[int] = []
        self._held: list[socket.socket] = []
        self._markers: set[int] = set()
        self._accepted = threading.Condition()
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                connection, (_, peer_port) = self._listener.accept()
            except OSError:  # closed
                return
            with self._accepted:
                self._held.append(connection)
                self._peer_ports.append(peer_port)
                self._accepted.notify_all()

    def connections(self) -> int:
        """Connections clients opened so far, exactly: a marker connection opened now is
        accepted after every earlier one (the accept queue is first in, first out)."""
        marker = socket.create_connection(("127.0.0.1", self.port))
        marker_port = marker.getsockname()[1]
        self._markers.add(marker_port)
        with self._accepted:
            assert self._accepted.wait_for(
                lambda: marker_port in self._peer_ports, timeout=ACCEPT_WAIT_S
            )
            before = self._peer_ports[: self._peer_ports.index(marker_port)]
        marker.close()
        return len([port for port in before if port not in self._markers])

    def close(self) -> None:
        self._listener.close()
        with self._accepted:
            for connection in self._held:
                connection.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture
def client(database_url: str, blackhole: Blackhole) -> Iterator[TestClient]:
    settings = api_settings(database_url, redis_url=blackhole.url, redis_cool_down_s=COOL_DOWN_S)
    app = create_app(settings, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as test_client:
        yield test_client


def register(client: TestClient) -> str:
    email = "blackhole@example.com"
    body = {"email": email, "password": PASSWORD, "full_name": "B", "role": "customer"}
    response = client.post(f"{API}/auth/register", json=body)
    assert response.status_code == 201, response.text
    services_of(client).read_positions.wait_for("users", response.json()["position"], USERS_WAIT_S)
    return email


def redis_check(client: TestClient) -> dict[str, Any]:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    (check,) = [check for check in response.json()["checks"] if check["name"] == "redis"]
    assert check["ok"] is True and check["degraded"] is True, check
    return dict(check)


def test_after_redis_fails_no_request_asks_it_again_within_the_cool_down(
    client: TestClient, blackhole: Blackhole
) -> None:
    email = register(client)
    # The first to meet the blackhole (readiness, or a projector marking a change
    # at start) waits out one timeout and opens the circuit for everyone.
    assert redis_check(client)["detail"].startswith("degraded: unreachable")
    assert services_of(client).redis_circuit.is_open
    touched = blackhole.connections()

    wrong = client.post(f"{API}/auth/login", json={"email": email, "password": "wrong one!"})
    assert wrong.status_code == 401, wrong.text
    right = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert right.status_code == 200, right.text
    assert client.get(f"{API}/kitchens", params={"city": "Los Angeles"}).status_code == 200
    assert redis_check(client)["detail"].startswith("degraded: unreachable")

    assert blackhole.connections() == touched


def test_the_login_limit_still_holds_per_process_while_redis_is_skipped(
    database_url: str, blackhole: Blackhole
) -> None:
    settings = api_settings(
        database_url,
        redis_url=blackhole.url,
        redis_cool_down_s=COOL_DOWN_S,
        login_failures_max=2,
    )
    app = create_app(settings, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as test_client:
        email = register(test_client)
        wrong = {"email": email, "password": "wrong one!"}
        statuses = [test_client.post(f"{API}/auth/login", json=wrong).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        assert services_of(test_client).redis_circuit.is_open
