"""Structured logs: one JSON object per line, carrying the id of the request that caused it.

The HTTP middleware (``prep_es.app``) sets :data:`request_id` for the duration of each
request; code running for it — routes in the thread pool included, since the thread pool
copies the context — logs as usual and every line names the request::

    {"time": "2030-01-07T17:00:00.123Z", "level": "ERROR", "logger": "prep_es.app",
     "message": "unexpected error", "request_id": "4f1c…", "exception": "Traceback …"}
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO
from uuid import uuid4

import orjson

REQUEST_ID_HEADER: Final = "X-Request-ID"
REQUEST_ID_LENGTH_MAX: Final = 128
_REQUEST_ID_PATTERN: Final = re.compile(rf"[A-Za-z0-9._:\-]{{1,{REQUEST_ID_LENGTH_MAX}}}")

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the request being served in this context, if any."""

# Attributes every LogRecord has; anything else was passed through ``extra=`` — except
# uvicorn's ``color_message``, the message again with terminal colour codes.
_RECORD_ATTRIBUTES: Final = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", None, None)),
        "message",
        "asctime",
        "taskName",
        "color_message",
    }
)


def accept_request_id(candidate: str | None) -> str:
    """The client's ``X-Request-ID`` if it is a short token of safe characters (it ends
    up in logs and headers), else a new id."""
    if candidate is not None and _REQUEST_ID_PATTERN.fullmatch(candidate):
        return candidate
    return uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, request id,
    fields given with ``extra=``, and the stack trace of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id.get(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


_HANDLER_NAME: Final = "prep-es-json"


def configure_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log record, the server's included, to ``stream`` (stderr) as JSON
    lines. Idempotent: a second call replaces the handler it installed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # The server's loggers propagate to the root instead of printing their own format,
    # except one uvicorn silenced (``--no-access-log``: no handler, no propagation).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server_logger = logging.getLogger(name)
        if server_logger.handlers or server_logger.propagate:
            server_logger.handlers.clear()
            server_logger.propagate = True
