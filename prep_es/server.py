"""``prep-es serve``: the API under uvicorn, in one process or several.

Each worker process builds its own application from the environment
(``prep_es.worker:create_worker_app``), so what a worker must know travels as
``PREP_ES_*`` variables: ``--role`` becomes ``PREP_ES_API_ROLE`` and ``--no-projector``
``PREP_ES_RUN_PROJECTORS=false``. Every worker that runs projectors competes for each
projection's runner lock (a PostgreSQL advisory lock, or a ``flock`` beside the SQLite
file), so one runner per projection is active across all workers and processes; the
others stand by and take over if its holder dies.

Before any worker starts, the configuration is checked once (a PostgreSQL deployment
needs a JWT secret of at least 32 bytes; an in-memory database cannot be shared by
workers) and the event store is opened once, which creates its tables: a broken
configuration or an unreachable database is one clear error instead of a worker
restart loop.

Shutdown (SIGTERM or SIGINT): uvicorn stops accepting connections and lets in-flight
requests finish (up to ``--graceful-timeout``), then each application's lifespan stops
its projection runners and sweeper after the batch in progress. The command then
exits 0.

A worker ends (SIGTERM, so gracefully) when the process that started it dies, even by
SIGKILL, which leaves it no chance to stop them (see ``prep_es.parent_death``): none is
left answering on the port without a master.

With several workers, metrics are summed across them through prometheus-client's
multiprocess mode (see ``prep_es.services.metrics``): a fresh directory is made for the run
unless ``PROMETHEUS_MULTIPROC_DIR`` names one, and removed at exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final, Literal

import uvicorn

from prep_es.services.metrics import MULTIPROCESS_DIRECTORY_VARIABLE
from prep_es.store.eventstore import open_application
from prep_es.store.settings import ENV_PREFIX, Settings, SqliteLocation

APP_FACTORY: Final = "prep_es.worker:create_worker_app"
HOST_DEFAULT: Final = "127.0.0.1"
PORT_DEFAULT: Final = 8000
WORKERS_MAX: Final = 64
GRACEFUL_TIMEOUT_S_DEFAULT: Final = 30
METRICS_FILE_PATTERNS: Final = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")

logger = logging.getLogger(__name__)

Role = Literal["write", "read", "all"]


class ServeRefused(Exception):
    """The server cannot start with this configuration (exit 2)."""


@dataclass(frozen=True)
class ServeOptions:
    host: str = HOST_DEFAULT
    port: int = PORT_DEFAULT
    workers: int = 1
    role: Role | None = None
    """``None``: as configured (``PREP_ES_API_ROLE``, default ``all``)."""
    run_projectors: bool | None = None
    """``False`` for ``--no-projector``; ``None``: as configured."""
    graceful_timeout_s: int = GRACEFUL_TIMEOUT_S_DEFAULT
    access_log: bool = True


def worker_environment(options: ServeOptions) -> dict[str, str]:
    """The ``PREP_ES_*`` variables that carry the options to every worker."""
    variables: dict[str, str] = {}
    if options.role is not None:
        variables[f"{ENV_PREFIX}API_ROLE"] = options.role
    if options.run_projectors is not None:
        variables[f"{ENV_PREFIX}RUN_PROJECTORS"] = "true" if options.run_projectors else "false"
    return variables


def check_configuration(settings: Settings, options: ServeOptions) -> Settings:
    """The settings every worker will build (``settings`` with the options applied),
    or :class:`ServeRefused` / ``SettingsError`` saying why they cannot serve."""
    if not 1 <= options.workers <= WORKERS_MAX:
        msg = f"--workers must be between 1 and {WORKERS_MAX}"
        raise ServeRefused(msg)
    update: dict[str, object] = {}
    if options.role is not None:
        update["api_role"] = options.role
    if options.run_projectors is not None:
        update["run_projectors"] = options.run_projectors
    effective = settings.model_copy(update=update)
    effective.require_production_secret()
    location = effective.database
    if isinstance(location, SqliteLocation) and location.is_memory and options.workers > 1:
        msg = (
            "an in-memory database lives in one process and cannot be shared by "
            f"{options.workers} workers: use --workers 1 or a database file"
        )
        raise ServeRefused(msg)
    return effective


def proxy_options(settings: Settings) -> dict[str, Any]:
    """Uvicorn's options for forwarded headers. Its defaults believe
    ``X-Forwarded-For`` from 127.0.0.1, so anyone on the machine could pose as any
    client (and dodge the per-client rate limits); only ``PREP_ES_TRUSTED_PROXIES`` are
    believed here, and with none, forwarded headers are ignored."""
    proxies = settings.trusted_proxy_list
    if not proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": []}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}


def prepare_event_store(settings: Settings) -> None:
    """Open the event store once, creating its tables, before workers race to."""
    open_application(settings).close()


@contextmanager
def metrics_directory(
    workers: int, environ: MutableMapping[str, str] = os.environ
) -> Iterator[str | None]:
    """The multiprocess metrics directory for this run (``None`` for one worker unless
    one is configured). A configured one is emptied of earlier runs' files first."""
    configured = environ.get(MULTIPROCESS_DIRECTORY_VARIABLE)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for pattern in METRICS_FILE_PATTERNS:
            for stale in directory.glob(pattern):
                stale.unlink(missing_ok=True)
        yield configured
        return
    if workers == 1:
        yield None
        return
    made = tempfile.mkdtemp(prefix="prep-es-metrics-")
    environ[MULTIPROCESS_DIRECTORY_VARIABLE] = made
    try:
        yield made
    finally:
        environ.pop(MULTIPROCESS_DIRECTORY_VARIABLE, None)
        shutil.rmtree(made, ignore_errors=True)


@contextmanager
def _quiet_termination() -> Iterator[list[int]]:
    """Let uvicorn's own handler shut down gracefully on SIGTERM, then keep the signal
    it raises again afterwards from killing this process: a requested stop exits 0."""
    received: list[int] = []

    def note(signal_number: int, _frame: FrameType | None) -> None:
        received.append(signal_number)

    previous = signal.signal(signal.SIGTERM, note)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(settings: Settings, options: ServeOptions) -> None:
    """Run the API until SIGTERM or SIGINT. Raises :class:`ServeRefused` or
    ``SettingsError`` before starting anything when the configuration cannot serve."""
    effective = check_configuration(settings, options)
    prepare_event_store(effective)
    os.environ.update(worker_environment(options))
    with metrics_directory(options.workers), _quiet_termination():
        logger.info(
            "serving on http://%s:%d with %d worker(s), routes: %s, projectors: %s",
            options.host,
            options.port,
            options.workers,
            effective.api_role,
            "in-process" if effective.run_projectors else "not run here",
        )
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=options.host,
            port=options.port,
            workers=options.workers,
            timeout_graceful_shutdown=options.graceful_timeout_s,
            access_log=options.access_log,
            log_config=None,
            server_header=False,
            **proxy_options(effective),
        )
    logger.info("stopped")
