"""``prep-es serve``: the HTTP API under uvicorn."""

from __future__ import annotations

import argparse
import sys

from prep_es.cli.terminal import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from prep_es.server import ServeOptions, ServeRefused, serve
from prep_es.services.logs import configure_logging
from prep_es.store.settings import Settings, SettingsError


def run_serve(arguments: argparse.Namespace, settings: Settings) -> int:
    configure_logging()
    options = ServeOptions(
        host=arguments.host,
        port=arguments.port,
        workers=arguments.workers,
        role=arguments.role,
        run_projectors=False if arguments.no_projector else None,
        graceful_timeout_s=arguments.graceful_timeout,
        access_log=not arguments.no_access_log,
    )
    try:
        serve(settings, options)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except ServeRefused as error:
        raise UsageError(str(error)) from None
    except SystemExit as stopped:  # uvicorn: the server could not start
        print(f"error: server_failed: the server did not start ({stopped.code})", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
