"""Operations routes, outside ``/api/v1``: liveness, readiness and Prometheus metrics.

``/metrics`` is open unless ``PREP_ES_METRICS_TOKEN`` is set; then it answers only a
request with ``Authorization: Bearer <that token>`` (compared in constant time) and
401 to any other.

They read an :class:`Operations` the application stores on ``app.state.operations``
once its services are open (in the lifespan), so the router itself holds nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from api.problems import PROBLEM_MEDIA_TYPE, problem_response
from prep_es.services.container import Services
from prep_es.services.metrics import CONTENT_TYPE, Metrics, ProjectionCollector
from prep_es.services.readiness import Readiness, ReadinessReport
from projections.status import ProjectionStatus

NOT_READY_RETRY_AFTER_S: Final = 5


@dataclass(frozen=True)
class Operations:
    """What the operations routes read: the readiness checks, this process's metrics,
    and every projection's status (read from the database when asked)."""

    readiness: Readiness
    metrics: Metrics
    projection_statuses: Callable[[], Sequence[ProjectionStatus]]
    metrics_token: str | None = None
    """The bearer token ``/metrics`` asks for (``None``: it is open)."""


def open_operations(services: Services, metrics: Metrics) -> Operations:
    """The operations of an application whose services just opened: ``metrics``
    starts observing its commands."""
    services.commands.processor.observer = metrics
    token = services.settings.metrics_token
    return Operations(
        readiness=Readiness(
            services.settings, services.projection_statuses, redis_circuit=services.redis_circuit
        ),
        metrics=metrics,
        projection_statuses=services.projection_statuses,
        metrics_token=None if token is None else token.get_secret_value(),
    )


def _operations(request: Request) -> Operations:
    operations = getattr(request.app.state, "operations", None)
    assert isinstance(operations, Operations), "app.state.operations is set at startup"
    return operations


OperationsDep = Annotated[Operations, Depends(_operations)]

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


@router.head("/healthz", include_in_schema=False)
@router.get(
    "/healthz",
    summary="Liveness",
    description="Answers 200 while the process serves HTTP (to HEAD too, as some load "
    "balancers ask). Touches no database, so a database outage never gets a live process "
    "restarted.",
)
async def healthz() -> Health:
    return Health()


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    response_model=ReadinessReport,
    summary="Readiness",
    description="200 when the database answers and takes writes (not read-only, not a "
    "standby) and every projection is at most `PREP_ES_READINESS_LAG_EVENTS_MAX` events "
    "behind the event store; otherwise 503 `application/problem+json` with code "
    "`not_ready` and the checks, failed ones first. Redis (if configured) is checked "
    "but only reported `degraded` when it does not answer: every request works without "
    "it. Each check is bounded to a few seconds.",
    responses={
        503: {
            "description": "Not ready: the problem lists what failed",
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
    },
)
def readyz(request: Request, operations: OperationsDep) -> Any:
    report = operations.readiness.check()
    if report.ready:
        return report
    return _not_ready(request, report)


def _not_ready(request: Request, report: ReadinessReport) -> Response:
    failed = report.failed
    return problem_response(
        request,
        status=503,
        code="not_ready",
        detail="not ready: " + "; ".join(f"{check.name}: {check.detail}" for check in failed),
        headers={"Retry-After": str(NOT_READY_RETRY_AFTER_S)},
        extra={
            "checks": [check.model_dump() for check in failed + [c for c in report.checks if c.ok]]
        },
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Prometheus text format: request latency by route template and status, "
    "commands by outcome, write conflicts and retries (summed over every worker "
    "process), and each projection's position and lag (read from the database). With "
    "`PREP_ES_METRICS_TOKEN` set, only for `Authorization: Bearer <that token>` (401 "
    "otherwise).",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"},
        401: {"description": "`PREP_ES_METRICS_TOKEN` is set and was not sent"},
    },
)
def metrics(request: Request, operations: OperationsDep) -> Response:
    if operations.metrics_token is not None and not _bearer_matches(
        request.headers.get("authorization"), operations.metrics_token
    ):
        return problem_response(
            request,
            status=401,
            code="not_authenticated",
            detail="the metrics need their token: Authorization: Bearer <PREP_ES_METRICS_TOKEN>",
        )
    text = operations.metrics.exposition(ProjectionCollector(operations.projection_statuses))
    return Response(content=text, media_type=CONTENT_TYPE)


def _bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether ``authorization`` is ``Bearer <token>``, compared in constant time."""
    scheme, _, credentials = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    )
