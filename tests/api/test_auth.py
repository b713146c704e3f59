"""Registration, login and its rate limit, tokens and who they let in, on each backend."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
from fastapi.testclient import TestClient

from prep_es.app import create_app
from prep_es.services.auth import TokenService, Unauthenticated
from prep_es.services.container import Services
from prep_es.services.passwords import Argon2Passwords
from tests.api.conftest import (
    ADMIN_EMAIL,
    API,
    JWT_SECRET,
    PASSWORD,
    Api,
    User,
    api_settings,
    assert_problem,
    catch_up_projections,
    minted_token,
)
from tests.support import START_OF_TESTS

TOP_UP = {"amount": "1.00", "payment_method": "pm_card_visa"}
"""A command's body: a top-up of 1.00 with the sandbox's test card."""


def registration(**fields: Any) -> dict[str, Any]:
    return {
        "email": f"new-{uuid4().hex[:12]}@example.com",
        "password": PASSWORD,
        "full_name": "Ana Lopez",
        "role": "customer",
        **fields,
    }


# --- registration ----------------------------------------------------------------------


def test_register_answers_201_with_the_user_and_its_position(api: Api) -> None:
    body = registration(
        role="host", email="  Mixed.Case@Example.COM ".replace("Mixed", uuid4().hex[:8])
    )
    response = api.post("/auth/register", json=body)
    created = api.ok(response, 201)
    assert created["email"] == body["email"].strip().lower()
    assert created["role"] == "host"
    assert created["active"] is True
    assert created["full_name"] == "Ana Lopez"
    assert "password" not in json.dumps(created)
    assert int(response.headers["X-Prep-Position"]) == created["position"] > 0


def test_register_refuses_an_email_taken_in_any_case(api: Api) -> None:
    body = registration()
    api.ok(api.post("/auth/register", json=body), 201)
    again = registration(email=body["email"].upper())
    assert_problem(api.post("/auth/register", json=again), 409, "email_taken")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"password": "x" * 11}, "password_too_short"),
        ({"email": "not-an-email"}, "invalid_email"),
        ({"full_name": "   "}, "invalid_full_name"),
    ],
)
def test_register_refuses_what_the_rules_refuse(
    api: Api, fields: dict[str, Any], code: str
) -> None:
    assert_problem(api.post("/auth/register", json=registration(**fields)), 422, code)


@pytest.mark.parametrize(
    "body",
    [
        registration(role="admin"),
        {"email": "a@example.com"},
        registration(extra="field"),
        registration(password=123456789012),
        [],
    ],
)
def test_register_refuses_a_body_of_the_wrong_shape(api: Api, body: Any) -> None:
    problem = assert_problem(api.post("/auth/register", json=body), 422, "validation_error")
    assert problem["errors"]
    for error in problem["errors"]:
        assert set(error) == {"loc", "msg", "type"}
        assert error["loc"][0] == "body"


def test_register_with_an_idempotency_key_is_done_once(api: Api) -> None:
    key = uuid4().hex
    body = registration()
    first = api.post("/auth/register", json=body, headers={"Idempotency-Key": key})
    again = api.post("/auth/register", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


def test_an_idempotency_key_of_the_wrong_shape_is_refused(api: Api) -> None:
    too_long = api.post(
        "/auth/register", json=registration(), headers={"Idempotency-Key": "k" * 256}
    )
    assert_problem(too_long, 422, "validation_error")


@pytest.mark.parametrize("key", ["ana@example.com", "Ana Lovelace", "a;b", "<k>"])
def test_an_idempotency_key_that_could_carry_an_email_or_a_name_is_refused(
    api: Api, key: str
) -> None:
    """A key is the readable correlation id of the events its command stores: only a
    token of safe characters is kept, and nothing is done under another."""
    body = registration()
    refused = api.post("/auth/register", json=body, headers={"Idempotency-Key": key})
    assert_problem(refused, 422, "invalid_idempotency_key")
    accepted = api.post("/auth/register", json=body, headers={"Idempotency-Key": "k:1/+=~_.-"})
    assert accepted.status_code == 201


# --- login -----------------------------------------------------------------------------


def test_login_answers_a_bearer_token_for_the_right_password(api: Api) -> None:
    user = api.register("customer")
    response = api.post("/auth/login", json={"email": user.email.upper(), "password": PASSWORD})
    token = api.ok(response)
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == api.settings.access_token_ttl
    assert response.headers["Cache-Control"] == "no-store"
    claims = jwt.decode(
        token["access_token"],
        JWT_SECRET,
        algorithms=["HS256"],
        audience="prep-es-api",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == str(user.id)
    assert claims["role"] == "customer"
    assert claims["iss"] == "prep-es"
    assert claims["exp"] - claims["iat"] == api.settings.access_token_ttl
    assert {"jti", "iat", "exp"} <= set(claims)


def test_login_refuses_a_wrong_password_or_an_unknown_email(api: Api) -> None:
    user = api.register("customer")
    wrong = api.post("/auth/login", json={"email": user.email, "password": "wrong password!"})
    assert_problem(wrong, 401, "invalid_credentials")
    unknown = api.post(
        "/auth/login", json={"email": f"nobody-{uuid4().hex}@example.com", "password": PASSWORD}
    )
    assert_problem(unknown, 401, "invalid_credentials")


def test_login_is_rate_limited_per_email_and_client(api: Api) -> None:
    user = api.register("customer")
    failures_max = api.settings.login_failures_max
    for _ in range(failures_max):
        wrong = api.post("/auth/login", json={"email": user.email, "password": "wrong password!"})
        assert_problem(wrong, 401, "invalid_credentials")
    limited = api.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    assert_problem(limited, 429, "too_many_login_attempts")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # The same email from another client, and another email from this one, may log in.
    other_client = TestClient(api.app, client=("203.0.113.7", 40000))
    api.ok(
        other_client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    )
    other_user = api.register("customer")
    api.ok(api.post("/auth/login", json={"email": other_user.email, "password": PASSWORD}))


def test_a_successful_login_clears_the_failures(api: Api) -> None:
    user = api.register("customer")
    for _ in range(api.settings.login_failures_max - 1):
        api.post("/auth/login", json={"email": user.email, "password": "wrong password!"})
    api.ok(api.post("/auth/login", json={"email": user.email, "password": PASSWORD}))
    for _ in range(api.settings.login_failures_max - 1):
        api.post("/auth/login", json={"email": user.email, "password": "wrong password!"})
    api.ok(api.post("/auth/login", json={"email": user.email, "password": PASSWORD}))


def test_the_bootstrapped_admin_logs_in(api: Api) -> None:
    assert api.admin.role == "admin"
    assert api.admin.email == ADMIN_EMAIL


# --- tokens ----------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(user: User) -> dict[str, Any]:
    return dict(jwt.decode(user.token, options={"verify_signature": False}))


def forged_tokens(user: User) -> dict[str, str]:
    claims = claims_of(user)
    without_sub = {k: v for k, v in claims.items() if k != "sub"}
    signature_of_other = jwt.encode(claims, "another-secret-" + "y" * 40, algorithm="HS256")
    header, payload, _ = user.token.split(".")
    return {
        "wrong signature": signature_of_other,
        "tampered payload": ".".join(
            [header, _b64({**claims, "role": "admin"}), user.token.split(".")[2]]
        ),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "other algorithm, same secret": jwt.encode(claims, JWT_SECRET, algorithm="HS512"),
        "wrong audience": jwt.encode({**claims, "aud": "someone-else"}, JWT_SECRET),
        "wrong issuer": jwt.encode({**claims, "iss": "someone-else"}, JWT_SECRET),
        "missing sub": jwt.encode(without_sub, JWT_SECRET),
        "sub not a user id": jwt.encode({**claims, "sub": "root"}, JWT_SECRET),
        "unknown user": jwt.encode({**claims, "sub": str(uuid4())}, JWT_SECRET),
        "not a jwt": "not-a-token",
    }


@pytest.mark.parametrize(
    "forgery",
    [
        "wrong signature",
        "tampered payload",
        "alg none",
        "other algorithm, same secret",
        "wrong audience",
        "wrong issuer",
        "missing sub",
        "sub not a user id",
        "unknown user",
        "not a jwt",
    ],
)
def test_a_forged_or_foreign_token_is_refused(api: Api, forgery: str) -> None:
    user = api.register("customer")
    token = forged_tokens(user)[forgery]
    response = api.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401, "invalid_token")


def test_an_expired_token_is_refused(api: Api) -> None:
    user = api.register("customer")
    past = api.clock.now - timedelta(hours=2)
    expired = TokenService(
        JWT_SECRET, issuer="prep-es", audience="prep-es-api", ttl_s=3600, clock=lambda: past
    ).issue(user.id, user.role)
    response = api.get("/users/me", headers={"Authorization": f"Bearer {expired.access_token}"})
    assert_problem(response, 401, "token_expired")


@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic dXNlcjpwYXNz", "Token abc"])
def test_a_request_without_a_bearer_token_is_unauthenticated(
    api: Api, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_problem(api.get("/users/me", headers=headers), 401, "not_authenticated")


def test_a_deactivated_users_token_is_refused_at_once(api: Api) -> None:
    user = api.register("customer")
    api.ok(api.get("/users/me", user))
    deactivated = api.ok(api.patch(f"/admin/users/{user.id}", api.admin, json={"active": False}))
    assert deactivated["active"] is False
    # Commands and queries alike, without waiting for any read model: both check the
    # user in the write model.
    assert_problem(api.post("/accounts/me/top-ups", user, json=TOP_UP), 401, "user_inactive")
    assert_problem(api.get("/users/me", user), 401, "user_inactive")
    assert_problem(api.get("/accounts/me", user), 401, "user_inactive")
    wait = {"X-Prep-Min-Position": str(deactivated["position"])}
    assert_problem(api.get("/users/me", user, headers=wait), 401, "user_inactive")
    login = api.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    assert_problem(login, 401, "user_inactive")

    api.clock.advance(timedelta(seconds=1))  # the deactivation was a moment ago
    reactivated = api.ok(api.patch(f"/admin/users/{user.id}", api.admin, json={"active": True}))
    # A reactivation revives no token issued before the deactivation...
    assert_problem(api.get("/users/me", user), 401, "token_revoked")
    assert_problem(api.post("/accounts/me/top-ups", user, json=TOP_UP), 401, "token_revoked")
    # ...and the user is admitted again at once with a new one.
    again = api.log_in(user.email, min_position=reactivated["position"])
    assert api.ok(api.get("/users/me", again))["active"] is True


def test_a_role_change_is_seen_by_queries_at_once(api: Api) -> None:
    user = api.register("customer")
    api.ok(api.get("/accounts/me", user))
    api.ok(api.patch(f"/admin/users/{user.id}", api.admin, json={"role": "host"}))
    assert_problem(api.get("/accounts/me", user), 401, "role_changed")


def test_a_token_issued_before_a_role_change_is_refused(api: Api) -> None:
    user = api.register("customer")
    changed = api.ok(api.patch(f"/admin/users/{user.id}", api.admin, json={"role": "host"}))
    assert changed["role"] == "host"
    wait = {"X-Prep-Min-Position": str(changed["position"])}
    assert_problem(api.get("/users/me", user, headers=wait), 401, "role_changed")
    again = api.log_in(user.email)  # the write model's role, at once
    assert claims_of(again)["role"] == "host"
    assert api.ok(api.get("/users/me", again, headers=wait))["role"] == "host"


def test_changing_a_role_back_revives_no_token_issued_before_the_change(api: Api) -> None:
    """An admin demoted and promoted again: the admin token from before the demotion
    carries the role again, but stays refused; a new sign-in is admitted."""
    user = api.user_with_role("admin")
    api.ok(api.get("/admin/users", user))
    api.clock.advance(timedelta(milliseconds=1))
    admin = api.admin
    api.ok(api.patch(f"/admin/users/{user.id}", admin, json={"role": "customer"}))
    assert_problem(api.get("/admin/users", user), 401, "role_changed")
    api.clock.advance(timedelta(milliseconds=1))
    back = api.ok(api.patch(f"/admin/users/{user.id}", admin, json={"role": "admin"}))
    assert back["role"] == "admin"
    assert_problem(api.get("/admin/users", user), 401, "token_revoked")
    assert_problem(api.get("/users/me", user), 401, "token_revoked")
    again = api.log_in(user.email, min_position=back["position"])
    api.ok(api.get("/admin/users", again))


# --- users/me and read-your-writes -----------------------------------------------------


def test_me_answers_the_profile_with_the_read_models_position(api: Api) -> None:
    user = api.register("host")
    response = api.get("/users/me", user)
    me = api.ok(response)
    assert me["id"] == str(user.id)
    assert me["email"] == user.email
    assert me["role"] == "host"
    assert int(response.headers["X-Prep-Position"]) > 0


def test_a_position_the_read_model_does_not_reach_in_time_is_503(tmp_path: Path) -> None:
    # No projector runs in this process (nor anywhere): the read models stay behind.
    settings = api_settings(
        f"sqlite:///{tmp_path / 'prep.db'}", run_projectors=False, min_position_wait_s=0.5
    )
    app = create_app(settings, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as client:
        body = {"email": "late@example.com", "password": PASSWORD, "full_name": "L", "role": "host"}
        created = client.post(f"{API}/auth/register", json=body).json()
        token = minted_token(UUID(created["id"]), "host")
        started = time.monotonic()
        response = client.get(
            f"{API}/users/me",
            headers={
                "Authorization": f"Bearer {token}",
                "X-Prep-Min-Position": str(created["position"]),
            },
        )
        assert time.monotonic() - started >= 0.45
        assert_problem(response, 503, "read_model_behind")
        assert int(response.headers["Retry-After"]) >= 1
        login = client.post(
            f"{API}/auth/login",
            json={"email": body["email"], "password": PASSWORD},
            headers={"X-Prep-Min-Position": str(created["position"])},
        )
        assert_problem(login, 503, "read_model_behind")


@contextmanager
def projections_caught_up_late(services: Services, delay_s: float) -> Iterator[None]:
    """The read models stay behind until they catch up, ``delay_s`` from now."""
    timer = threading.Timer(delay_s, catch_up_projections, [services])
    timer.start()
    try:
        yield
    finally:
        timer.join()


def test_a_new_user_logs_in_and_is_known_before_the_read_model_has_them(
    tmp_path: Path,
) -> None:
    """A token for a user the read models do not know yet is admitted at once (the
    write model checks it); their profile, and a login, wait for the users read model to
    catch up with the event store, without ``X-Prep-Min-Position``."""
    settings = api_settings(f"sqlite:///{tmp_path / 'prep.db'}", run_projectors=False)
    app = create_app(settings, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as client:
        services = app.state.services
        assert isinstance(services, Services)
        catch_up_projections(services)  # the read models' tables

        def register(email: str) -> UUID:
            body = {"email": email, "password": PASSWORD, "full_name": "N", "role": "host"}
            response = client.post(f"{API}/auth/register", json=body)
            assert response.status_code == 201, response.text
            return UUID(response.json()["id"])

        minted = minted_token(register("first@example.com"), "host")
        with projections_caught_up_late(services, 0.3):
            me = client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {minted}"})
        assert me.status_code == 200, me.text  # the profile is waited for, not a 404

        register("second@example.com")
        with projections_caught_up_late(services, 0.3):
            login = client.post(
                f"{API}/auth/login", json={"email": "second@example.com", "password": PASSWORD}
            )
        assert login.status_code == 200, login.text


def test_a_position_beyond_the_event_store_is_refused_at_once(api: Api) -> None:
    user = api.register("customer")
    beyond = api.services.runtime.app.position() + 1000
    response = api.get("/users/me", user, headers={"X-Prep-Min-Position": str(beyond)})
    assert_problem(response, 422, "min_position_ahead_of_store")


@pytest.mark.parametrize("value", ["-1", "abc", str(2**64)])
def test_a_malformed_min_position_is_422(api: Api, value: str) -> None:
    user = api.register("customer")
    response = api.get("/users/me", user, headers={"X-Prep-Min-Position": value})
    assert_problem(response, 422, "validation_error")


def test_a_token_checked_once_is_still_refused_once_it_expires() -> None:
    now = [START_OF_TESTS]
    tokens = TokenService(
        JWT_SECRET, issuer="prep-es", audience="prep-es-api", ttl_s=60, clock=lambda: now[0]
    )
    token = tokens.issue(uuid4(), "customer").access_token
    assert tokens.verify(token).role == "customer"  # checked, and now remembered
    now[0] += timedelta(seconds=61)
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(token)
    assert refused.value.code == "token_expired"
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(forged)
    assert refused.value.code == "invalid_token"
