"""Schemathesis against ``/openapi.json`` on the ASGI application (SQLite, and
PostgreSQL with Redis, whose text refuses what SQLite's takes — NUL): for every
operation, requests generated from the schema — valid ones and ones that break it —
sent anonymously and as each role; no answer may be a 5xx. The one 5xx the contract
gives for a client's input is 503 ``read_model_behind``, for an ``X-Prep-Min-Position``
within the event store's head that the read model does not reach in time (the wait is
cut short here); a position beyond the head is a 4xx at once.

Schemathesis generates the requests; they go through the module's own test client, so
the application starts once per backend (schemathesis's ASGI transport would restart
its lifespan after every test). Bounded for CI through the ``api-fuzz`` hypothesis
profile (``API_FUZZ_EXAMPLES`` examples per operation and generation mode, 8 unless
set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode

from prep_es.app import create_app
from prep_es.passwords import Argon2Passwords
from tests.api.conftest import Api, User, api_settings
from tests.support import START_OF_TESTS, MutableClock

settings.register_profile(
    "api-fuzz",
    max_examples=int(os.environ.get("API_FUZZ_EXAMPLES", "8")),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
FUZZ = settings.get_profile("api-fuzz")
ROLES = ("anonymous", "customer", "host", "admin", "analyst")
BASE_URL = "http://testserver"


@pytest.fixture(scope="module")
def api(module_database_url: str) -> Iterator[Api]:
    """As the shared ``api`` fixture, but a read-your-writes wait gives up at once (a
    generated position is mostly one the read model never reaches) and a bug is
    answered as the 500 the client would see rather than raised."""
    settings_ = api_settings(module_database_url, min_position_wait_s=0.05)
    clock = MutableClock(START_OF_TESTS)
    app = create_app(settings_, clock=clock, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(app=app, client=client, clock=clock, settings=settings_)


@dataclass(frozen=True)
class Target:
    api: Api
    schema: Any
    users: dict[str, User]


@pytest.fixture(scope="module")
def target(api: Api) -> Target:
    users = {role: api.user_with_role(role) for role in ROLES if role != "anonymous"}
    return Target(api=api, schema=schemathesis.openapi.from_dict(api.app.openapi()), users=users)


def _operations() -> dict[str, bool]:
    """Every operation, and whether it takes any input (else nothing breaks its schema)."""
    app = create_app(api_settings("sqlite:///unused.db"))
    return {
        f"{method.upper()} {path}": bool(
            operation.get("parameters") or operation.get("requestBody")
        )
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
    }


OPERATIONS = _operations()


def _send(
    client: TestClient, case: Any, user: User | None, *, keep_min_position: bool
) -> httpx.Response:
    """The generated request as a client sends it, signed in as ``user``: their token
    replaces a generated ``Authorization`` (anonymous requests keep it, an invalid token
    is worth sending too), and a generated ``X-Prep-Min-Position`` — which would keep
    most requests from the handler — is sent only if ``keep_min_position``. Header values
    go as UTF-8 bytes (a generated value need not be ASCII)."""
    request = case.as_transport_kwargs(base_url=BASE_URL)
    headers: dict[str, str] = {}
    for name, value in (request.get("headers") or {}).items():
        if name.lower() == "authorization" and user is not None:
            continue
        if name.lower() == "x-prep-min-position" and not keep_min_position:
            continue
        headers[name] = value
    if user is not None:
        headers.update(user.headers)
    body: dict[str, Any] = {}
    if "json" in request:
        body["json"] = request["json"]
    elif isinstance(request.get("data"), str | bytes):
        body["content"] = request["data"]
    elif request.get("data") is not None:
        body["data"] = request["data"]
    response: httpx.Response = client.request(
        request["method"],
        request["url"],
        params=request.get("params"),
        headers=[(name.encode(), str(value).encode()) for name, value in headers.items()],
        **body,
    )
    return response


def _answer_allowed(response: httpx.Response, store_head: int) -> bool:
    """No 5xx, but a 503 ``read_model_behind`` for a position the store has reached
    (one beyond its head is refused at once with a 4xx: never waited for)."""
    if response.status_code < 500:
        return True
    if response.status_code != 503:
        return False
    body: dict[str, Any] = response.json()
    sent = response.request.headers.get("x-prep-min-position", "")
    return (
        body.get("code") == "read_model_behind"
        and "Retry-After" in response.headers
        and sent.isdigit()
        and int(sent) <= store_head
    )


def test_schemathesis_reads_every_operation(target: Target) -> None:
    results = list(target.schema.get_all_operations())
    errors = [result.err() for result in results if isinstance(result, Err)]
    assert not errors, errors
    assert len(results) == len(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_no_operation_answers_5xx(target: Target, operation: str, mode: GenerationMode) -> None:
    if mode is GenerationMode.NEGATIVE and not OPERATIONS[operation]:
        pytest.skip("takes no input: nothing to break")
    method, path = operation.split(" ", 1)
    api_operation = target.schema[path][method]
    client = target.api.client

    @FUZZ
    @given(
        case=api_operation.as_strategy(generation_mode=mode),
        role=st.sampled_from(ROLES),
        keep_min_position=st.booleans(),
    )
    def run(case: Any, role: str, keep_min_position: bool) -> None:
        try:
            response = _send(
                client, case, target.users.get(role), keep_min_position=keep_min_position
            )
        except (httpx.HTTPError, UnicodeError, ValueError, TypeError):
            reject()  # not sendable by an HTTP client: it never reaches the application
        store_head = target.api.services.runtime.app.position()
        assert _answer_allowed(response, store_head), (
            f"{operation} as {role}: {response.status_code} {response.text[:500]}\n"
            f"{case.as_curl_command()}"
        )

    run()
