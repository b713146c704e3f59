"""Schemathesis against ``/openapi.json`` on the ASGI application (SQLite): for every
operation, requests generated from the schema — valid ones and ones that break it —
sent anonymously and as each role; no answer may be a 5xx. The one 5xx the contract
gives for a client's input is 503 ``read_model_behind``, for an ``X-Prep-Min-Position``
the read model does not reach in time (the wait is cut short here).

Bounded for CI through the ``api-fuzz`` hypothesis profile (``API_FUZZ_EXAMPLES``
examples per operation and generation mode, 8 unless set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from prep_es.app import create_app
from prep_es.passwords import Argon2Passwords
from prep_es.services import Services
from tests.api.conftest import ADMIN_EMAIL, API, PASSWORD, api_settings

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


@dataclass(frozen=True)
class Target:
    app: FastAPI
    schema: Any
    tokens: dict[str, str]


def _post(client: Any, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = client.post(API + path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The application, its lifespan run by schemathesis's ASGI transport, with a user
    of each role signed in."""
    database = tmp_path_factory.mktemp("fuzz") / "prep_es.db"
    app = create_app(
        api_settings(f"sqlite:///{database}", min_position_wait_s=0.05),
        passwords=Argon2Passwords.cheap_for_tests(),
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        client = asgi.get_client(app)
        services: Services = app.state.services
        tokens: dict[str, str] = {}
        for role in ("customer", "host", "analyst", "admin"):
            if role == "admin":
                email = ADMIN_EMAIL
            else:
                email = f"fuzz-{role}@example.com"
                _post(
                    client,
                    "/auth/register",
                    {
                        "email": email,
                        "password": PASSWORD,
                        "full_name": "Fuzz",
                        "role": "host" if role == "host" else "customer",
                    },
                )
            login = _post(
                client,
                "/auth/login",
                {"email": email, "password": PASSWORD},
                **{"X-Prep-Min-Position": str(services.runtime.app.position())},
            )
            tokens[role] = login["access_token"]
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        user = services.users.credentials_by_email("fuzz-analyst@example.com")
        assert user is not None
        changed = client.patch(
            f"{API}/admin/users/{user.id}", json={"role": "analyst"}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        tokens["analyst"] = _post(
            client,
            "/auth/login",
            {"email": "fuzz-analyst@example.com", "password": PASSWORD},
            **{"X-Prep-Min-Position": str(changed.json()["position"])},
        )["access_token"]
        yield Target(app=app, schema=schema, tokens=tokens)
    finally:
        asgi.shutdown_lifespans()


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


def _answer_allowed(response: Any) -> bool:
    if response.status_code < 500:
        return True
    if response.status_code != 503:
        return False
    body: dict[str, Any] = response.json()
    # Schemathesis gives headers with lower-case names.
    return body.get("code") == "read_model_behind" and "retry-after" in response.headers


def test_schemathesis_reads_every_operation(target: Target) -> None:
    results = list(target.schema.get_all_operations())
    errors = [result.err() for result in results if isinstance(result, Err)]
    assert not errors, errors
    assert len(results) == len(OPERATIONS)


OPERATIONS = _operations()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_no_operation_answers_5xx(target: Target, operation: str, mode: GenerationMode) -> None:
    if mode is GenerationMode.NEGATIVE and not OPERATIONS[operation]:
        pytest.skip("takes no input: nothing to break")
    method, path = operation.split(" ", 1)
    api_operation = target.schema[path][method]

    @FUZZ
    @given(case=api_operation.as_strategy(generation_mode=mode), role=st.sampled_from(ROLES))
    def run(case: Any, role: str) -> None:
        headers = {} if role == "anonymous" else {"Authorization": f"Bearer {target.tokens[role]}"}
        # The generated headers win: a generated Authorization is worth sending too.
        response = case.call(headers={**headers, **(case.headers or {})})
        assert _answer_allowed(response), (
            f"{operation} as {role}: {response.status_code} {response.text[:500]}\n"
            f"{case.as_curl_command()}"
        )

    run()
