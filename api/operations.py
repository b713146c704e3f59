"""Operations routes, outside ``/api/v1``: liveness, readiness and Prometheus metrics.

They read an :class:`Operations` the application stores on ``app.state.operations``
once its services are open (in the lifespan), so the router itself holds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from prep_es.metrics import CONTENT_TYPE, Metrics, ProjectionCollector
from prep_es.readiness import Readiness, ReadinessReport
from projections.status import ProjectionStatus

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
NOT_READY_RETRY_AFTER_S: Final = 5


@dataclass(frozen=True)
class Operations:
    """What the operations routes read: the readiness checks, this process's metrics,
    and every projection's status (read from the database when asked)."""

    readiness: Readiness
    metrics: Metrics
    projection_statuses: Callable[[], Sequence[ProjectionStatus]]


def _operations(request: Request) -> Operations:
    operations = getattr(request.app.state, "operations", None)
    assert isinstance(operations, Operations), "app.state.operations is set at startup"
    return operations


OperationsDep = Annotated[Operations, Depends(_operations)]

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


@router.get(
    "/healthz",
    summary="Liveness",
    description="Answers 200 while the process serves HTTP. Touches no database, so a "
    "database outage never gets a live process restarted.",
)
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=ReadinessReport,
    summary="Readiness",
    description="200 when the database answers, Redis answers (if configured) and "
    "every projection is at most `PREP_ES_READINESS_LAG_EVENTS_MAX` events behind the "
    "event store; otherwise 503 `application/problem+json` with code `not_ready` and "
    "the checks, failed ones first. Each check is bounded to a few seconds.",
    responses={
        503: {
            "description": "Not ready: the problem lists what failed",
            "content": {PROBLEM_CONTENT_TYPE: {}},
        }
    },
)
def readyz(request: Request, operations: OperationsDep) -> Any:
    report = operations.readiness.check()
    if report.ready:
        return report
    return _not_ready(request, report)


def _not_ready(request: Request, report: ReadinessReport) -> JSONResponse:
    failed = report.failed
    request_id = getattr(request.state, "request_id", None)
    body = {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "not ready: " + "; ".join(f"{c.name}: {c.detail}" for c in failed),
        "instance": request.url.path,
        "code": "not_ready",
        "request_id": request_id,
        "checks": [check.model_dump() for check in failed + [c for c in report.checks if c.ok]],
    }
    return JSONResponse(
        body,
        status_code=503,
        media_type=PROBLEM_CONTENT_TYPE,
        headers={"Retry-After": str(NOT_READY_RETRY_AFTER_S)},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Prometheus text format: request latency by route template and status, "
    "commands by outcome, write conflicts and retries (summed over every worker "
    "process), and each projection's position and lag (read from the database).",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
)
def metrics(operations: OperationsDep) -> Response:
    text = operations.metrics.exposition(ProjectionCollector(operations.projection_statuses))
    return Response(content=text, media_type=CONTENT_TYPE)
