"""Schemathesis against ``/openapi.json`` on the ASGI application (SQLite, and
PostgreSQL with Redis, whose text refuses what SQLite's takes — NUL), in all four of
its phases, for every operation, commands and queries alike:

- examples: each operation's schema examples (or one simple request when it has none),
  sent anonymously and with a customer's, a host's and an admin's token;
- coverage: the deterministic boundary and schema-breaking requests schemathesis
  derives from each operation's schema, sent in turn by each role the operation lets
  in (an admin and a customer for most; all five roles send its first request);
- fuzzing: random valid and schema-breaking requests, each as a random role;
- stateful: sequences of operations linked by what one answer gives the next
  (schemathesis infers the links: a created kitchen's id into its submit, …), run
  once as a customer, once as a host and once as an admin.

No answer may be a 5xx, but for the one the contract gives for a client's input: 503
``read_model_behind`` with ``Retry-After``, for an ``X-Prep-Min-Position`` that the
event store has reached and the read model did not reach in time (the wait is cut
short here). A position beyond the store's head can never have been handed out: it is
refused at once, never answered 503.

Schemathesis generates the requests; they go through the module's own test client, so
the application starts once per backend (schemathesis's ASGI transport would restart
its lifespan after every test). Bounded for CI: ``API_FUZZ_EXAMPLES`` random requests
per operation and generation mode (8 unless set), ``API_FUZZ_SCENARIOS`` stateful
scenarios per role (10 unless set) of at most ``API_FUZZ_STEPS`` steps (8 unless set);
hypothesis is derandomized (the same requests every run) unless ``API_FUZZ_SEED`` asks
for other ones (the random phase's seed; the stateful one then runs at random).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, reject, seed, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.hypothesis.builder import generate_example_cases
from schemathesis.generation.overrides import Override

from api.deps import MIN_POSITION_HEADER
from prep_es.app import create_app
from prep_es.services.passwords import Argon2Passwords
from tests.api.conftest import Api, User, api_settings
from tests.support import START_OF_TESTS, MutableClock

SEED = os.environ.get("API_FUZZ_SEED")
settings.register_profile(
    "api-fuzz",
    max_examples=int(os.environ.get("API_FUZZ_EXAMPLES", "8")),
    stateful_step_count=int(os.environ.get("API_FUZZ_STEPS", "8")),
    deadline=None,
    database=None,
    derandomize=SEED is None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
FUZZ = settings.get_profile("api-fuzz")
STATEFUL = settings(FUZZ, max_examples=int(os.environ.get("API_FUZZ_SCENARIOS", "10")))
ROLES = ("anonymous", "customer", "host", "admin", "analyst")
EXAMPLE_ROLES = ("anonymous", "customer", "host", "admin")
STATEFUL_ROLES = ("customer", "host", "admin")
BASE_URL = "http://testserver"
UNSENDABLE = (httpx.HTTPError, UnicodeError, ValueError, TypeError)
"""What an HTTP client refuses to send: such a request never reaches the application."""


def _seeded(test: Any) -> Any:
    return seed(int(SEED))(test) if SEED is not None else test


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

    def send(self, case: Any, role: str, *, keep_min_position: bool = True) -> httpx.Response:
        return _send(self.api.client, case, self.users.get(role), keep_min_position)

    def check(self, response: httpx.Response, case: Any, role: str) -> None:
        assert _answer_allowed(response, self.store_head()), (
            f"{case.operation.label} as {role}: {response.status_code} {response.text[:500]}\n"
            f"{case.as_curl_command()}"
        )

    def store_head(self) -> int:
        """The event store's latest position (read after the answer: it only grows)."""
        return self.api.services.runtime.app.position()


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
    client: TestClient, case: Any, user: User | None, keep_min_position: bool
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
        if name.lower() == MIN_POSITION_HEADER.lower() and not keep_min_position:
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


def _min_position_sent(response: httpx.Response) -> int | None:
    value = response.request.headers.get(MIN_POSITION_HEADER)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _answer_allowed(response: httpx.Response, store_head: int) -> bool:
    """Any 2xx, 3xx or 4xx; of the 5xx only a 503 ``read_model_behind`` with
    ``Retry-After`` for a position the store has reached (one it has not reached could
    never have been handed out: refused at once)."""
    if response.status_code < 500:
        return True
    if response.status_code != 503 or "Retry-After" not in response.headers:
        return False
    body: dict[str, Any] = response.json()
    if body.get("code") != "read_model_behind":
        return False
    position = _min_position_sent(response)
    return position is not None and position <= store_head


def _label(operation: str) -> tuple[str, str]:
    method, path = operation.split(" ", 1)
    return path, method


def test_schemathesis_reads_every_operation(target: Target) -> None:
    results = list(target.schema.get_all_operations())
    errors = [result.err() for result in results if isinstance(result, Err)]
    assert not errors, errors
    assert len(results) == len(OPERATIONS)


def test_a_far_ahead_position_is_not_answered_503() -> None:
    """The check itself: a 503 for a position beyond the store's head is refused."""
    request = httpx.Request("GET", BASE_URL, headers={MIN_POSITION_HEADER: "100"})
    behind = httpx.Response(
        503, headers={"Retry-After": "1"}, json={"code": "read_model_behind"}, request=request
    )
    assert _answer_allowed(behind, store_head=100)
    assert not _answer_allowed(behind, store_head=99)
    assert not _answer_allowed(httpx.Response(500, request=request), store_head=100)


def _sendable(cases: Iterable[Any]) -> Iterator[Any]:
    for case in cases:
        try:
            case.as_transport_kwargs(base_url=BASE_URL)
        except UNSENDABLE:
            continue
        yield case


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_examples_phase(target: Target, operation: str) -> None:
    path, method = _label(operation)
    api_operation = target.schema[path][method]
    cases = list(
        _sendable(generate_example_cases(test=_no_test, operation=api_operation, fill_missing=True))
    )
    assert cases, f"{operation}: no example to send"
    for case, role in itertools.product(cases, EXAMPLE_ROLES):
        target.check(target.send(case, role), case, role)


def _no_test() -> None:
    """Schemathesis marks what it could not use on the test it builds examples for."""


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_coverage_phase(target: Target, operation: str) -> None:
    path, method = _label(operation)
    api_operation = target.schema[path][method]
    generator = CoverageGenerator(
        operation=api_operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=target.schema.config.generation_for(
            operation=api_operation, phase="coverage"
        ),
        auth_storage=None,
        override=Override(),
        feedback=FeedbackSources(),
    )
    cases = list(_sendable(generator))
    assert cases, f"{operation}: no coverage request to send"
    senders = itertools.cycle(_admitted_roles(target, cases[0]))
    for case in cases:
        role = next(senders)
        target.check(target.send(case, role), case, role)


def _admitted_roles(target: Target, case: Any) -> tuple[str, ...]:
    """The roles ``case``'s operation lets in: those whose answer to its simplest request
    is not a 401 or 403 (a refused role's request stops before the input is judged, so
    sending the schema-breaking ones with it would test the door, not the room); all of
    them when none is let in."""
    admitted = []
    for role in ROLES:
        response = target.send(case, role)
        target.check(response, case, role)
        if response.status_code not in (401, 403):
            admitted.append(role)
    return tuple(admitted) or ROLES


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_fuzzing_phase(target: Target, operation: str, mode: GenerationMode) -> None:
    if mode is GenerationMode.NEGATIVE and not OPERATIONS[operation]:
        pytest.skip("takes no input: nothing to break")
    path, method = _label(operation)
    api_operation = target.schema[path][method]

    @_seeded
    @FUZZ
    @given(
        case=api_operation.as_strategy(generation_mode=mode),
        role=st.sampled_from(ROLES),
        keep_min_position=st.booleans(),
    )
    def run(case: Any, role: str, keep_min_position: bool) -> None:
        try:
            response = target.send(case, role, keep_min_position=keep_min_position)
        except UNSENDABLE:
            reject()
        target.check(response, case, role)

    run()


@pytest.mark.parametrize("role", STATEFUL_ROLES)
def test_stateful_phase(target: Target, role: str) -> None:
    """Scenarios of linked operations, every step sent with ``role``'s token and
    without a generated ``X-Prep-Min-Position`` (the other phases send those), so that
    each step reaches its handler and what it makes feeds the next."""

    class Scenario(target.schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: Any, **kwargs: Any) -> Response:
            try:
                response = target.send(case, role, keep_min_position=False)
            except UNSENDABLE:
                reject()
            target.check(response, case, role)
            return Response.from_httpx(response, verify=True)

        def validate_response(self, response: Response, case: Any, **kwargs: Any) -> None:
            """Checked in :meth:`call`: no 5xx, the one rule of this module."""

    Scenario.run(settings=STATEFUL)
