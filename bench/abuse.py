"""Bursts an attacker would send, against a real server, each against its limit.

Run by ``make bench`` (``.venv/bin/python -m bench.abuse``); ``--quick`` is a reduced
run for checks (about a minute once the limits hold; a few while they do not). It
starts ``prep-es serve --workers 2`` (uvicorn, as in production) on loopback —
PostgreSQL with Redis (the login limit shared between the workers through Redis), or
``--sqlite`` for the embedded database — registers a few users through the API, then
sends, every burst from its own loopback address (127.0.0.2 to .5, so that one
burst's per-address limits do not spill into the next):

(a) ``login_burst``    100 parallel wrong logins for one email; then, for a second
                       email, 60 parallel logins of which the 37th is the right
                       password. Each ``401 invalid_credentials`` (and a 200) is one
                       password the server verified, and so may be a request left
                       unanswered: at most ``PREP_ES_LOGIN_FAILURES_MAX`` (5) per burst,
                       however parallel (the rest 429).
(b) ``login_spray``    60 parallel logins for random unknown emails, while a thread
                       samples the API workers' resident memory (``VmRSS`` every 10 ms,
                       and the kernel's high-water mark ``VmHWM``, reset just before):
                       the peak of any worker must stay under its 200 MB budget. A
                       worker past 1 GB is killed (uvicorn starts another): the limit
                       is missed already, and the machine may be shared.
(c) ``min_position``   100 clients, each sending one anonymous ``GET /kitchens`` with
                       ``X-Prep-Min-Position: 9223372036854775807`` a second (a new one
                       once the last is answered; their seconds start 10 ms apart, so
                       100 arrive spread over each second), while one client asks
                       ``GET /accounts/me`` a few hundred times in a row: its p99 must
                       stay under 50 ms (it is measured alone first, for comparison).

Every loop has a count and a deadline; nothing leaves loopback; the server is stopped
at the end, also on failure. A limit not met is reported as ``NOT met``: the script
still exits 0 (it measures, it does not gate). It prints a table and writes
``bench/results/abuse.json``::

    {"figures": {name: {"value": v, "unit": u}},
     "limits": {name: {"limit": "<= 5", "met": true}}, "notes": [...], "meta": {...}}

PostgreSQL: ``PREP_ES_BENCH_DATABASE_URL`` names a database for the server (nothing is
dropped); unset, the bench creates a fresh ``prep_es_bench_<random>_abuse`` on
``postgresql://postgres@127.0.0.1:5432`` and drops it at the end. Redis:
``PREP_ES_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``); its keys are the
run's own (fresh emails), so nothing is emptied.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import redis

from bench import reporting
from bench.databases import SERVER_URL_DEFAULT, URL_VARIABLE, ScratchDatabases
from bench.processes import (
    SERVER_START_TIMEOUT_S,
    Server,
    clean_environment,
    free_port,
    memory_kb,
    server,
)
from bench.reporting import run_meta
from tests.support import master_key_environment

REDIS_VARIABLE: Final = "PREP_ES_BENCH_REDIS_URL"
REDIS_URL_DEFAULT: Final = "redis://127.0.0.1:6379/15"
API: Final = "/api/v1"

WORKERS: Final = 2
LOGIN_FAILURES_MAX: Final = 5
"""``PREP_ES_LOGIN_FAILURES_MAX`` given to the server: the limit (a) holds it to."""
WORKER_RSS_BUDGET_MB: Final = 200
ACCOUNTS_ME_P99_MS_MAX: Final = 50
FAR_AHEAD_POSITION: Final = 9_223_372_036_854_775_807
"""The largest 64-bit position: no store will reach it."""

LOGIN_BURST: Final = 100
GUESS_BURST: Final = 60
RIGHT_PASSWORD_AT: Final = 37
"""In the guess burst, the right password is the 37th request started (1-based)."""
SPRAY: Final = 60
FLOOD_CLIENTS: Final = 100
FLOOD_INTERVAL_S: Final = 1.0
"""Each flood client sends at most one far-ahead request a second."""
RSS_SAMPLE_INTERVAL_S: Final = 0.01
PROBE_WARMUP: Final = 20
"""Unmeasured probes first: a worker's first answers (or a new worker's) are cold."""
SPRAY_RSS_CEILING_MB: Final = 1024
"""A worker past this during the spray is killed (uvicorn starts another): its limit is
already not met, and the machine may be shared."""
BURST_RSS_CEILING_MB: Final = 3072
"""The same for the login bursts, set above what a worker's 40 threads could take with
64 MiB argon2 hashes: a killed worker's logins cannot be counted."""
QUIET_CPU_SHARE: Final = 0.1
QUIET_DEADLINE_S: Final = 120.0

BURST_ADDRESS: Final = "127.0.0.2"
GUESS_ADDRESS: Final = "127.0.0.3"
SPRAY_ADDRESS: Final = "127.0.0.4"
FLOOD_ADDRESS: Final = "127.0.0.5"
SETUP_ADDRESS: Final = "127.0.0.1"

REQUEST_TIMEOUT_S: Final = 60.0
"""One request's patience: more than the server's longest wait (its 5 s read-your-writes
wait, or argon2 queued behind a burst)."""
BURST_DEADLINE_S: Final = 180.0


@dataclass(frozen=True)
class Plan:
    """How long: the full run or the reduced ``--quick`` one. The bursts are the same
    size in both (they are the finding); only the latency probes are fewer."""

    mode: str
    probes_alone: int
    probes_under_flood: int
    flood_deadline_s: float
    """The flood stops by then even if the probes have not all been answered (they wait
    on the flooded server)."""


FULL = Plan("full", 100, 400, 60.0)
QUICK = Plan("quick", 50, 150, 30.0)


# --- the server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    redis_url: str | None


@contextmanager
def backend(use_sqlite: bool, scratch: Path, notes: list[str]) -> Iterator[Backend]:
    if use_sqlite:
        yield Backend("sqlite", f"sqlite:///{scratch / 'abuse.db'}", None)
        return
    redis_url = os.environ.get(REDIS_VARIABLE, REDIS_URL_DEFAULT)
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        notes.append(f"Redis unreachable at {redis_url} ({error}): each worker limits alone")
        redis_url = None  # type: ignore[assignment]
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield Backend("postgresql", given, redis_url)
        return
    scratch_databases = ScratchDatabases(server_url=SERVER_URL_DEFAULT)
    try:
        yield Backend("postgresql", scratch_databases.create("abuse"), redis_url)
    finally:
        scratch_databases.drop_all()


@contextmanager
def our_server(where: Backend, logs: Path) -> Iterator[Server]:
    port = free_port()
    command = [
        sys.executable, "-m", "prep_es.cli", "serve", "--host", "127.0.0.1", "--port",
        str(port), "--workers", str(WORKERS), "--no-access-log",
    ]  # fmt: skip
    environment = clean_environment(
        PREP_ES_DATABASE_URL=where.database_url,
        PREP_ES_JWT_SECRET=secrets.token_hex(32),
        PREP_ES_LOGIN_FAILURES_MAX=str(LOGIN_FAILURES_MAX),
        **master_key_environment(where.database_url),
        **({"PREP_ES_REDIS_URL": where.redis_url} if where.redis_url else {}),
    )
    with server("prep-es", command, environment, logs) as running:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while len(running.worker_pids()) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.1)
        running.wait_until("/readyz")
        yield running


def new_password() -> str:
    return "abuse-" + secrets.token_urlsafe(18)


@dataclass(frozen=True)
class Account:
    email: str
    password: str


def register(client: httpx.Client) -> Account:
    account = Account(f"abuse-{secrets.token_hex(6)}@example.com", new_password())
    response = client.post(
        f"{API}/auth/register",
        json={
            "email": account.email,
            "password": account.password,
            "full_name": "Bench Abuse",
            "role": "customer",
        },
    )
    if response.status_code != 201:
        raise SystemExit(f"could not register: {response.status_code} {response.text}")
    return account


def log_in(client: httpx.Client, account: Account) -> str:
    response = client.post(
        f"{API}/auth/login", json={"email": account.email, "password": account.password}
    )
    if response.status_code != 200:
        raise SystemExit(f"could not log in: {response.status_code} {response.text}")
    token: str = response.json()["access_token"]
    return token


def async_client(url: str, address: str, connections: int) -> httpx.AsyncClient:
    """A client of up to ``connections`` connections (each kept for its next request),
    leaving from ``address`` (any of 127.0.0.0/8 reaches the server on 127.0.0.1), so
    that each burst is a client address of its own."""
    return httpx.AsyncClient(
        base_url=url,
        timeout=REQUEST_TIMEOUT_S,
        transport=httpx.AsyncHTTPTransport(
            local_address=address,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        ),
    )


def outcome(response: httpx.Response | BaseException) -> str:
    """``200``, ``401 invalid_credentials``, ``429 too_many_login_attempts``, … or the
    exception's name (a timeout, a refused connection)."""
    if isinstance(response, BaseException):
        return type(response).__name__
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        return f"{response.status_code} {response.json().get('code')}"
    return str(response.status_code)


async def parallel_logins(
    url: str, address: str, credentials: list[tuple[str, str]]
) -> list[httpx.Response | BaseException]:
    """All ``credentials`` as logins at once, started in order, one connection each."""
    async with async_client(url, address, len(credentials)) as client:

        async def one(email: str, password: str) -> httpx.Response:
            return await client.post(
                f"{API}/auth/login", json={"email": email, "password": password}
            )

        tasks = [asyncio.ensure_future(one(email, password)) for email, password in credentials]
        done = await asyncio.wait_for(
            asyncio.gather(*tasks, return_exceptions=True), BURST_DEADLINE_S
        )
        return list(done)


def cpu_s(pids: list[int]) -> float:
    """CPU time the processes have used (user and system), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(running: Server) -> None:
    """Until every worker is back (uvicorn replaces a killed one) and they use under
    ``QUIET_CPU_SHARE`` of a CPU over half a second: work a burst left queued (requests
    whose clients gave up) must not be measured in the next stage."""
    deadline = time.monotonic() + QUIET_DEADLINE_S
    while time.monotonic() < deadline:
        pids = running.worker_pids()
        used = cpu_s(pids)
        time.sleep(0.5)
        if len(pids) == WORKERS and cpu_s(pids) - used < QUIET_CPU_SHARE * 0.5:
            running.wait_until("/readyz")
            return
    raise SystemExit(f"the server stayed busy for {QUIET_DEADLINE_S} s after a burst")


# --- report ----------------------------------------------------------------------------


@dataclass
class Report(reporting.Report):
    """Figures with the limits they must keep, in place of ratios."""

    value_format: str = ",.1f"
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def limit(self, name: str, value: float, unit: str, maximum: float, *, strict: bool) -> None:
        """A figure with its limit: ``< maximum`` if ``strict``, else ``<= maximum``."""
        self.figure(name, value, unit)
        met = value < maximum if strict else value <= maximum
        self.limits[name] = {"limit": f"{'<' if strict else '<='} {maximum:g}", "met": met}

    def aim_of(self, name: str) -> str:
        limit = self.limits.get(name)
        return f"{limit['limit']:<8} {'met' if limit['met'] else 'NOT met'}" if limit else ""

    def sections(self) -> dict[str, Any]:
        return {"figures": self.figures, "limits": self.limits}


def counted(outcomes: list[str]) -> str:
    return ", ".join(f"{count} x {name}" for name, count in Counter(outcomes).most_common())


# --- (a) login burst --------------------------------------------------------------------


def verified(outcomes: list[str]) -> int:
    """Passwords the server may have checked: each wrong one answers 401
    invalid_credentials, the right one 200 (a 429 or 503 means it was never checked); a
    request left unanswered (a timeout, a dropped connection) counts too, as it may
    have been."""
    return sum(
        1 for name in outcomes if name in {"200", "401 invalid_credentials"} or name[:1].isalpha()
    )


def bench_login_burst(running: Server, report: Report, client: httpx.Client) -> None:
    print(f"(a) {LOGIN_BURST} parallel wrong logins for one email", flush=True)
    target = register(client)
    outcomes = login_burst(
        running,
        report,
        "login_burst",
        BURST_ADDRESS,
        [(target.email, new_password())] * LOGIN_BURST,
    )
    report.limit(
        "login_burst_verified_guesses",
        verified(outcomes),
        "count",
        LOGIN_FAILURES_MAX,
        strict=False,
    )
    report.figure("login_burst_429", outcomes.count("429 too_many_login_attempts"), "count")

    print(
        f"    {GUESS_BURST} parallel logins for another, the right password at "
        f"#{RIGHT_PASSWORD_AT}",
        flush=True,
    )
    guessed = register(client)
    credentials = [(guessed.email, new_password()) for _ in range(GUESS_BURST)]
    credentials[RIGHT_PASSWORD_AT - 1] = (guessed.email, guessed.password)
    wait_until_quiet(running)
    outcomes = login_burst(running, report, "guess_burst", GUESS_ADDRESS, credentials)
    right = outcomes[RIGHT_PASSWORD_AT - 1]
    report.notes.append(f"guess_burst: the right password (#{RIGHT_PASSWORD_AT}) got {right}")
    report.limit(
        "guess_burst_verified_guesses",
        verified(outcomes),
        "count",
        LOGIN_FAILURES_MAX,
        strict=False,
    )
    report.figure("guess_burst_right_password_accepted", right == "200", "bool")


# --- (b) login spray --------------------------------------------------------------------


class MemorySampler:
    """Samples the workers' ``VmRSS`` in a thread until stopped (at most ``deadline_s``),
    keeping each worker's peak; resets their ``VmHWM`` first where the kernel lets it
    (``/proc/PID/clear_refs``), so that the high-water mark covers the burst only."""

    def __init__(self, pids: list[int], deadline_s: float, ceiling_mb: int) -> None:
        self.pids = pids
        self.deadline_s = deadline_s
        self.ceiling_mb = ceiling_mb
        self.peak_kb: dict[int, int] = dict.fromkeys(pids, 0)
        self.killed: list[int] = []
        self.high_water_reset = all(self._reset_high_water(pid) for pid in pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    @staticmethod
    def _reset_high_water(pid: int) -> bool:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def _run(self) -> None:
        deadline = time.monotonic() + self.deadline_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            for pid in self.pids:
                if pid in self.killed:
                    continue
                try:
                    self.peak_kb[pid] = max(self.peak_kb[pid], memory_kb(pid, "VmRSS"))
                except OSError:
                    continue
                if self.peak_kb[pid] > self.ceiling_mb * 1024:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            self._stop.wait(RSS_SAMPLE_INTERVAL_S)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.high_water_reset:
            for pid in set(self.pids) - set(self.killed):
                try:
                    self.peak_kb[pid] = max(self.peak_kb[pid], memory_kb(pid, "VmHWM"))
                except OSError:
                    continue


def login_burst(
    running: Server,
    report: Report,
    name: str,
    address: str,
    credentials: list[tuple[str, str]],
    ceiling_mb: int = BURST_RSS_CEILING_MB,
) -> list[str]:
    """``credentials`` as parallel logins from ``address``, the workers' memory sampled
    meanwhile; each answer's outcome, in the order the logins started. Notes what came
    back and the workers' peaks; records the highest as ``{name}_worker_rss_peak_mb``."""
    started = time.perf_counter()
    with MemorySampler(running.worker_pids(), BURST_DEADLINE_S, ceiling_mb) as sampler:
        answers = asyncio.run(parallel_logins(running.url, address, credentials))
    outcomes = [outcome(answer) for answer in answers]
    report.notes.append(
        f"{name}: {counted(outcomes)} in {time.perf_counter() - started:.1f} s; "
        f"worker peaks {sorted(round(kb / 1024) for kb in sampler.peak_kb.values())} MB"
        + ("" if sampler.high_water_reset else " (sampled only: VmHWM could not be reset)")
        + (
            f"; {len(sampler.killed)} worker(s) killed past {ceiling_mb} MB"
            if sampler.killed
            else ""
        )
    )
    report.figure(f"{name}_worker_rss_peak_mb", max(sampler.peak_kb.values()) / 1024, "MB")
    return outcomes


def bench_login_spray(running: Server, report: Report) -> None:
    print(f"(b) {SPRAY} parallel logins for random unknown emails", flush=True)
    before_mb = max(memory_kb(pid, "VmRSS") for pid in running.worker_pids()) / 1024
    report.figure("login_spray_worker_rss_before_mb", before_mb, "MB")
    credentials = [
        (f"nobody-{secrets.token_hex(8)}@example.com", new_password()) for _ in range(SPRAY)
    ]
    login_burst(running, report, "login_spray", SPRAY_ADDRESS, credentials, SPRAY_RSS_CEILING_MB)
    peak = report.figures.pop("login_spray_worker_rss_peak_mb")
    report.limit(
        "login_spray_worker_rss_peak_mb", peak["value"], "MB", WORKER_RSS_BUDGET_MB, strict=True
    )


# --- (c) far-ahead read-your-writes positions -------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def probe_accounts_me(url: str, token: str, count: int, deadline: float) -> list[float]:
    """``count`` requests one after another (fewer if the deadline comes first); each
    one's latency in ms. A failed answer counts as its full latency too."""
    latencies: list[float] = []
    async with async_client(url, SETUP_ADDRESS, 1) as client:
        headers = {"Authorization": f"Bearer {token}"}
        while len(latencies) < count and time.monotonic() < deadline:
            started = time.perf_counter()
            with suppress(httpx.HTTPError):
                await client.get(f"{API}/accounts/me", headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def flood_and_probe(url: str, token: str, plan: Plan) -> tuple[list[float], list[str], float]:
    """The probes' latencies while the flood runs, the flood's outcomes, and how long
    it ran."""
    deadline = time.monotonic() + plan.flood_deadline_s
    probes_done = asyncio.Event()
    outcomes: list[str] = []
    async with async_client(url, FLOOD_ADDRESS, FLOOD_CLIENTS) as flood:

        async def flood_client(offset_s: float) -> None:
            headers = {"X-Prep-Min-Position": str(FAR_AHEAD_POSITION)}
            await asyncio.sleep(offset_s)
            while not probes_done.is_set() and time.monotonic() < deadline:
                next_at = time.monotonic() + FLOOD_INTERVAL_S
                try:
                    response = await flood.get(f"{API}/kitchens", headers=headers)
                    outcomes.append(outcome(response))
                except httpx.HTTPError as error:
                    outcomes.append(outcome(error))
                pause = next_at - time.monotonic()
                if pause > 0:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(probes_done.wait(), pause)

        started = time.perf_counter()
        # Each client's second starts at its own offset, so that the hundred arrive
        # spread over each second (a hundred new requests every second, a hundred in
        # flight while each is held), not all in one instant; the probes begin once all
        # of them have sent their first.
        clients = [
            asyncio.ensure_future(flood_client(FLOOD_INTERVAL_S * index / FLOOD_CLIENTS))
            for index in range(FLOOD_CLIENTS)
        ]
        await asyncio.sleep(FLOOD_INTERVAL_S)
        latencies = await probe_accounts_me(url, token, plan.probes_under_flood, deadline)
        probes_done.set()
        await asyncio.gather(*clients)
        return latencies, outcomes, time.perf_counter() - started


def bench_min_position(running: Server, report: Report, plan: Plan, token: str) -> None:
    print(f"(c) GET /accounts/me alone, then under {FLOOD_CLIENTS} far-ahead positions", flush=True)
    asyncio.run(probe_accounts_me(running.url, token, PROBE_WARMUP, time.monotonic() + 30))
    alone = asyncio.run(
        probe_accounts_me(running.url, token, plan.probes_alone, time.monotonic() + 30)
    )
    report.figure("accounts_me_alone_p50_ms", statistics.median(alone), "ms")
    report.figure("accounts_me_alone_p99_ms", percentile(alone, 0.99), "ms")
    latencies, outcomes, elapsed_s = asyncio.run(flood_and_probe(running.url, token, plan))
    report.notes.append(
        f"min_position: {len(latencies)} probes in {elapsed_s:.1f} s (of "
        f"{plan.probes_under_flood}); far-ahead answers: {counted(outcomes)}"
    )
    report.figure("accounts_me_under_flood_p50_ms", statistics.median(latencies), "ms")
    report.limit(
        "accounts_me_under_flood_p99_ms",
        percentile(latencies, 0.99),
        "ms",
        ACCOUNTS_ME_P99_MS_MAX,
        strict=True,
    )
    report.figure(
        "far_ahead_answered_503", sum(name.startswith("503") for name in outcomes), "count"
    )
    report.figure("far_ahead_answered_4xx", sum(name[:1] == "4" for name in outcomes), "count")


# --- main ------------------------------------------------------------------------------


def run(plan: Plan, *, use_sqlite: bool) -> None:
    started = time.perf_counter()
    report = Report("abuse")
    with (
        tempfile.TemporaryDirectory(prefix="prep-es-abuse-") as scratch_dir,
        backend(use_sqlite, Path(scratch_dir), report.notes) as where,
    ):
        scratch = Path(scratch_dir)
        print(f"prep-es serve --workers {WORKERS} on {where.name}", flush=True)
        with (
            our_server(where, scratch) as running,
            httpx.Client(base_url=running.url, timeout=REQUEST_TIMEOUT_S) as client,
        ):
            reader = register(client)
            token = log_in(client, reader)  # before any burst: nothing limits it
            bench_login_burst(running, report, client)
            wait_until_quiet(running)
            bench_login_spray(running, report)
            wait_until_quiet(running)
            bench_min_position(running, report, plan, token)
            if running.process.poll() is not None:
                report.notes.append(f"the server exited:\n{running.log_tail()}")
    report.print_table()
    meta = {
        "mode": plan.mode,
        "backend": where.name,
        "redis": where.redis_url is not None,
        "workers": WORKERS,
        "login_failures_max": LOGIN_FAILURES_MAX,
        "bursts": {
            "login_burst": LOGIN_BURST,
            "guess_burst": GUESS_BURST,
            "right_password_at": RIGHT_PASSWORD_AT,
            "login_spray": SPRAY,
            "flood_clients": FLOOD_CLIENTS,
            "flood_interval_s": FLOOD_INTERVAL_S,
            "far_ahead_position": FAR_AHEAD_POSITION,
        },
        "probes_alone": plan.probes_alone,
        "probes_under_flood": plan.probes_under_flood,
        "load_average": list(os.getloadavg()),
        **run_meta(started),
    }
    unmet = [name for name, limit in report.limits.items() if not limit["met"]]
    print(f"\nlimits NOT met: {', '.join(unmet)}" if unmet else "\nevery limit met")
    report.write(meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="reduced run for checks (~1 min)")
    parser.add_argument(
        "--sqlite", action="store_true", help="the embedded database instead of PostgreSQL"
    )
    args = parser.parse_args(argv)
    run(QUICK if args.quick else FULL, use_sqlite=args.sqlite)


if __name__ == "__main__":
    main()
