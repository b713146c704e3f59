"""The HTTP application on each backend, for tests that drive it as a client would.

``api`` is one running application per test module and backend — SQLite, and
PostgreSQL with Redis — with its lifespan run (projectors and sweeper in-process), a
clock the tests move by hand (forward only, by hours or days: the module shares it), and
cheap password hashing. Tests make their own users (unique emails), so they do not
depend on one another. The admin is the one the application bootstraps at start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aggregates.account import Account, account_id_for
from prep_es.app import create_app
from prep_es.services.auth import TokenService
from prep_es.services.container import Services
from prep_es.services.passwords import Argon2Passwords
from prep_es.services.runtime import system_clock
from prep_es.store.settings import Settings
from projections.generations import ensure_ready
from projections.runners import ProjectionRunner
from tests.support import (
    START_OF_TESTS,
    TEST_PAYMENT_SETTINGS,
    MutableClock,
    master_key_settings,
    settle_payment_notifications,
)

API = "/api/v1"
REDIS_URL = os.environ.get("TEST_API_REDIS_URL", "redis://127.0.0.1:6379/12")
JWT_SECRET = "test-secret-6Xq2vR9tLm4pZ8wK3nB7cF1hJ5dG0sYa"
ADMIN_EMAIL = "root@example.com"
PASSWORD = "correct horse battery"
DOCUMENT_SHA256 = "ab" * 32
CERTIFICATES_EXPIRE_ON = date(2031, 12, 31)


def redis_reachable(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False
    return True


def api_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        **master_key_settings(database_url),
        "jwt_secret": JWT_SECRET,
        "admin_email": ADMIN_EMAIL,
        "admin_password": PASSWORD,
        "min_position_wait_s": 3.0,
        "sweep_interval_s": 3600.0,
        "access_token_ttl": 7 * 24 * 3600,
        # A module's tests all come from one client address and register many users.
        "registrations_per_client_max": 100_000,
        "login_failures_per_client_max": 100_000,
        **TEST_PAYMENT_SETTINGS,
    }
    if database_url.startswith("postgresql"):
        if not redis_reachable(REDIS_URL):
            if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
                pytest.fail(f"Redis is not reachable at {REDIS_URL} (CI=true)")
            pytest.skip(f"REDIS NOT REACHABLE at {REDIS_URL}: PostgreSQL+Redis API tests skipped")
        values["redis_url"] = REDIS_URL
    values.update(overrides)
    return Settings(**values)


def catch_up_projections(services: Services) -> None:
    """Every projection of ``services`` brought up to the event store's head, here and
    now (for an app that runs no projectors)."""
    database = services.read_side.write_database
    for projection_class in services.projections:
        ensure_ready(database, projection_class)
        ProjectionRunner(projection_class, services.runtime.app, database).catch_up(timeout_s=30)


def minted_token(user_id: UUID, role: str) -> str:
    """A valid access token for ``user_id`` as ``role`` (under :func:`api_settings`),
    made without logging in: for users the read models do not know yet."""
    tokens = TokenService(
        JWT_SECRET, issuer="prep-es", audience="prep-es-api", ttl_s=60, clock=system_clock
    )
    return tokens.issue(user_id, role).access_token


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"].endswith(code)
    assert body["title"] and body["detail"] and body["instance"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    if status == 422:  # every validation problem says where, and why
        assert body["errors"], body
        for error in body["errors"]:
            assert set(error) == {"loc", "msg", "type"} and error["loc"] and error["msg"]
    return body


USERS_WAIT_S = 10.0
"""How long a test waits for the users read model before logging a user in."""


@dataclass(frozen=True)
class User:
    id: UUID
    email: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Api:
    """A running application and the helpers tests share."""

    app: FastAPI
    client: TestClient
    clock: MutableClock
    settings: Settings

    @property
    def services(self) -> Services:
        services = self.app.state.services
        assert isinstance(services, Services)
        return services

    @property
    def admin(self) -> User:
        """Logged in afresh: tests move the clock, which expires older tokens."""
        return self.log_in(ADMIN_EMAIL)

    # --- plumbing -------------------------------------------------------------------

    def post(self, path: str, user: User | None = None, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.client.post(
            API + path, headers=_headers(user, kwargs), **kwargs
        )
        return response

    def patch(self, path: str, user: User | None = None, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.client.patch(
            API + path, headers=_headers(user, kwargs), **kwargs
        )
        return response

    def put(self, path: str, user: User | None = None, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.client.put(
            API + path, headers=_headers(user, kwargs), **kwargs
        )
        return response

    def get(self, path: str, user: User | None = None, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.client.get(
            API + path, headers=_headers(user, kwargs), **kwargs
        )
        return response

    def ok(self, response: httpx.Response, status: int = 200) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    # --- users ----------------------------------------------------------------------

    def register(self, role: str = "customer", *, email: str | None = None) -> User:
        email = email or f"{role}-{uuid4().hex[:12]}@example.com"
        created = self.ok(
            self.post(
                "/auth/register",
                json={"email": email, "password": PASSWORD, "full_name": "Test User", "role": role},
            ),
            201,
        )
        user = self.log_in(email, min_position=created["position"])
        assert user.id == UUID(created["id"])
        return user

    def log_in(self, email: str, *, min_position: int = 0) -> User:
        if min_position:
            # The test's own patience, not the server's wait (some modules set that to
            # 50 ms): a loaded machine may take longer to project the user.
            self.services.read_positions.wait_for("users", min_position, USERS_WAIT_S)
        headers = {"X-Prep-Min-Position": str(min_position)} if min_position else {}
        token = self.ok(
            self.post("/auth/login", json={"email": email, "password": PASSWORD}, headers=headers)
        )
        me = self.ok(
            self.get("/users/me", headers={"Authorization": f"Bearer {token['access_token']}"})
        )
        return User(id=UUID(me["id"]), email=email, role=me["role"], token=token["access_token"])

    def user_with_role(self, role: str) -> User:
        """Any role: admins and analysts are made by an admin changing a registration."""
        if role in ("customer", "host"):
            return self.register(role)
        user = self.register("customer")
        changed = self.ok(self.patch(f"/admin/users/{user.id}", self.admin, json={"role": role}))
        return self.log_in(user.email, min_position=changed["position"])

    def customer(self, top_up: str = "10000.00") -> User:
        """A customer who topped up ``top_up`` with the sandbox's test card, credited."""
        user = self.register("customer")
        if top_up != "0.00":
            self.top_up(user, top_up)
        return user

    def top_up(
        self, user: User, amount: str, payment_method: str = "pm_card_visa"
    ) -> dict[str, Any]:
        """``POST /accounts/me/top-ups``, then the sandbox's notifications delivered
        (:meth:`settle_payments`)."""
        started = self.ok(
            self.post(
                "/accounts/me/top-ups",
                user,
                json={"amount": amount, "payment_method": payment_method},
            ),
            202,
        )
        self.settle_payments()
        return started

    def settle_payments(self) -> None:
        """Every notification the sandbox has due delivered and applied (the
        application's own delivery thread may have claimed some first)."""
        settle_payment_notifications(self.services.runtime)

    def account(self, user: User) -> Account:
        """The user's account as the write model has it now."""
        account = self.services.runtime.app.repository.get(account_id_for(user.id))
        assert isinstance(account, Account)
        return account

    def earn(self, host: User, kitchen: dict[str, Any], *, days: float) -> dict[str, Any]:
        """The host earns 90.00: a customer's 2-hour booking of ``kitchen`` (50.00 an
        hour), ``days`` ahead, confirmed, then completed once the clock passed it (it
        moves the module's clock forward by ``days`` + 1)."""
        customer = self.customer("100.00")
        booking = self.ok(
            self.post(
                "/bookings",
                customer,
                json={"kitchen_id": kitchen["id"], "guests": 2, **self.window(days=days)},
            ),
            201,
        )
        self.ok(self.post(f"/bookings/{booking['id']}/confirm", host))
        self.clock.advance(timedelta(days=days + 1))
        return self.ok(self.post(f"/bookings/{booking['id']}/complete", self.log_in(host.email)))

    # --- kitchens -------------------------------------------------------------------

    def draft_kitchen(self, host: User, **fields: Any) -> dict[str, Any]:
        body = {
            "name": "Test Kitchen",
            "description": "A clean commercial kitchen",
            "city": "Los Angeles",
            "jurisdiction": "los_angeles",
            "address": "1 Main St",
            "hourly_rate": "50.00",
            "capacity": 10,
            "amenities": ["walk-in fridge", "Oven"],
            "instant_book": False,
            **fields,
        }
        return self.ok(self.post("/kitchens", host, json=body), 201)

    def attach_certificate(
        self, host: User, kitchen_id: str, kind: str = "health_permit", **fields: Any
    ) -> dict[str, Any]:
        body = {
            "kind": kind,
            "number": f"{kind}-1",
            "issued_on": "2029-01-01",
            "expires_on": CERTIFICATES_EXPIRE_ON.isoformat(),
            "document_sha256": DOCUMENT_SHA256,
            **fields,
        }
        return self.ok(self.post(f"/kitchens/{kitchen_id}/certificates", host, json=body), 201)

    def published_kitchen(self, host: User, **fields: Any) -> dict[str, Any]:
        """A kitchen with every certificate its jurisdiction requires, verified, approved."""
        kitchen = self.draft_kitchen(host, **fields)
        rules = self.services.runtime.jurisdictions.get(kitchen["jurisdiction"])
        admin = self.admin
        for kind in sorted(rules.required_certificates):
            certificate = self.attach_certificate(host, kitchen["id"], kind)
            self.ok(
                self.post(
                    f"/admin/kitchens/{kitchen['id']}/certificates/{certificate['id']}/verify",
                    admin,
                )
            )
        self.ok(self.post(f"/kitchens/{kitchen['id']}/submit", host))
        return self.ok(self.post(f"/admin/kitchens/{kitchen['id']}/approve", admin))

    # --- bookings -------------------------------------------------------------------

    def window(self, *, days: float, hours: float = 2) -> dict[str, str]:
        """A window starting ``days`` after now at 17:00 UTC (09:00 in Los Angeles)."""
        day = self.clock.now.replace(hour=17, minute=0, second=0, microsecond=0)
        start = day + timedelta(days=days)
        return {
            "start_time": start.isoformat(),
            "end_time": (start + timedelta(hours=hours)).isoformat(),
        }


def _headers(user: User | None, kwargs: dict[str, Any]) -> dict[str, str]:
    headers = dict(kwargs.pop("headers", None) or {})
    if user is not None:
        headers.setdefault("Authorization", f"Bearer {user.token}")
    return headers


@pytest.fixture(scope="module")
def api(module_database_url: str) -> Iterator[Api]:
    """The application on each backend, shared by one test module."""
    settings = api_settings(module_database_url)
    clock = MutableClock(START_OF_TESTS)
    app = create_app(settings, clock=clock, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as client:
        yield Api(app=app, client=client, clock=clock, settings=settings)


@pytest.fixture
def serve(database_url: str) -> Iterator[Callable[..., TestClient]]:
    """``serve(**settings)``: the real application (``create_app``) over this test's
    database, started (its lifespan opened the services), without in-process
    projectors unless asked for."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "database_url": database_url,
            **master_key_settings(database_url),
            "run_projectors": False,
            "jwt_secret": JWT_SECRET,
        }
        settings = Settings(**(values | overrides))
        client = TestClient(create_app(settings, passwords=Argon2Passwords.cheap_for_tests()))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


def services_of(client: TestClient) -> Services:
    services = client.app.state.services  # type: ignore[attr-defined]
    assert isinstance(services, Services)
    return services
