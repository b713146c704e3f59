"""Token hardening and revocation: the claims a token must carry, logout, a password
change, and every API process refusing what another one revoked or deactivated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from commands.admission import Admission
from prep_es.app import create_app
from prep_es.services.auth import TokenService, Unauthenticated
from prep_es.services.container import Services
from prep_es.services.passwords import Argon2Passwords
from tests.api.conftest import (
    API,
    JWT_SECRET,
    PASSWORD,
    Api,
    User,
    api_settings,
    assert_problem,
    catch_up_projections,
)
from tests.support import START_OF_TESTS
from tests.waiting import wait_until

NEW_PASSWORD = "a new horse battery staple"
FOLLOWER_WAIT_S = 10.0
"""How long another process may take to hear of a change (PostgreSQL's notification)."""

# --- the claims a token must carry -----------------------------------------------------

ISSUER = {"iss": "prep-es", "aud": "prep-es-api"}
TTL_S = 3600

TOP_UP = {"amount": "1.00", "payment_method": "pm_card_visa"}
"""A command's body: a top-up of 1.00 with the sandbox's test card."""


def tokens_at_start() -> TokenService:
    return TokenService(
        JWT_SECRET,
        issuer="prep-es",
        audience="prep-es-api",
        ttl_s=TTL_S,
        clock=lambda: START_OF_TESTS,
    )


def signed(**changes: Any) -> str:
    iat = int(START_OF_TESTS.timestamp())
    claims: dict[str, Any] = {
        **ISSUER,
        "sub": str(uuid4()),
        "role": "customer",
        "jti": uuid4().hex,
        "iat": iat,
        "iat_us": iat * 1_000_000,
        "exp": iat + 60,
        **changes,
    }
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def test_a_well_formed_token_is_accepted() -> None:
    assert tokens_at_start().verify(signed()).role == "customer"
    assert tokens_at_start().verify(signed(nbf=int(START_OF_TESTS.timestamp()))).nbf


NOW_S = int(START_OF_TESTS.timestamp())


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": "9999999999"}, "invalid_token"),
        ({"exp": NOW_S + 60.5}, "invalid_token"),
        ({"exp": True}, "invalid_token"),
        ({"exp": 10**30}, "invalid_token"),
        ({"exp": NOW_S + TTL_S + 1}, "invalid_token"),
        ({"exp": NOW_S}, "invalid_token"),
        ({"iat": "now"}, "invalid_token"),
        ({"iat_us": None}, "invalid_token"),
        ({"iat_us": (NOW_S + 1) * 1_000_000}, "invalid_token"),
        (
            {"iat": NOW_S + 3600, "iat_us": (NOW_S + 3600) * 1_000_000, "exp": NOW_S + 3660},
            "invalid_token",
        ),
        ({"nbf": NOW_S + 3600}, "token_not_yet_valid"),
        ({"nbf": "later"}, "invalid_token"),
        ({"jti": ""}, "invalid_token"),
        ({"jti": "x" * 1000}, "invalid_token"),
    ],
)
def test_a_token_with_times_out_of_bounds_is_refused(claims: dict[str, Any], code: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        tokens_at_start().verify(signed(**claims))
    assert refused.value.code == code


# --- logout and password change, in one process ----------------------------------------


def test_logout_revokes_that_token_and_no_other(api: Api) -> None:
    user = api.register("customer")
    other = api.log_in(user.email)
    response = api.post("/auth/logout", user)
    assert response.status_code == 204, response.text
    assert int(response.headers["X-Prep-Position"]) > 0
    assert_problem(api.get("/users/me", user), 401, "token_revoked")
    assert_problem(api.post("/accounts/me/top-ups", user, json=TOP_UP), 401, "token_revoked")
    assert_problem(api.post("/auth/logout", user), 401, "token_revoked")
    api.ok(api.get("/users/me", other))


def test_logout_needs_a_token(api: Api) -> None:
    assert_problem(api.post("/auth/logout"), 401, "not_authenticated")


def change_password(api: Api, user: User, current: str, new: str) -> httpx.Response:
    body = {"current_password": current, "new_password": new}
    return api.post("/users/me/password", user, json=body)


def log_in(api: Api, email: str, password: str) -> httpx.Response:
    return api.post("/auth/login", json={"email": email, "password": password})


def test_a_password_change_revokes_every_earlier_token_and_the_old_password(
    api: Api,
) -> None:
    user = api.register("customer")
    other = api.log_in(user.email)
    api.clock.advance(timedelta(milliseconds=500))  # mid-second
    changed = change_password(api, user, PASSWORD, NEW_PASSWORD)
    assert changed.status_code == 204, changed.text
    for earlier in (user, other):
        assert_problem(api.get("/users/me", earlier), 401, "token_revoked")
    # At once, from the write model: the old password no longer signs in, the new one
    # does, and its token works although the clock has not moved (same second).
    assert_problem(log_in(api, user.email, PASSWORD), 401, "invalid_credentials")
    api.clock.advance(timedelta(microseconds=1))
    token = api.ok(log_in(api, user.email, NEW_PASSWORD))["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["iat"] == int(
        api.clock.now.timestamp()
    )
    api.ok(api.get("/users/me", headers={"Authorization": f"Bearer {token}"}))


def test_a_password_change_needs_the_current_password_and_a_valid_new_one(api: Api) -> None:
    user = api.register("customer")
    assert_problem(
        change_password(api, user, "not the password", NEW_PASSWORD), 403, "wrong_password"
    )
    assert_problem(change_password(api, user, PASSWORD, "short"), 422, "password_too_short")
    assert_problem(
        api.post("/users/me/password", user, json={"new_password": NEW_PASSWORD}),
        422,
        "validation_error",
    )
    assert_problem(
        change_password(api, User(user.id, user.email, user.role, "x"), PASSWORD, NEW_PASSWORD),
        401,
        "invalid_token",
    )
    api.ok(api.get("/users/me", user))  # nothing changed


# --- several processes -----------------------------------------------------------------


class Process:
    """One API process: its own services, memory and known copies, on a shared store,
    running no projectors — the read models move only when a test catches them up."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    @property
    def services(self) -> Services:
        services = self.client.app.state.services  # type: ignore[attr-defined]
        assert isinstance(services, Services)
        return services

    def get(self, path: str, token: str) -> httpx.Response:
        response: httpx.Response = self.client.get(
            API + path, headers={"Authorization": f"Bearer {token}"}
        )
        return response

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response: httpx.Response = self.client.post(API + path, headers=headers, **kwargs)
        return response

    def token(self, email: str, password: str = PASSWORD) -> str:
        response = self.post("/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


@pytest.fixture
def two_processes(database_url: str) -> Iterator[tuple[Process, Process]]:
    settings = api_settings(database_url, run_projectors=False)
    with (
        TestClient(create_app(settings, passwords=Argon2Passwords.cheap_for_tests())) as first,
        TestClient(create_app(settings, passwords=Argon2Passwords.cheap_for_tests())) as second,
    ):
        yield Process(first), Process(second)


def registered(here: Process, email: str) -> str:
    body = {"email": email, "password": PASSWORD, "full_name": "T", "role": "customer"}
    response = here.post("/auth/register", json=body)
    assert response.status_code == 201, response.text
    catch_up_projections(here.services)  # the users read model knows them: they log in
    return str(response.json()["id"])


def refused_soon(ask: Callable[[], httpx.Response], code: str) -> None:
    """Within :data:`FOLLOWER_WAIT_S`: another process hears of a change by
    notification (PostgreSQL), or reads the store every time (SQLite)."""

    def refused() -> httpx.Response | None:
        response = ask()
        return None if response.status_code == 200 else response

    assert_problem(wait_until(refused, FOLLOWER_WAIT_S, f"a refusal ({code})"), 401, code)


def test_a_deactivation_in_one_process_refuses_queries_in_another(
    two_processes: tuple[Process, Process],
) -> None:
    first, second = two_processes
    user_id = registered(first, "moved@example.com")
    token = second.token("moved@example.com")
    assert second.get("/users/me", token).status_code == 200  # this process knows them
    admin = first.token("root@example.com")
    deactivate = first.client.patch(
        f"{API}/admin/users/{user_id}",
        json={"active": False},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert deactivate.status_code == 200, deactivate.text
    assert_problem(first.get("/users/me", token), 401, "user_inactive")  # at once
    refused_soon(lambda: second.get("/users/me", token), "user_inactive")
    refused_soon(lambda: second.get("/accounts/me", token), "user_inactive")


def test_a_logout_in_one_process_revokes_the_token_in_another(
    two_processes: tuple[Process, Process],
) -> None:
    first, second = two_processes
    registered(first, "leaving@example.com")
    token = first.token("leaving@example.com")
    kept = second.token("leaving@example.com")
    assert second.get("/users/me", token).status_code == 200
    assert first.post("/auth/logout", token).status_code == 204
    refused_soon(lambda: second.get("/users/me", token), "token_revoked")
    assert second.get("/users/me", kept).status_code == 200


def test_a_password_change_in_one_process_revokes_tokens_in_another(
    two_processes: tuple[Process, Process],
) -> None:
    first, second = two_processes
    registered(first, "changing@example.com")
    token = second.token("changing@example.com")
    assert second.get("/users/me", token).status_code == 200
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert first.post("/users/me/password", token, json=body).status_code == 204
    refused_soon(lambda: second.get("/users/me", token), "token_revoked")
    fresh = second.token("changing@example.com", NEW_PASSWORD)
    assert second.get("/users/me", fresh).status_code == 200


# --- the cost per request --------------------------------------------------------------


@pytest.mark.postgres
def test_a_followed_user_is_checked_from_memory(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a follower keeps this process's copies current (PostgreSQL), a user once
    read is checked without I/O until they change."""
    if api.services.known_copies is None:
        pytest.skip("SQLite: every request reads the user from the store")
    user = api.register("customer")
    api.ok(api.get("/accounts/me", user))
    reads: list[object] = []
    read = Admission.check

    def counted(admission: Admission, actor: Any) -> bool:
        reads.append(actor)
        return read(admission, actor)

    monkeypatch.setattr(Admission, "check", counted)
    for _ in range(3):
        api.ok(api.get("/accounts/me", user))
    assert reads == []
