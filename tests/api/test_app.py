"""The application around the routes: request ids and JSON logs, problems for every
error (malformed JSON, unknown routes, bugs), what each API role mounts, the OpenAPI
document, the JWT secret in embedded mode, the login limiter and the sweeper thread."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from aggregates.account import Account, account_id_for
from aggregates.top_up import TopUp
from prep_es.app import REQUEST_BODY_BYTES_MAX, create_app
from prep_es.services.attempt_limits import (
    MemoryAttemptLimiter,
    Quota,
    RedisAttemptLimiter,
    client_key,
    login_key,
)
from prep_es.services.auth import jwt_secret
from prep_es.services.container import SweeperThread
from prep_es.services.logs import configure_logging
from prep_es.services.passwords import Argon2Passwords
from prep_es.store.settings import Settings, SettingsError
from projections.locks import FileRunnerLock
from projections.status import projection_statuses
from tests.api.conftest import (
    ADMIN_EMAIL,
    API,
    PASSWORD,
    REDIS_URL,
    Api,
    api_settings,
    assert_problem,
    redis_reachable,
)
from tests.waiting import wait_until

# --- request ids -----------------------------------------------------------------------


def test_a_clients_request_id_is_echoed_and_used(api: Api) -> None:
    response = api.post("/auth/login", json={}, headers={"X-Request-ID": "client-id.42"})
    assert response.headers["X-Request-ID"] == "client-id.42"
    assert response.json()["request_id"] == "client-id.42"


@pytest.mark.parametrize("unsafe", ["has spaces", "x" * 129, 'quote"d', ""])
def test_an_unsafe_request_id_is_replaced(api: Api, unsafe: str) -> None:
    response = api.get("/users/me", headers={"X-Request-ID": unsafe})
    request_id = response.headers["X-Request-ID"]
    assert request_id != unsafe
    assert len(request_id) == 32
    assert response.json()["request_id"] == request_id


def test_each_request_gets_its_own_id(api: Api) -> None:
    ids = {api.get("/users/me").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_commands_record_the_request_id_in_their_events(api: Api) -> None:
    user = api.register("customer")
    response = api.post(
        "/accounts/me/top-ups",
        user,
        json={"amount": "5.00", "payment_method": "pm_card_visa"},
        headers={"X-Request-ID": "top-up-1"},
    )
    top_up = api.ok(response, 202)
    requested = next(iter(api.services.runtime.app.events.get(UUID(top_up["id"]))))
    assert isinstance(requested, TopUp.TopUpRequested)
    events = api.services.runtime.app.events.get(account_id_for(user.id))
    (started,) = [e for e in events if isinstance(e, Account.TopUpStarted)]
    for event in (requested, started):
        assert event.metadata.request_id == "top-up-1"
        assert event.metadata.actor_id == user.id
        assert event.metadata.actor_role == "customer"


# --- errors as problems ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"email": "a@b.c",}', b"\xff\xfe\x00", b'{"email": "a'],
)
def test_malformed_json_is_a_400_problem(api: Api, body: bytes) -> None:
    response = api.post("/auth/login", content=body, headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 400, "malformed_json")
    # Undecodable bytes never reach the JSON parser, so only parse errors list where.
    assert all(error["type"] == "json_invalid" for error in problem.get("errors", []))


@pytest.mark.parametrize(
    "body", [b"amount=5", b'{"amount": "5.00", "payment_method": "pm_card_visa"}']
)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_a_body_sent_as_anything_but_json_is_a_415_problem(
    api: Api, content_type: str | None, body: bytes
) -> None:
    user = api.register("customer")
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = api.post("/accounts/me/top-ups", user, content=body, headers=headers)
    assert_problem(response, 415, "unsupported_media_type")
    as_json = {"Content-Type": "application/json"}
    sent_as_json = api.post("/accounts/me/top-ups", user, content=body, headers=as_json)
    assert sent_as_json.status_code == (202 if body.startswith(b"{") else 400)


def test_a_missing_body_is_a_422_problem(api: Api) -> None:
    user = api.register("customer")
    missing = api.post("/accounts/me/top-ups", user)
    assert_problem(missing, 422, "validation_error")


def test_a_body_over_the_limit_is_a_413_problem(api: Api) -> None:
    too_large = b'{"email": "' + b"a" * REQUEST_BODY_BYTES_MAX + b'"}'
    declared = api.post(
        "/auth/login", content=too_large, headers={"Content-Type": "application/json"}
    )
    assert_problem(declared, 413, "request_too_large")

    def chunks() -> Iterator[bytes]:
        for _ in range(REQUEST_BODY_BYTES_MAX // 65536 + 1):
            yield b"a" * 65536

    streamed = api.post(
        "/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413, "request_too_large")


def test_an_unknown_route_is_a_404_problem(api: Api) -> None:
    problem = assert_problem(api.get("/nowhere"), 404, "not_found")
    assert problem["instance"] == "/api/v1/nowhere"
    assert_problem(api.client.get("/"), 404, "not_found")


def test_a_method_a_route_does_not_take_is_a_405_problem(api: Api) -> None:
    response = api.client.delete(f"{API}/kitchens")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(logging.INFO, stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_bug_is_a_500_that_says_nothing_but_is_logged_with_its_request_id(
    api: Api, json_log: io.StringIO
) -> None:
    def broken() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    api.app.add_api_route("/api/v1/test-broken", broken)
    try:
        response = api.client.get("/api/v1/test-broken", headers={"X-Request-ID": "bug-1"})
    finally:
        api.app.router.routes[:] = [
            route
            for route in api.app.router.routes
            if not (isinstance(route, APIRoute) and route.path == "/api/v1/test-broken")
        ]
    problem = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert problem["request_id"] == "bug-1"
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (logged,) = [line for line in lines if line["level"] == "ERROR"]
    assert logged["request_id"] == "bug-1"
    assert "RuntimeError: secret internals" in logged["exception"]
    assert "Traceback" in logged["exception"]


def test_log_lines_are_json_with_the_request_id(api: Api, json_log: io.StringIO) -> None:
    api.post("/auth/login", json={"email": "x@example.com", "password": "p" * 12})
    logging.getLogger("prep_es.test").warning("outside any request", extra={"detail": 7})
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (outside,) = [line for line in lines if line["message"] == "outside any request"]
    assert outside["request_id"] is None
    assert outside["detail"] == 7
    assert outside["logger"] == "prep_es.test"
    assert outside["time"].endswith("Z")


def test_the_servers_coloured_copy_of_a_message_stays_out_of_the_json(
    json_log: io.StringIO,
) -> None:
    logging.getLogger("uvicorn.error").info(
        "Started", extra={"color_message": "\x1b[32mStarted\x1b[0m"}
    )
    (line,) = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert line["message"] == "Started"
    assert "color_message" not in line


# --- mounting and construction ---------------------------------------------------------


def _operations(settings: Settings) -> set[tuple[str, str]]:
    paths = create_app(settings).openapi()["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def test_create_app_opens_nothing() -> None:
    # No server listens on port 1 and no secret is set: both only matter at startup.
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/nothing")
    app = create_app(settings)
    assert not hasattr(app.state, "services")
    with pytest.raises(SettingsError), TestClient(app):
        pass


@pytest.mark.parametrize(
    ("role", "writes", "reads"),
    [("all", True, True), ("write", True, False), ("read", False, True)],
)
def test_the_api_role_decides_which_routes_are_served(
    tmp_path: Path, role: str, writes: bool, reads: bool
) -> None:
    operations = _operations(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", api_role=role))
    assert (("POST", f"{API}/bookings") in operations) is writes
    assert (("PATCH", f"{API}/bookings/{{booking_id}}/cancel") in operations) is writes
    assert (("POST", f"{API}/auth/login") in operations) is writes
    assert (("GET", f"{API}/users/me") in operations) is reads


def test_every_write_route_of_the_contract_is_served(tmp_path: Path) -> None:
    operations = _operations(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    contract = {
        ("POST", "/auth/register"),
        ("POST", "/auth/login"),
        ("POST", "/kitchens"),
        ("PATCH", "/kitchens/{kitchen_id}"),
        ("POST", "/kitchens/{kitchen_id}/submit"),
        ("POST", "/kitchens/{kitchen_id}/certificates"),
        ("POST", "/bookings"),
        ("POST", "/bookings/{booking_id}/confirm"),
        ("POST", "/bookings/{booking_id}/decline"),
        ("PATCH", "/bookings/{booking_id}/cancel"),
        ("PATCH", "/bookings/{booking_id}/reschedule"),
        ("POST", "/bookings/{booking_id}/complete"),
        ("POST", "/accounts/me/top-ups"),
        ("PUT", "/accounts/me/payout-destination"),
        ("POST", "/accounts/me/payouts"),
        ("POST", "/accounts/me/withdrawals"),
        ("POST", "/admin/kitchens/{kitchen_id}/approve"),
        ("POST", "/admin/kitchens/{kitchen_id}/reject"),
        ("POST", "/admin/kitchens/{kitchen_id}/suspend"),
        ("POST", "/admin/kitchens/{kitchen_id}/reinstate"),
        ("POST", "/admin/kitchens/{kitchen_id}/certificates/{certificate_id}/verify"),
        ("POST", "/admin/kitchens/{kitchen_id}/certificates/{certificate_id}/reject"),
        ("PATCH", "/admin/users/{user_id}"),
        ("POST", "/admin/users/{user_id}/erase"),
        ("POST", "/admin/projections/{name}/rebuild"),
        ("PATCH", "/users/me"),
        ("POST", "/users/me/password"),
        ("DELETE", "/users/me"),
        ("GET", "/users/me"),
    }
    assert {(method, API + path) for method, path in contract} <= operations


# --- response headers and the documentation ---------------------------------------------


def test_every_answer_says_nosniff_and_answers_to_credentials_are_not_stored(api: Api) -> None:
    admin = api.admin
    anonymous = [
        api.client.get("/healthz"),
        api.get("/kitchens"),
        api.get("/no-such-route"),
        api.get("/users/me"),  # 401
    ]
    for response in anonymous:
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.request.url
        assert "no-store" not in response.headers.get("Cache-Control", "")
    authenticated = [
        api.get("/users/me", admin),
        api.get("/kitchens", admin),  # public, but asked with credentials
        api.get(f"/bookings/{uuid4()}", admin),  # 404
        api.get("/users/me", headers={"Authorization": "Bearer not-a-token"}),  # 401
        api.post(
            "/accounts/me/top-ups", admin, json={"amount": "1.00", "payment_method": "pm_card_visa"}
        ),  # 403
    ]
    for response in authenticated:
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.request.url
        assert response.headers["Cache-Control"] == "no-store", response.request.url


DOCUMENT_LINK = re.compile(r'(?:src|href|spec-url|data-openapi-url)="([^"]*)"')
EXPECTED_MEDIA_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_documentation_loads_nothing_from_elsewhere(api: Api, page: str) -> None:
    response = api.client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "<script>" not in response.text  # no inline script for the policy to allow
    links = DOCUMENT_LINK.findall(response.text)
    assert links and all(link.startswith("/") and not link.startswith("//") for link in links)
    for link in links:
        asset = api.client.get(link)
        assert asset.status_code == 200, link
        suffix = link[link.rindex(".") :]
        assert asset.headers["content-type"].startswith(EXPECTED_MEDIA_TYPES[suffix]), link
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert asset.content


def test_only_the_documentations_own_assets_are_served(api: Api) -> None:
    for name in ("../app.py", "../store/settings.py", "swagger-ui.js"):
        assert api.client.get(f"/docs/assets/{name}").status_code == 404


def test_the_openapi_document_describes_every_operation_and_its_problems(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        if not path.startswith(API):
            continue
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            assert operation.get("description"), where
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert list(answer["content"]) == ["application/problem+json"], where
    creating = document["paths"][f"{API}/bookings"]["post"]
    headers = {p["name"] for p in creating["parameters"] if p["in"] == "header"}
    assert "Idempotency-Key" in headers
    assert {"201", "402", "409", "422"} <= set(creating["responses"])
    assert api.client.get("/docs").status_code == 200


# --- the JWT secret in embedded mode ---------------------------------------------------


def test_embedded_mode_keeps_a_generated_secret_beside_the_database(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'prep.db'}")
    first = jwt_secret(settings)
    assert len(first) >= 64
    assert jwt_secret(settings) == first
    path = tmp_path / "prep.db.jwt-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert jwt_secret(Settings(database_url="sqlite:///:memory:")) != first


def test_the_embedded_database_files_are_readable_by_their_owner_alone(tmp_path: Path) -> None:
    """They hold password hashes and personal data: the database and the ``-wal`` and
    ``-shm`` files SQLite makes beside it are created 0600 whatever the umask."""
    database = tmp_path / "prep.db"
    settings = api_settings(f"sqlite:///{database}")
    previous_umask = os.umask(0o022)
    try:
        with TestClient(
            create_app(settings, passwords=Argon2Passwords.cheap_for_tests())
        ) as client:
            registered = client.post(
                f"{API}/auth/register",
                json={
                    "email": "ana@example.com",
                    "password": PASSWORD,
                    "full_name": "Ana Test",
                    "role": "customer",
                },
            )
            assert registered.status_code == 201, registered.text
            files = [database, tmp_path / "prep.db-wal", tmp_path / "prep.db-shm"]
            modes = {path.name: stat.S_IMODE(os.stat(path).st_mode) for path in files}
    finally:
        os.umask(previous_umask)
    assert modes == {"prep.db": 0o600, "prep.db-wal": 0o600, "prep.db-shm": 0o600}


def test_a_configured_secret_is_used_and_postgres_demands_one(tmp_path: Path) -> None:
    secret = "configured-secret-Hw4Jt8Np2Zr6Bx1Mk9Qv3Ls7"
    assert (
        jwt_secret(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", jwt_secret=secret))
        == secret
    )
    with pytest.raises(SettingsError):
        jwt_secret(Settings(database_url="postgresql://u@127.0.0.1:5432/db"))
    with pytest.raises(SettingsError):
        jwt_secret(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", jwt_secret="short"))


# --- the login limiter -----------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keyed_hash(text: str) -> str:
    """A keyed hash, as the store's ``email_digest`` makes them."""
    return hmac.new(b"limiter tests' secret", text.encode(), hashlib.sha256).hexdigest()


def test_limiter_keys_are_keyed_hashes() -> None:
    """Nothing in a key gives its email or address away to whoever hashes guesses."""
    email, client = "ana@example.com", "10.0.0.1"
    for key, material in (
        (login_key(email, client, keyed_hash), f"login\x00{email}\x00{client}"),
        (client_key("login", client, keyed_hash), f"login\x00{client}"),
    ):
        assert email not in key and client not in key
        assert key != hashlib.sha256(material.encode()).hexdigest()
        assert key == keyed_hash(material)


def test_the_per_process_limiter_opens_a_window_at_the_first_attempt() -> None:
    time = FakeMonotonic()
    limiter = MemoryAttemptLimiter(monotonic=time)
    key = login_key("Ana@Example.com", "10.0.0.1", keyed_hash)
    assert key == login_key(" ana@example.com", "10.0.0.1", keyed_hash)
    assert key != login_key("ana@example.com", "10.0.0.2", keyed_hash)
    assert key != client_key("login", "10.0.0.1", keyed_hash)
    for _ in range(3):
        assert limiter.reserve([Quota(key, 3)]) is None
    time.now += 20
    assert limiter.reserve([Quota(key, 3)]) == 40
    limiter.refund(key)
    assert limiter.reserve([Quota(key, 3)]) is None
    time.now += 40
    assert limiter.reserve([Quota(key, 3)]) is None


def test_a_reservation_counts_under_every_key_or_none() -> None:
    limiter = MemoryAttemptLimiter()
    assert limiter.reserve([Quota("client", 1)]) is None
    assert limiter.reserve([Quota("email", 2), Quota("client", 1)]) is not None
    # The refused attempt counted under neither key.
    assert limiter.reserve([Quota("email", 1)]) is None
    limiter.reset("client")
    assert limiter.reserve([Quota("email", 2), Quota("client", 1)]) is None


def test_the_per_process_limiter_is_bounded() -> None:
    limiter = MemoryAttemptLimiter(keys_max=10)
    for index in range(100):
        limiter.reserve([Quota(str(index), 1)])
    assert limiter.reserve([Quota("99", 1)]) is not None
    assert limiter.reserve([Quota("0", 1)]) is None


def test_the_redis_limiter_counts_per_process_while_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisAttemptLimiter("redis://127.0.0.1:1/0", namespace="tests")
    with caplog.at_level(logging.WARNING, logger="prep_es.services.auth"):
        for _ in range(2):
            assert limiter.reserve([Quota("k", 2)]) is None
        assert limiter.reserve([Quota("k", 2)]) is not None
        limiter.reset("k")
        assert limiter.reserve([Quota("k", 2)]) is None
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1
    limiter.close()


# --- the sweeper thread ----------------------------------------------------------------


def test_the_sweeper_runs_at_once_then_every_interval_and_survives_a_failure() -> None:
    calls: list[int] = []
    third = threading.Event()

    def sweep() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        if len(calls) >= 3:
            third.set()
        return None

    sweeper = SweeperThread(sweep, interval_s=0.01)
    sweeper.start()
    assert third.wait(5)
    sweeper.stop()
    count = len(calls)
    assert not sweeper._thread.is_alive()
    assert len(calls) == count


class RefusalsCounted(FileRunnerLock):
    """A file lock that counts the times it was asked for and refused."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.refusals = 0

    def try_acquire(self) -> bool:
        acquired = super().try_acquire()
        self.refusals += not acquired
        return acquired


def test_one_sweeper_sweeps_and_another_takes_over_when_it_stops(tmp_path: Path) -> None:
    """Two processes' sweepers share the lock (here two threads and a file lock): one
    sweeps, the other stands by until the first lets go."""
    swept: dict[str, int] = {"first": 0, "second": 0}
    swept_thrice = {"first": threading.Event(), "second": threading.Event()}
    locks = {name: RefusalsCounted(str(tmp_path / "sweeper.lock")) for name in swept}

    def sweeper(name: str) -> SweeperThread:
        def sweep() -> None:
            swept[name] += 1
            if swept[name] >= 3:
                swept_thrice[name].set()

        return SweeperThread(sweep, interval_s=0.01, lock=locks[name])

    first, second = sweeper("first"), sweeper("second")
    first.start()
    assert swept_thrice["first"].wait(5)
    second.start()
    wait_until(lambda: locks["second"].refusals >= 3, 10, "the second to stand by, thrice")
    assert swept["second"] == 0
    first.stop()
    assert swept_thrice["second"].wait(5)
    second.stop()


# --- the bootstrapped admin ------------------------------------------------------------


def test_the_admin_logs_in_as_soon_as_the_server_is_up_and_is_made_once(tmp_path: Path) -> None:
    settings = api_settings(f"sqlite:///{tmp_path / 'prep.db'}")
    ids = []
    for _ in range(2):  # the second start finds the admin there
        app = create_app(settings, passwords=Argon2Passwords.cheap_for_tests())
        with TestClient(app) as client:
            login = {"email": ADMIN_EMAIL, "password": PASSWORD}
            token = client.post(f"{API}/auth/login", json=login)
            assert token.status_code == 200, token.text
            bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
            me = client.get(f"{API}/users/me", headers=bearer).json()
            assert me["role"] == "admin"
            ids.append(me["id"])
    assert ids[0] == ids[1]


# --- text a read model cannot hold -----------------------------------------------------


def test_text_holding_nul_is_refused_before_it_reaches_an_event(api: Api) -> None:
    host = api.register("host")
    kitchen = api.draft_kitchen(host)
    customer = api.customer()
    nul = "a\x00b"
    cases: list[tuple[str, str, Any, dict[str, Any]]] = [
        (
            "POST",
            "/auth/register",
            None,
            {"email": "n@example.com", "password": "p" * 12, "full_name": nul, "role": "customer"},
        ),
        ("POST", "/auth/login", None, {"email": f"{nul}@example.com", "password": "p" * 12}),
        (
            "POST",
            "/kitchens",
            host,
            {
                "name": "K",
                "city": "LA",
                "jurisdiction": "los_angeles",
                "address": "1",
                "hourly_rate": "5.00",
                "capacity": 2,
                "amenities": ["oven", nul],
            },
        ),
        ("PATCH", f"/kitchens/{kitchen['id']}", host, {"description": nul}),
        (
            "POST",
            f"/kitchens/{kitchen['id']}/certificates",
            host,
            {
                "kind": "health_permit",
                "number": nul,
                "issued_on": "2029-01-01",
                "expires_on": "2031-01-01",
                "document_sha256": "ab" * 32,
            },
        ),
        (
            "POST",
            "/bookings",
            customer,
            {"kitchen_id": kitchen["id"], "guests": 1, "notes": nul, **api.window(days=3)},
        ),
        ("POST", f"/admin/kitchens/{kitchen['id']}/reject", api.admin, {"reason": nul}),
    ]
    for method, path, user, body in cases:
        response = api.client.request(
            method,
            API + path,
            json=body,
            headers={} if user is None else {"Authorization": f"Bearer {user.token}"},
        )
        problem = assert_problem(response, 422, "validation_error")
        assert problem["errors"][0]["msg"].endswith("text must not contain NUL characters")
    statuses = projection_statuses(api.services.runtime.app, api.services.read_side.write_database)
    assert [status.failure for status in statuses] == [None] * len(statuses)


def test_the_redis_limiter_is_shared_by_every_process() -> None:
    if not redis_reachable(REDIS_URL):
        pytest.skip(f"REDIS NOT REACHABLE at {REDIS_URL}")
    first, second = (
        RedisAttemptLimiter(REDIS_URL, namespace="tests"),
        RedisAttemptLimiter(REDIS_URL, namespace="tests"),
    )
    key = login_key(f"shared-{uuid4().hex}@example.com", "10.0.0.9", keyed_hash)
    other = client_key("login", f"10.0.0.{uuid4().int % 250}-{uuid4().hex}", keyed_hash)
    assert first.reserve([Quota(key, 2)]) is None
    assert second.reserve([Quota(key, 2)]) is None
    assert 55 <= (first.reserve([Quota(key, 2)]) or 0) <= 60
    # Refused under one key: counted under neither.
    assert second.reserve([Quota(other, 1), Quota(key, 2)]) is not None
    assert first.reserve([Quota(other, 1)]) is None
    second.refund(key)
    assert first.reserve([Quota(key, 2)]) is None
    assert second.reserve([Quota(key, 2)]) is not None
    second.reset(key)
    assert first.reserve([Quota(key, 2)]) is None
    first.close()
    second.close()


def test_the_redis_limiter_counts_each_deployment_apart() -> None:
    """Two deployments sharing one Redis database: one's failed logins never lock
    out the other's users."""
    if not redis_reachable(REDIS_URL):
        pytest.skip(f"REDIS NOT REACHABLE at {REDIS_URL}")
    ours = RedisAttemptLimiter(REDIS_URL, namespace=f"ours-{uuid4().hex}")
    theirs = RedisAttemptLimiter(REDIS_URL, namespace=f"theirs-{uuid4().hex}")
    key = login_key("someone@example.com", "10.0.0.9", keyed_hash)
    assert ours.reserve([Quota(key, 1)]) is None
    assert ours.reserve([Quota(key, 1)]) is not None
    assert theirs.reserve([Quota(key, 1)]) is None
    ours.close()
    theirs.close()
