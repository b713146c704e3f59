"""Prometheus metrics of an API process: HTTP requests, commands, projections.

Series (all prefixed ``prep_es_``):

- ``http_request_duration_seconds{method, route, status}`` histogram: ``route`` is the
  matched route's template (``/api/v1/bookings/{booking_id}``), never the raw path, so
  the series stay bounded whatever clients send; requests no route matched count as
  ``unmatched``.
- ``commands_total{command, outcome}``: ``outcome`` is ``ok``, ``replayed`` (an
  idempotency key's stored result) or the refusing domain error's code
  (``booking_conflict``, ``insufficient_funds``, ``concurrency_conflict`` …).
- ``command_conflicts_total{command}``: attempts that lost a write race.
- ``command_retries_total{command, reason}``: attempts made again on fresh state
  (``write_conflict`` or ``stale_copy``).
- ``projection_position``, ``projection_lag_events``, ``projection_lag_seconds``,
  ``projection_failed`` (each ``{projection}``) and ``event_store_position``: read from
  the database when scraped, so every process reports the same values.

**Several worker processes.** ``prep-es serve --workers N`` runs N processes that each
count their own requests; a scrape reaches one of them. prometheus-client's
multiprocess mode makes each process write its counters and histograms to files in
one directory, and the process that answers the scrape adds them all up. The library
chooses that mode when it is first imported, from the environment variable
``PROMETHEUS_MULTIPROC_DIR`` (its own variable, not a Prep ES setting: ``prep-es serve``
sets it for its workers). :func:`multiprocess_directory` tells which mode this process
is in; :class:`Metrics` then exposes either the directory's sum or its own registry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from projections.status import ProjectionStatus

MULTIPROCESS_DIRECTORY_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
"""The Prometheus text format every Prometheus version reads."""
UNMATCHED_ROUTE: Final = "unmatched"
OTHER_METHOD: Final = "OTHER"
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_DURATION_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def multiprocess_directory() -> str | None:
    """Where this process's metric values live when prometheus-client runs in
    multiprocess mode; ``None`` when they live in memory.

    The library decides once, at import, from ``PROMETHEUS_MULTIPROC_DIR``; a variable
    set later changes nothing, so ask the library which value class it chose."""
    if values.ValueClass is values.MutexValue:
        return None
    directory = os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE)
    assert directory, "multiprocess values without a directory"
    return directory


class Metrics:
    """The metrics one API process records, and their exposition.

    Build one per application (each has its own registry, so tests may build many).
    It is the commands' :class:`~commands.observers.CommandObserver`."""

    def __init__(self, *, directory: str | None = None) -> None:
        """``directory``: the multiprocess directory (default: as the library was
        imported, see :func:`multiprocess_directory`)."""
        self.directory = multiprocess_directory() if directory is None else directory
        self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            "prep_es_http_request_duration_seconds",
            "Time from the start of an HTTP request to the end of its response, by "
            "method, route template and status",
            ["method", "route", "status"],
            buckets=REQUEST_DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.commands = Counter(
            "prep_es_commands",
            "Commands handled, by command and outcome (ok, replayed, or the domain "
            "error code that refused it)",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.command_conflicts = Counter(
            "prep_es_command_conflicts",
            "Command attempts that lost a write race (the event store refused a stale version)",
            ["command"],
            registry=self.registry,
        )
        self.command_retries = Counter(
            "prep_es_command_retries",
            "Command attempts made again on fresh state, by reason (write_conflict, stale_copy)",
            ["command", "reason"],
            registry=self.registry,
        )

    # --- commands.observers.CommandObserver ------------------------------------------

    def command_finished(self, command_name: str, outcome: str) -> None:
        self.commands.labels(command=command_name, outcome=outcome).inc()

    def command_conflicted(self, command_name: str) -> None:
        self.command_conflicts.labels(command=command_name).inc()

    def command_retried(self, command_name: str, reason: str) -> None:
        self.command_retries.labels(command=command_name, reason=reason).inc()

    # --- HTTP -----------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, duration_s: float) -> None:
        method = method if method in KNOWN_METHODS else OTHER_METHOD
        self.request_duration.labels(method=method, route=route, status=str(status)).observe(
            duration_s
        )

    # --- exposition -----------------------------------------------------------------

    def exposition(self, *collectors: Collector) -> bytes:
        """The Prometheus text of every process's recorded metrics (this process's
        alone outside multiprocess mode), then ``collectors`` (asked now)."""
        registry = CollectorRegistry()
        if self.directory is None:
            registry.register(_Chain([self.registry]))
        else:
            MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        for collector in collectors:
            registry.register(collector)
        return generate_latest(registry)


class _Chain:
    """Collectors collected as one (a registry inside another registry)."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class ProjectionCollector:
    """Each projection's position and lag, read when scraped."""

    def __init__(self, statuses: Callable[[], Sequence[ProjectionStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterable[Metric]:
        statuses = self._statuses()
        position = GaugeMetricFamily(
            "prep_es_projection_position",
            "Event store position the projection's active read model has applied",
            labels=["projection"],
        )
        lag_events = GaugeMetricFamily(
            "prep_es_projection_lag_events",
            "Events in the store after the projection's position",
            labels=["projection"],
        )
        lag_s = GaugeMetricFamily(
            "prep_es_projection_lag_seconds",
            "Seconds since the first event the projection has not applied was recorded",
            labels=["projection"],
        )
        failed = GaugeMetricFamily(
            "prep_es_projection_failed",
            "1 while the projection is stopped at an event it failed to apply",
            labels=["projection"],
        )
        for status in statuses:
            position.add_metric([status.name], status.position)
            lag_events.add_metric([status.name], status.lag_events)
            lag_s.add_metric([status.name], status.lag_s)
            failed.add_metric([status.name], 1.0 if status.failure is not None else 0.0)
        head = GaugeMetricFamily(
            "prep_es_event_store_position",
            "Notification id of the latest event in the store",
            value=max((status.head for status in statuses), default=0),
        )
        return [position, lag_events, lag_s, failed, head]


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request by route template and status.

    The router records the route it matched in the scope; the status is taken from
    the response as it is sent. A request that raises counts as a 500 (the server
    answers it so) and the error goes on up."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.observe_request(
                scope["method"], route_template(scope), status, time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (``unmatched`` if none did).

    The router leaves the matched route in the scope. A route declared in an included
    router may know only its own part of the path (``/bookings/{booking_id}``, without
    ``/api/v1``): the prefix is then the path's leading segments, with any segment that
    is a path parameter's value put back as its name."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED_ROUTE
    path = str(scope.get("path", ""))
    root_path = str(scope.get("root_path", ""))
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    prefix_segments = path.count("/") - template.count("/")
    if prefix_segments <= 0 or ":path}" in template or not template.startswith("/"):
        return template
    segments = path.split("/")[: 1 + prefix_segments]  # "" before the first "/", then each
    names = {str(value): name for name, value in dict(scope.get("path_params", {})).items()}
    prefix = [
        "{%s}" % names[segment] if segment in names else segment  # noqa: UP031
        for segment in segments
    ]
    return "/".join(prefix) + template
