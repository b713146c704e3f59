"""A worker of ``prep-es serve``: its application, built from the environment, ending
with the process that started it.

With ``--workers N``, uvicorn's supervisor starts each worker as its child; killed
with SIGKILL, it could not stop them (see ``prep_es.parent_death``). With one worker,
uvicorn serves in the command's own process, which has no such parent to follow."""

from __future__ import annotations

import multiprocessing

from fastapi import FastAPI

from prep_es.app import create_app_from_environment
from prep_es.parent_death import end_with_parent


def create_worker_app() -> FastAPI:
    """For ``uvicorn --factory`` (see ``prep_es.app.create_app_from_environment``)."""
    supervisor = multiprocessing.parent_process()
    if supervisor is not None and supervisor.pid is not None:
        end_with_parent(supervisor.pid)
    return create_app_from_environment()
