"""A PostgreSQL server of the tests' own, to restart, stop and make read-only without
disturbing the shared server every other test uses.

One cluster per test module (``throwaway_postgres``), made with ``initdb`` in a temporary
directory, on a free port, with ``fsync`` off (the machine does not crash under the
tests; commits are still acknowledged only once written, so an immediate restart loses
none of them). Tests make their own databases in it. It is stopped at the end of the
module, whatever happened.

PostgreSQL refuses to run as root: under root the server runs as the ``postgres`` user.
Without PostgreSQL's programs (or, under root, without that user) the tests are skipped
with a warning in the summary, unless ``CI=true``, where that is an error.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
import pytest
from psycopg import sql

from tests.conftest import _is_ci, _unavailable_reasons

SERVER_USER = "postgres"
PG_CTL_TIMEOUT_S = 60
START_ATTEMPTS_MAX = 3
CONNECT_TIMEOUT_S = 3

StopMode = Literal["smart", "fast", "immediate"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def postgres_programs() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``, else the ``PATH``."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    candidates.extend(
        Path(directory)
        for directory in sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def run_as_server_user() -> list[str] | None:
    """The prefix that runs a program as the server's user: nothing unless root;
    ``None`` when root has no way to (no ``postgres`` user, or no ``runuser``/``su``)."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", SERVER_USER, "--"]
    return None


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster of this test module's own."""

    programs: Path
    run_as: list[str]
    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def _run(self, program: str, *arguments: str) -> None:
        completed = subprocess.run(
            [*self.run_as, str(self.programs / program), *arguments],
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT_S + 30,
            check=False,
        )
        if completed.returncode != 0:
            msg = (
                f"{program} {' '.join(arguments)} failed ({completed.returncode}):\n"
                f"{completed.stdout}{completed.stderr}\n{self.log()}"
            )
            raise RuntimeError(msg)

    def _pg_ctl(self, *arguments: str) -> None:
        self._run(
            "pg_ctl",
            *arguments,
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(PG_CTL_TIMEOUT_S),
        )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.directory}'",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        self._pg_ctl("start", "-o", f"-p {self.port}")

    def stop(self, mode: StopMode = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop (``fast``: every session is ended; ``immediate``: the server quits at
        once and recovers from its log at the next start) and start again."""
        self._pg_ctl("restart", "-m", mode)

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self.url(database), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )

    def create_database(self, name: str) -> str:
        """A new empty database ``name``; its URL."""
        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


def _unavailable(reason: str) -> None:
    if _is_ci():
        pytest.fail(f"{reason} (CI=true: the fault tests must run)", pytrace=False)
    _unavailable_reasons.append(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A running PostgreSQL cluster of this module's own, removed after it."""
    programs = postgres_programs()
    if programs is None:
        _unavailable("PostgreSQL's programs (initdb, pg_ctl) not found")
    run_as = run_as_server_user()
    if run_as is None:
        _unavailable(f"running as root without a {SERVER_USER!r} user to run PostgreSQL as")
    assert programs is not None and run_as is not None
    # Not under pytest's own temporary directory: under root, that is closed to the
    # server's user.
    directory = Path(tempfile.mkdtemp(prefix="prep-es-faults-"))
    if run_as:
        shutil.chown(directory, user=SERVER_USER, group=None)
    server = ThrowawayPostgres(programs=programs, run_as=run_as, directory=directory, port=0)
    try:
        server.init()
        for attempt in range(1, START_ATTEMPTS_MAX + 1):
            # The free port may be taken by another process before the server binds it.
            server.port = free_port()
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == START_ATTEMPTS_MAX:
                    raise
        yield server
    finally:
        if server.is_running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
