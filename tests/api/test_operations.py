"""Operations: /healthz, /readyz and /metrics, the metrics middleware and the command
metrics, on each backend; multiprocess aggregation of the metrics files."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from aggregates.errors import StateConflict
from aggregates.user import User
from api.operations import Operations, router
from commands.top_ups import RequestTopUp
from prep_es.app import create_app
from prep_es.services.metrics import Metrics, MetricsMiddleware
from prep_es.services.passwords import Argon2Passwords
from prep_es.services.readiness import Readiness
from prep_es.store.eventstore import datastore_of
from prep_es.store.settings import Settings
from projections.status import ProjectionStatus
from tests.api.conftest import (
    JWT_SECRET,
    api_settings,
    assert_problem,
    catch_up_projections,
    minted_token,
    services_of,
)
from tests.conftest import PostgresServer
from tests.support import (
    PASSWORD,
    Marketplace,
    MutableClock,
    as_actor,
    open_test_runtime,
    store_settings,
)
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"
REDIS_URL = "redis://127.0.0.1:6379/0"


def build_app(settings: Settings, statuses: Callable[[], Sequence[ProjectionStatus]]) -> FastAPI:
    """A bare application with the operations routes and the metrics middleware, one
    route with a path parameter, and one declared in nested routers whose prefix has a
    path parameter too."""
    metrics = Metrics()
    app = FastAPI()
    app.include_router(router)

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise HTTPException(status_code=404)
        return {"id": item_id}

    certificates = APIRouter(prefix="/kitchens/{kitchen_id}")

    @certificates.get("/certificates/{certificate_id}")
    def certificate(kitchen_id: int, certificate_id: int) -> dict[str, int]:
        return {"kitchen_id": kitchen_id, "id": certificate_id}

    versioned = APIRouter(prefix="/api/v1")
    versioned.include_router(certificates)
    app.include_router(versioned)

    app.state.operations = Operations(
        readiness=Readiness(settings, statuses, timeout_s=1.0),
        metrics=metrics,
        projection_statuses=statuses,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def register(client: TestClient, email: str, role: str = "customer") -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Ana Test", "role": role},
    )
    return response


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in Prometheus text, by its sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


# --- healthz and readyz ----------------------------------------------------------------


def test_healthz_answers_without_touching_anything(serve: Callable[..., TestClient]) -> None:
    client = serve()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    asked_by_head = client.head("/healthz")
    assert asked_by_head.status_code == 200 and asked_by_head.content == b""


def test_operations_routes_live_outside_the_api_prefix(
    serve: Callable[..., TestClient],
) -> None:
    client = serve()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)
    assert client.get("/api/v1/healthz").status_code == 404


def test_ready_when_the_database_answers_and_projections_caught_up(
    serve: Callable[..., TestClient],
) -> None:
    client = serve(readiness_lag_events_max=0)
    assert register(client, "ana@example.com").status_code == 201
    catch_up_projections(services_of(client))
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert {check["name"]: check["ok"] for check in body["checks"]} == {
        "database": True,
        "projections": True,
        "payments": True,
    }
    (database,) = [check for check in body["checks"] if check["name"] == "database"]
    assert re.fullmatch(r"(PostgreSQL \d+\.\d+|SQLite [\d.]+) answered", database["detail"])
    assert client.head("/readyz").status_code == 200


def test_ready_once_in_process_projectors_catch_up(serve: Callable[..., TestClient]) -> None:
    client = serve(run_projectors=True, readiness_lag_events_max=0)
    assert register(client, "ana@example.com").status_code == 201
    wait_until(
        lambda: client.get("/readyz").status_code == 200,
        30,
        lambda: f"ready: {client.get('/readyz').text}",
    )


def test_not_ready_while_a_projection_lags_beyond_the_limit(
    serve: Callable[..., TestClient], database_url: str
) -> None:
    lagging = serve(readiness_lag_events_max=2)
    catch_up_projections(services_of(lagging))
    assert register(lagging, "ana@example.com").status_code == 201  # user, claim, account
    head = services_of(lagging).runtime.app.position()

    response = lagging.get("/readyz", headers={"X-Request-ID": "probe-1"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    problem = response.json()
    assert problem["status"] == 503
    assert problem["code"] == "not_ready"
    assert problem["instance"] == "/readyz"
    assert problem["request_id"] == "probe-1"
    failed = [check for check in problem["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == ["projections"]
    assert f"audit {head} event(s) behind" in failed[0]["detail"]
    assert "audit" in problem["detail"]

    tolerant = serve(readiness_lag_events_max=head)
    assert tolerant.get("/readyz").status_code == 200
    catch_up_projections(services_of(lagging))
    assert lagging.get("/readyz").status_code == 200


def test_ready_but_degraded_without_the_configured_redis(
    serve: Callable[..., TestClient],
) -> None:
    """Every request works without Redis (the cache and the login limit fall back to
    the process), and every replica shares it: it must not take them all out at once."""
    client = serve(redis_url=UNREACHABLE_REDIS_URL)
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    checks = {check["name"]: check for check in body["checks"]}
    assert checks["redis"]["ok"] is True
    assert checks["redis"]["degraded"] is True
    assert checks["redis"]["detail"].startswith("degraded: unreachable")
    assert checks["database"] == {
        "name": "database",
        "ok": True,
        "degraded": False,
        "detail": checks["database"]["detail"],
    }
    assert register(client, "ana@example.com").status_code == 201


def test_ready_with_a_reachable_redis(serve: Callable[..., TestClient]) -> None:
    response = serve(redis_url=REDIS_URL).get("/readyz")
    assert response.status_code == 200, response.text
    assert {check["name"] for check in response.json()["checks"]} == {
        "database",
        "redis",
        "projections",
        "payments",
    }


@pytest.mark.postgres
def test_not_ready_when_the_database_is_unreachable(fresh_postgres_url: str) -> None:
    missing = fresh_postgres_url.rsplit("/", 1)[0] + "/prep_es_test_no_such_database"
    asked: list[str] = []

    def statuses() -> list[ProjectionStatus]:
        asked.append("statuses")
        return []

    report = Readiness(Settings(database_url=missing), statuses, timeout_s=1.0).check()
    assert report.ready is False
    checks = {check.name: check for check in report.checks}
    assert checks["database"].ok is False
    assert "prep_es_test_no_such_database" in checks["database"].detail
    assert checks["projections"].ok is False
    assert asked == []  # no projection status is read from a database that is not there


def _set_read_only(maintenance: psycopg.Connection[Any], database: str, on: bool) -> None:
    """Make ``database`` read-only for new sessions (or not), as an operator would."""
    statement = (
        "ALTER DATABASE {} SET default_transaction_read_only = on"
        if on
        else "ALTER DATABASE {} RESET default_transaction_read_only"
    )
    maintenance.execute(sql.SQL(statement).format(sql.Identifier(database)))


@pytest.mark.postgres
def test_a_read_only_database_is_a_503_and_writes_work_again_as_soon_as_it_is_not(
    fresh_postgres_url: str, postgres_server: PostgresServer
) -> None:
    settings = store_settings(fresh_postgres_url, run_projectors=False, jwt_secret=JWT_SECRET)
    database = urlsplit(fresh_postgres_url).path.lstrip("/")
    with (
        TestClient(create_app(settings, passwords=Argon2Passwords.cheap_for_tests())) as client,
        psycopg.connect(postgres_server.maintenance_url, autocommit=True) as maintenance,
    ):
        assert register(client, "ana@example.com").status_code == 201
        _set_read_only(maintenance, database, on=True)
        # The pool renews its sessions (as it does at their lifetime's end, or after a
        # restart): they begin read-only.
        event_store = datastore_of(services_of(client).runtime.app)
        assert isinstance(event_store, PostgresDatastore)
        event_store.pool.drain()

        refused = register(client, "ben@example.com")
        problem = assert_problem(refused, 503, "database_unavailable")
        assert "refuses writes" in problem["detail"]
        assert refused.headers["Retry-After"] == "1"
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        (database_check,) = [
            check for check in not_ready.json()["checks"] if check["name"] == "database"
        ]
        assert database_check["ok"] is False
        assert "refuses writes" in database_check["detail"]

        _set_read_only(maintenance, database, on=False)
        # The pooled sessions began read-only and stay so: the very next write works all
        # the same.
        assert register(client, "cy@example.com").status_code == 201
        assert register(client, "dee@example.com").status_code == 201
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text


# --- metrics ---------------------------------------------------------------------------


def test_requests_are_timed_by_route_template_and_status(sqlite_url: str) -> None:
    client = TestClient(build_app(Settings(database_url=sqlite_url), list))
    for item_id in (1, 2, 3, 0):
        client.get(f"/items/{item_id}")
    client.get("/no/such/path")
    client.get("/items/not-a-number")
    for kitchen_id in (7, 8):
        client.get(f"/api/v1/kitchens/{kitchen_id}/certificates/9")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    counts = samples(response.text, "prep_es_http_request_duration_seconds_count")
    assert counts[(("method", "GET"), ("route", "/items/{item_id}"), ("status", "200"))] == 3
    assert counts[(("method", "GET"), ("route", "/items/{item_id}"), ("status", "404"))] == 1
    assert counts[(("method", "GET"), ("route", "/items/{item_id}"), ("status", "422"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    nested = "/api/v1/kitchens/{kitchen_id}/certificates/{certificate_id}"
    assert counts[(("method", "GET"), ("route", nested), ("status", "200"))] == 2
    routes = {dict(labels)["route"] for labels in counts}
    assert routes == {"/items/{item_id}", "unmatched", nested}


def test_metrics_ask_for_their_token_when_one_is_set(serve: Callable[..., TestClient]) -> None:
    token = "metrics-" + "t" * 24
    guarded = serve(metrics_token=token)
    for headers in (
        {},
        {"Authorization": "Bearer " + "x" * len(token)},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Basic {token}"},
    ):
        refused = guarded.get("/metrics", headers=headers)
        assert_problem(refused, 401, "not_authenticated")
        assert token not in refused.text
    admitted = guarded.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert admitted.status_code == 200
    assert "prep_es_http_request_duration_seconds" in admitted.text
    assert serve().get("/metrics").status_code == 200  # without a token: open as ever


def test_the_application_counts_requests_and_commands(serve: Callable[..., TestClient]) -> None:
    client = serve()
    assert register(client, "ana@example.com").status_code == 201
    assert register(client, "ANA@example.com").status_code == 409
    assert client.get("/api/v1/users/me").status_code == 401
    assert client.get("/api/v2/nothing").status_code == 404

    text = client.get("/metrics").text
    counts = samples(text, "prep_es_http_request_duration_seconds_count")
    register_route = (("method", "POST"), ("route", "/api/v1/auth/register"))
    assert counts[(*register_route, ("status", "201"))] == 1
    assert counts[(*register_route, ("status", "409"))] == 1
    assert counts[(("method", "GET"), ("route", "/api/v1/users/me"), ("status", "401"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    commands = samples(text, "prep_es_commands_total")
    assert commands[(("command", "register_user"), ("outcome", "ok"))] == 1
    assert commands[(("command", "register_user"), ("outcome", "email_taken"))] == 1


def test_projection_position_and_lag_are_exposed(serve: Callable[..., TestClient]) -> None:
    client = serve()
    services = services_of(client)
    assert register(client, "ana@example.com").status_code == 201
    head = services.runtime.app.position()
    text = client.get("/metrics").text
    names = [projection.name for projection in services.projections]
    assert samples(text, "prep_es_projection_lag_events") == {
        (("projection", name),): head for name in names
    }
    assert samples(text, "prep_es_event_store_position") == {(): head}

    catch_up_projections(services)
    text = client.get("/metrics").text
    assert samples(text, "prep_es_projection_lag_events") == {
        (("projection", name),): 0 for name in names
    }
    assert samples(text, "prep_es_projection_position") == {
        (("projection", name),): head for name in names
    }
    assert set(samples(text, "prep_es_projection_failed").values()) == {0}


def test_commands_are_counted_by_outcome_with_conflicts_and_retries(
    market: Marketplace, database_url: str
) -> None:
    metrics = Metrics()
    market.runtime.commands.processor.observer = metrics
    start = market.clock.now + timedelta(days=1)
    market.request_booking(start)
    with pytest.raises(StateConflict) as refused:
        market.request_booking(start)
    assert refused.value.code == "booking_conflict"

    # Another process (its own aggregate cache) starts a top-up in between: this
    # process's optimistic attempt starts from a stale copy of the account, loses the
    # write race and decides again on fresh state.
    top_up = RequestTopUp(amount_cents=100, payment_method="pm_card_visa")
    market.runtime.commands.top_ups.request_top_up(top_up, as_actor(market.customer))
    other = open_test_runtime(database_url, MutableClock(market.clock.now))
    try:
        other.commands.top_ups.request_top_up(top_up, as_actor(market.customer))
    finally:
        other.close()
    market.runtime.commands.top_ups.request_top_up(top_up, as_actor(market.customer))

    text = metrics.exposition().decode()
    commands = samples(text, "prep_es_commands_total")
    assert commands[(("command", "request_booking"), ("outcome", "ok"))] == 1
    assert commands[(("command", "request_booking"), ("outcome", "booking_conflict"))] == 1
    assert commands[(("command", "request_top_up"), ("outcome", "ok"))] == 2
    assert samples(text, "prep_es_command_conflicts_total") == {(("command", "request_top_up"),): 1}
    retries = samples(text, "prep_es_command_retries_total")
    assert retries[(("command", "request_top_up"), ("reason", "write_conflict"))] == 1


def test_metrics_of_several_processes_are_summed(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    worker = textwrap.dedent(
        """
        from prep_es.services.metrics import Metrics
        metrics = Metrics()
        assert metrics.directory is not None
        for _ in range(3):
            metrics.observe_request("POST", "/api/v1/bookings", 201, 0.004)
        metrics.command_finished("request_booking", "ok")
        """
    )
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-c", worker],
            check=True,
            cwd=ROOT,
            env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"},
            timeout=60,
        )
    text = Metrics(directory=str(directory)).exposition().decode()
    counts = samples(text, "prep_es_http_request_duration_seconds_count")
    assert counts == {(("method", "POST"), ("route", "/api/v1/bookings"), ("status", "201")): 6}
    commands = samples(text, "prep_es_commands_total")
    assert commands == {(("command", "request_booking"), ("outcome", "ok")): 2}


def test_requests_before_any_projector_ran_are_503_problems(database_url: str) -> None:
    """An API started before its projector worker ever ran has no read model tables:
    what needs them asks the client to come back, it does not fail."""
    settings = api_settings(database_url, run_projectors=False)
    app = create_app(settings, passwords=Argon2Passwords.cheap_for_tests())
    with TestClient(app) as client:
        # The bootstrapped admin, as the write model has them (authentication reads no
        # read model).
        assert settings.admin_email is not None
        store = app.state.services.runtime.app
        # The first user registered; a claim does not name its holder's id.
        (registered,) = store.notifications(0, None, 1, topics=[User.UserRegistered.TOPIC])
        admin_token = minted_token(registered.originator_id, "admin")
        answers = [
            client.get("/api/v1/kitchens"),
            client.post(
                "/api/v1/auth/login", json={"email": settings.admin_email, "password": PASSWORD}
            ),
            client.get(
                "/api/v1/admin/audit",
                headers={"Authorization": f"Bearer {admin_token}"},
            ),
        ]
    for response in answers:
        problem = assert_problem(response, 503, "read_model_not_ready")
        assert problem["detail"].startswith("the read models are not built yet")
        assert int(response.headers["Retry-After"]) >= 1
