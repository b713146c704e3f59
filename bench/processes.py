"""The benches' servers: a free port, a clean environment, a server process started
and stopped around a block, and its workers' memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
from prometheus_client.parser import text_string_to_metric_families

SERVER_START_TIMEOUT_S: Final = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_environment(**variables: str) -> dict[str, str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(("PREP_ES_", "BENCH_"))
        and name != "PROMETHEUS_MULTIPROC_DIR"
    }
    return inherited | variables


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    projector: subprocess.Popen[bytes] | None = None
    """The ``prep-es project`` process beside it (the scaled shape)."""

    def wait_until(self, path: str, status: int = 200) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise SystemExit(f"{self.name} exited:\n{self.log_tail()}")
                try:
                    if client.get(path).status_code == status:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise SystemExit(f"{self.name}: {path} not {status} in {SERVER_START_TIMEOUT_S} s")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (spawned children of the server)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and b"spawn_main" in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def memory_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


@contextmanager
def server(
    name: str, command: Sequence[str], environment: dict[str, str], logs: Path
) -> Iterator[Server]:
    log_path = logs / f"{name}.log"
    port = int(command[command.index("--port") + 1])
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), cwd=logs, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    running = Server(name, process, f"http://127.0.0.1:{port}", log_path)
    try:
        yield running
    finally:
        running.stop()


def projection_lag(url: str) -> dict[str, float]:
    """Each projection's lag in events, as the server's ``/metrics`` says."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return {
        sample.labels["projection"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "prep_es_projection_lag_events"
    }


def wait_for_projections(url: str, timeout_s: float) -> float:
    """Until every projection of the server at ``url`` has caught up; seconds waited."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    while any(lag > 0 for lag in projection_lag(url).values()):
        if time.monotonic() > deadline:
            raise SystemExit("the server's projectors did not catch up")
        time.sleep(0.25)
    return time.perf_counter() - started
