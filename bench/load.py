"""Load generation for the HTTP benches: ``wrk`` (from Debian; ``make bench`` installs it
when it can) sending prepared requests over loopback, its figures read back as JSON. A
helper of the benchmarks, not one of them."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

LOAD_THREADS: Final = 2
WRK_TIMEOUT_S: Final = 10

# Each wrk thread reads the request file and takes every LOAD_THREADS-th line from its
# own offset, cycling; a line is METHOD<TAB>PATH<TAB>CREDENTIALS<TAB>BODY or -, where
# CREDENTIALS is a bearer token, cookie:<Cookie header> or -.
# Statuses are counted per class; done() prints one JSON line.
WRK_SCRIPT: Final = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
local requests = {}
local index = 0
local step = 1
ok = 0; status_200 = 0; conflicts = 0; client_errors = 0; server_errors = 0
function init(args)
  step = tonumber(args[2])
  index = id
  for line in io.lines(args[1]) do
    local method, path, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    if token:sub(1, 7) == "cookie:" then headers["Cookie"] = token:sub(8)
    elseif token ~= "-" then headers["Authorization"] = "Bearer " .. token end
    if body ~= "-" then headers["Content-Type"] = "application/json" else body = nil end
    table.insert(requests, wrk.format(method, path, headers, body))
  end
end
function request()
  local prepared = requests[(index % #requests) + 1]
  index = index + step
  return prepared
end
function response(status, headers, body)
  if status == 200 then status_200 = status_200 + 1 end
  if status < 400 then ok = ok + 1
  elseif status == 409 then conflicts = conflicts + 1
  elseif status < 500 then client_errors = client_errors + 1
  else server_errors = server_errors + 1 end
end
function done(summary, latency, requests)
  local totals = {ok = 0, status_200 = 0, conflicts = 0, client_errors = 0, server_errors = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do totals[name] = totals[name] + thread:get(name) end
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "ok": %d, "status_200": %d, "conflicts": %d, ' ..
    '"client_errors": %d, ' ..
    '"server_errors": %d, "socket_errors": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, totals.ok, totals.status_200, totals.conflicts,
    totals.client_errors,
    totals.server_errors,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass
class Load:
    """One wrk run."""

    name: str
    requests: int
    ok: int
    """Answers below 400."""
    status_200: int
    conflicts: int
    client_errors: int
    server_errors: int
    socket_errors: int
    elapsed_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    generator_cpu_share: float
    """wrk's CPU time over the run's wall time × CPUs."""

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.elapsed_s

    def summary(self) -> str:
        refused = self.requests - self.ok
        return (
            f"{self.name:<11} {self.ok_per_s:9.1f} req/s  p50 {self.p50_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms  ({self.ok} ok, {refused} not: {self.conflicts} "
            f"409, {self.client_errors} other 4xx, {self.server_errors} 5xx, "
            f"{self.socket_errors} socket errors; wrk used {self.generator_cpu_share:.0%} "
            "of the CPUs)"
        )


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit(
            "the HTTP benches need wrk (Debian: apt-get install wrk; `make bench` installs it "
            "when it can)"
        )
    return wrk


def run_wrk(
    name: str,
    url: str,
    request_lines: Sequence[str],
    duration_s: int,
    scratch: Path,
    *,
    connections: int,
    threads: int = LOAD_THREADS,
) -> Load:
    """``request_lines`` (see :func:`line`) sent by wrk over ``connections`` for
    ``duration_s``."""
    script = scratch / "requests.lua"
    script.write_text(WRK_SCRIPT)
    requests_path = scratch / f"{name}.requests"
    requests_path.write_text("\n".join(request_lines) + "\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(
        [
            require_wrk(), "-t", str(threads), "-c", str(connections), "-d",
            f"{duration_s}s", "--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(script), url,
            "--", str(requests_path), str(threads),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=duration_s + 60,
    )  # fmt: skip
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"wrk failed ({completed.returncode}): {completed.stderr}")
    result = orjson.loads(completed.stdout.strip().splitlines()[-1])
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Load(
        name=name,
        requests=result["requests"],
        ok=result["ok"],
        status_200=result["status_200"],
        conflicts=result["conflicts"],
        client_errors=result["client_errors"],
        server_errors=result["server_errors"],
        socket_errors=result["socket_errors"],
        elapsed_s=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1000,
        p90_ms=result["p90_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        max_ms=result["max_us"] / 1000,
        generator_cpu_share=cpu_s / (wall_s * (os.cpu_count() or 1)),
    )


def line(
    method: str,
    path: str,
    token: str | None = None,
    body: bytes | None = None,
    *,
    cookie: str | None = None,
) -> str:
    """One request for :func:`run_wrk`: with a bearer ``token`` or a ``cookie`` header."""
    assert token is None or cookie is None
    text_body = "-" if body is None else body.decode()
    assert "\t" not in text_body and "\n" not in text_body
    credentials = f"cookie:{cookie}" if cookie is not None else token or "-"
    return f"{method}\t{path}\t{credentials}\t{text_body}"
