"""Operations: /healthz, /readyz and /metrics, the metrics middleware and the command
metrics, on each backend; multiprocess aggregation of the metrics files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aggregates.errors import StateConflict
from api.operations import Operations, router
from commands.accounts import DepositFunds
from prep_es.metrics import Metrics, MetricsMiddleware
from prep_es.readiness import Readiness
from prep_es.readside import ReadSide
from prep_es.settings import Settings
from projections import PROJECTIONS
from projections.runners import ProjectionRunner, ensure_ready
from projections.status import ProjectionStatus, projection_statuses
from tests.support import Marketplace, MutableClock, as_actor, open_test_runtime

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


def build_app(settings: Settings, statuses: Callable[[], Sequence[ProjectionStatus]]) -> FastAPI:
    metrics = Metrics()
    app = FastAPI()
    app.include_router(router)

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise HTTPException(status_code=404)
        return {"id": item_id}

    app.state.operations = Operations(
        readiness=Readiness(settings, statuses, timeout_s=1.0),
        metrics=metrics,
        projection_statuses=statuses,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


@pytest.fixture
def statuses(market: Marketplace, read_side: ReadSide) -> Callable[[], list[ProjectionStatus]]:
    return lambda: projection_statuses(market.runtime.app, read_side.write_database)


@pytest.fixture
def client_for(
    statuses: Callable[[], list[ProjectionStatus]],
) -> Iterator[Callable[[Settings], httpx.Client]]:
    clients: list[httpx.Client] = []

    def make(settings: Settings) -> httpx.Client:
        client = TestClient(build_app(settings, statuses))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def catch_up(market: Marketplace, read_side: ReadSide) -> None:
    for projection_class in PROJECTIONS:
        ensure_ready(read_side.write_database, projection_class)
        ProjectionRunner(projection_class, market.runtime.app, read_side.write_database).catch_up(
            timeout_s=30
        )


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in Prometheus text, by its sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


# --- healthz and readyz ----------------------------------------------------------------


def test_healthz_answers_without_touching_anything(
    client_for: Callable[[Settings], httpx.Client], database_url: str
) -> None:
    client = client_for(Settings(database_url=database_url))
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_the_database_answers_and_projections_caught_up(
    client_for: Callable[[Settings], httpx.Client],
    market: Marketplace,
    read_side: ReadSide,
    database_url: str,
) -> None:
    catch_up(market, read_side)
    client = client_for(Settings(database_url=database_url, readiness_lag_events_max=0))
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert {check["name"]: check["ok"] for check in body["checks"]} == {
        "database": True,
        "projections": True,
    }


def test_not_ready_while_a_projection_lags_beyond_the_limit(
    client_for: Callable[[Settings], httpx.Client],
    market: Marketplace,
    read_side: ReadSide,
    database_url: str,
) -> None:
    catch_up(market, read_side)
    for _ in range(3):
        market.runtime.commands.accounts.deposit_funds(
            DepositFunds(amount_cents=100), as_actor(market.customer)
        )
    lagging = client_for(Settings(database_url=database_url, readiness_lag_events_max=2))
    response = lagging.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    problem = response.json()
    assert problem["status"] == 503
    assert problem["code"] == "not_ready"
    assert problem["instance"] == "/readyz"
    failed = [check for check in problem["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == ["projections"]
    assert "audit 3 event(s) behind" in failed[0]["detail"]
    assert "audit" in problem["detail"]

    tolerant = client_for(Settings(database_url=database_url, readiness_lag_events_max=3))
    assert tolerant.get("/readyz").status_code == 200
    catch_up(market, read_side)
    assert lagging.get("/readyz").status_code == 200


def test_not_ready_without_the_configured_redis(
    client_for: Callable[[Settings], httpx.Client], database_url: str
) -> None:
    client = client_for(Settings(database_url=database_url, redis_url=UNREACHABLE_REDIS_URL))
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = {check["name"]: check for check in response.json()["checks"]}
    assert checks["redis"]["ok"] is False
    assert checks["redis"]["detail"].startswith("unreachable")
    assert checks["database"]["ok"] is True


def test_ready_with_a_reachable_redis(
    client_for: Callable[[Settings], httpx.Client], database_url: str
) -> None:
    client = client_for(Settings(database_url=database_url, redis_url="redis://127.0.0.1:6379/0"))
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert {check["name"] for check in response.json()["checks"]} == {
        "database",
        "redis",
        "projections",
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


# --- metrics ---------------------------------------------------------------------------


def test_requests_are_timed_by_route_template_and_status(
    client_for: Callable[[Settings], httpx.Client], database_url: str
) -> None:
    client = client_for(Settings(database_url=database_url))
    for item_id in (1, 2, 3, 0):
        client.get(f"/items/{item_id}")
    client.get("/no/such/path")
    client.get("/items/not-a-number")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    counts = samples(response.text, "prep_es_http_request_duration_seconds_count")
    assert counts[(("method", "GET"), ("route", "/items/{item_id}"), ("status", "200"))] == 3
    assert counts[(("method", "GET"), ("route", "/items/{item_id}"), ("status", "404"))] == 1
    assert counts[(("method", "GET"), ("route", "/items/{item_id}"), ("status", "422"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert not any("/items/1" in dict(labels).get("route", "") for labels in counts)


def test_projection_position_and_lag_are_exposed(
    client_for: Callable[[Settings], httpx.Client],
    market: Marketplace,
    read_side: ReadSide,
    database_url: str,
) -> None:
    client = client_for(Settings(database_url=database_url))
    head = market.runtime.app.position()
    text = client.get("/metrics").text
    lag = samples(text, "prep_es_projection_lag_events")
    assert lag == {(("projection", p.name),): head for p in PROJECTIONS}
    assert samples(text, "prep_es_event_store_position") == {(): head}

    catch_up(market, read_side)
    text = client.get("/metrics").text
    assert samples(text, "prep_es_projection_lag_events") == {
        (("projection", p.name),): 0 for p in PROJECTIONS
    }
    assert samples(text, "prep_es_projection_position") == {
        (("projection", p.name),): head for p in PROJECTIONS
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

    # Another process (its own aggregate cache) deposits in between: this process's
    # optimistic attempt starts from a stale copy of the account, loses the write race
    # and decides again on fresh state.
    deposit = DepositFunds(amount_cents=100)
    market.runtime.commands.accounts.deposit_funds(deposit, as_actor(market.customer))
    other = open_test_runtime(database_url, MutableClock(market.clock.now))
    try:
        other.commands.accounts.deposit_funds(deposit, as_actor(market.customer))
    finally:
        other.close()
    market.runtime.commands.accounts.deposit_funds(deposit, as_actor(market.customer))

    text = metrics.exposition().decode()
    commands = samples(text, "prep_es_commands_total")
    assert commands[(("command", "request_booking"), ("outcome", "ok"))] == 1
    assert commands[(("command", "request_booking"), ("outcome", "booking_conflict"))] == 1
    assert commands[(("command", "deposit_funds"), ("outcome", "ok"))] == 2
    assert samples(text, "prep_es_command_conflicts_total") == {(("command", "deposit_funds"),): 1}
    retries = samples(text, "prep_es_command_retries_total")
    assert retries[(("command", "deposit_funds"), ("reason", "write_conflict"))] == 1


def test_metrics_of_several_processes_are_summed(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    worker = textwrap.dedent(
        """
        from prep_es.metrics import Metrics
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
