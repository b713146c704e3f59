"""``prep-es serve --workers N`` whose master is killed (SIGKILL): its workers stop
too, and the port refuses connections (finding: they kept listening and answering, one
for over half an hour)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_serve import environment, free_port
from tests.waiting import wait_until

START_TIMEOUT_S = 60.0
GONE_WITHIN_S = 20.0


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``prep-es serve --workers 2`` on a SQLite file, healthy; its port."""
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "prep_es.cli", "serve", "--workers", "2", "--port", str(port)],
        cwd=tmp_path,
        env=environment(f"sqlite:///{tmp_path / 'prep_es.db'}"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    workers: list[int] = []

    def healthy() -> bool:
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(
            healthy,
            START_TIMEOUT_S,
            lambda: f"a healthy server:\n{(tmp_path / 'serve.log').read_text()}",
        )
        workers = children_of(process.pid)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pid in workers:  # whatever the test found left over
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_stop_when_their_master_is_killed(
    master: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = master
    workers = [pid for pid in children_of(process.pid) if "spawn_main" in command_line(pid)]
    assert len(workers) == 2, [command_line(pid) for pid in children_of(process.pid)]

    process.kill()
    process.wait()

    wait_until(
        lambda: not any(is_running(pid) for pid in workers) and refuses_connections(port),
        GONE_WITHIN_S,
        lambda: (
            "the workers gone after their master was killed, still running: "
            f"{[pid for pid in workers if is_running(pid)]}"
        ),
    )
