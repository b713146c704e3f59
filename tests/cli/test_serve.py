"""``prep-es serve`` as a real process: start, health, a booking round trip over HTTP,
metrics summed over workers, one runner per projection across workers, 20 concurrent
requests for one slot, and a graceful SIGTERM that lets an in-flight request finish (on
SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from prep_es.store.settings import PostgresLocation, parse_database_url
from projections import PROJECTIONS
from projections.locks import FileRunnerLock, lock_file_path, lock_key
from tests.cli.running import RunCli, cli_runner
from tests.support import master_key_environment
from tests.waiting import wait_until

REPOSITORY = Path(__file__).resolve().parents[2]
API = "/api/v1"
PASSWORD = "correct horse battery"
JWT_SECRET = "serve-test-secret-Qm7Tz2Lw9Kx4Rb6Nc1Vd8Hf3"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 30.0
CONCURRENT_REQUESTS = 20
DOCUMENT_SHA256 = "ab" * 32


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment(database_url: str, **variables: str) -> dict[str, str]:
    """The test process's environment without any PREP_ES_* or metrics variable, plus
    ``variables``."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("PREP_ES_") and name != "PROMETHEUS_MULTIPROC_DIR"
    }
    return (
        inherited
        | {"PREP_ES_DATABASE_URL": database_url}
        | master_key_environment(database_url)
        | variables
    )


@dataclass
class Server:
    """A ``prep-es serve`` process on a free port."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", timeout=REQUEST_TIMEOUT_S
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_healthy(self) -> bool:
        assert self.process.poll() is None, f"server exited:\n{self.log()}"
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_until_healthy(self) -> None:
        wait_until(self.is_healthy, START_TIMEOUT_S, lambda: f"a healthy server:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM; the exit code (the test fails if it takes too long)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"no exit within {STOP_TIMEOUT_S} s of SIGTERM:\n{self.log()}")

    # --- the API as a client sees it ------------------------------------------------

    def ok(self, response: httpx.Response, status: int = 200) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    def register(self, role: str, email: str) -> dict[str, Any]:
        body = {"email": email, "password": PASSWORD, "full_name": "Test User", "role": role}
        return self.ok(self.client.post(f"{API}/auth/register", json=body), 201)

    def log_in(self, email: str, min_position: int = 0) -> dict[str, str]:
        token = self.ok(
            self.client.post(
                f"{API}/auth/login",
                json={"email": email, "password": PASSWORD},
                headers={"X-Prep-Min-Position": str(min_position)},
            )
        )
        return {"Authorization": f"Bearer {token['access_token']}"}

    def user(self, role: str, email: str) -> dict[str, str]:
        registered = self.register(role, email)
        return self.log_in(email, registered["position"])

    def published_kitchen(self, host: dict[str, str], admin: dict[str, str]) -> str:
        """Draft, every certificate Los Angeles requires (verified), submit, approve."""
        today = datetime.now(UTC).date()
        kitchen = self.ok(
            self.client.post(
                f"{API}/kitchens",
                headers=host,
                json={
                    "name": "Serve Test Kitchen",
                    "description": "A clean commercial kitchen",
                    "city": "Los Angeles",
                    "jurisdiction": "los_angeles",
                    "address": "1 Main St",
                    "hourly_rate": "50.00",
                    "capacity": 10,
                    "amenities": ["oven"],
                    "instant_book": False,
                },
            ),
            201,
        )
        kitchen_id: str = kitchen["id"]
        for kind in ("business_license", "fire_inspection", "health_permit", "liability_insurance"):
            certificate = self.ok(
                self.client.post(
                    f"{API}/kitchens/{kitchen_id}/certificates",
                    headers=host,
                    json={
                        "kind": kind,
                        "number": f"{kind}-1",
                        "issued_on": (today - timedelta(days=365)).isoformat(),
                        "expires_on": date(today.year + 3, 12, 31).isoformat(),
                        "document_sha256": DOCUMENT_SHA256,
                    },
                ),
                201,
            )
            self.ok(
                self.client.post(
                    f"{API}/admin/kitchens/{kitchen_id}/certificates/{certificate['id']}/verify",
                    headers=admin,
                )
            )
        submitted = self.ok(self.client.post(f"{API}/kitchens/{kitchen_id}/submit", headers=host))
        assert submitted["status"] == "pending_review"
        approved = self.ok(
            self.client.post(f"{API}/admin/kitchens/{kitchen_id}/approve", headers=admin)
        )
        assert approved["status"] == "published"
        return kitchen_id

    def funded_customer(self, email: str, amount: str = "1000.00") -> dict[str, str]:
        """A customer who topped up ``amount`` with the sandbox's test card, once the
        sandbox's notification (sent by the server to itself) has credited it."""
        customer = self.user("customer", email)
        self.ok(
            self.client.post(
                f"{API}/accounts/me/top-ups",
                headers=customer,
                json={"amount": amount, "payment_method": "pm_card_visa"},
            ),
            202,
        )

        def credited() -> bool:
            account = self.client.get(f"{API}/accounts/me", headers=customer)
            return account.status_code == 200 and account.json()["balance"] == amount

        wait_until(credited, REQUEST_TIMEOUT_S, f"the top-up of {email} credited")
        return customer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """``start_server(database_url, *arguments, **variables)``: a running ``prep-es
    serve``; killed at the end if a test left it running."""
    servers: list[Server] = []

    def start(database_url: str, *arguments: str, **variables: str) -> Server:
        port = free_port()
        log_path = tmp_path / f"serve-{port}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prep_es.cli", "serve", "--port", str(port), *arguments],
                cwd=tmp_path,
                env=environment(database_url, **variables),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        server = Server(process=process, port=port, log_path=log_path)
        servers.append(server)
        server.wait_until_healthy()
        return server

    yield start
    for server in servers:
        server.client.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def create_admin(database_url: str, email: str, **variables: str) -> None:
    """``prep-es users create --role admin``, the operator's way, in its own process."""
    completed = subprocess.run(
        [sys.executable, "-m", "prep_es.cli", "users", "create", "--email", email,
         "--password", "-", "--role", "admin"],
        input=PASSWORD + "\n",
        cwd=REPOSITORY,
        env=environment(database_url, **variables),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr


def booking_window(days: int = 2, hours: int = 2) -> dict[str, str]:
    """``days`` from today at 17:00 UTC (09:00 or 10:00 in Los Angeles)."""
    start = datetime.now(UTC).replace(hour=17, minute=0, second=0, microsecond=0)
    start += timedelta(days=days)
    return {
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(hours=hours)).isoformat(),
    }


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def everything_sent_was_read(port: int) -> bool:
    """Whether every TCP connection to ``port`` on this machine was accepted and every
    byte sent on it, either way, was received and read by the process at the other end
    (Linux's /proc/net/tcp: no listening socket's backlog, no connection's queue)."""
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        _, local, remote, state, queues, *_ = row.split()
        if port not in (int(local.rpartition(":")[2], 16), int(remote.rpartition(":")[2], 16)):
            continue
        unsent, unread = (int(queue, 16) for queue in queues.split(":"))
        listening = state == "0A"  # its queue is the backlog of unaccepted connections
        if unread or (unsent and not listening):
            return False
    return True


def stop_with_a_request_in_flight(server: Server, customer: dict[str, str]) -> None:
    """SIGTERM while a request is in flight: it is answered before the server exits 0.
    The request is a top-up whose body comes in two parts, the second only once the
    server has begun shutting down (a read-your-writes wait no longer serves: a position
    beyond the store's head is refused at once, and one within it is reached at once)."""
    answers: list[httpx.Response | Exception] = []
    first_part_sent = threading.Event()

    def body() -> Iterator[bytes]:
        yield b'{"amount": '
        first_part_sent.set()
        wait_until(
            lambda: '"message":"Shutting down"' in server.log(),
            STOP_TIMEOUT_S,
            lambda: f"the server to shut down:\n{server.log()}",
        )
        yield b'"1.00", "payment_method": "pm_card_visa"}'

    def top_up_slowly() -> None:
        try:
            answers.append(
                server.client.post(
                    f"{API}/accounts/me/top-ups",
                    headers={**customer, "Content-Type": "application/json"},
                    content=body(),
                )
            )
        except httpx.HTTPError as error:
            answers.append(error)

    topping_up = threading.Thread(target=top_up_slowly)
    topping_up.start()
    # Wait for the server to read the request: a connection whose request has not
    # been read yet is closed at shutdown, like an idle one.
    assert first_part_sent.wait(REQUEST_TIMEOUT_S), answers
    wait_until(lambda: everything_sent_was_read(server.port), REQUEST_TIMEOUT_S, "the request read")
    started = time.monotonic()
    assert server.stop() == 0, server.log()
    topping_up.join()
    assert time.monotonic() - started < STOP_TIMEOUT_S
    [answer] = answers
    assert isinstance(answer, httpx.Response), f"{answer!r}\n{server.log()}"
    assert answer.status_code == 202, answer.text


# --- The round trip and a graceful stop, on each backend -------------------------------


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_serve_books_over_http_and_stops_gracefully(
    start_server: Any, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    if backend == "postgres":
        database_url = str(request.getfixturevalue("fresh_postgres_url"))
        secret = {"PREP_ES_JWT_SECRET": JWT_SECRET}
    else:
        database_url = f"sqlite:///{tmp_path / 'prep_es.db'}"
        secret = {}
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    server: Server = start_server(
        database_url,
        "--workers",
        "2",
        PREP_ES_MIN_POSITION_WAIT_S="3",
        TMPDIR=str(temporary),
        **secret,
    )
    [metrics_directory] = temporary.glob("prep-es-metrics-*")  # the workers' shared files
    assert server.client.get("/healthz").json() == {"status": "ok"}

    create_admin(database_url, "admin@example.com", **secret)
    admin = server.log_in("admin@example.com")
    host = server.user("host", "host@example.com")
    kitchen_id = server.published_kitchen(host, admin)
    customer = server.funded_customer("customer@example.com", "500.00")

    window = booking_window()
    booked = server.ok(
        server.client.post(
            f"{API}/bookings",
            headers=customer,
            json={"kitchen_id": kitchen_id, **window, "guests": 4},
        ),
        201,
    )
    assert booked["status"] == "pending"
    assert booked["price"] == "100.00"
    position = int(booked["position"])
    read = server.ok(
        server.client.get(
            f"{API}/bookings/{booked['id']}",
            headers={**customer, "X-Prep-Min-Position": str(position)},
        )
    )
    assert read["id"] == booked["id"]
    assert read["status"] == "pending"
    account = server.ok(
        server.client.get(
            f"{API}/accounts/me", headers={**customer, "X-Prep-Min-Position": str(position)}
        )
    )
    assert (account["balance"], account["held"], account["available"]) == (
        "500.00",
        "100.00",
        "400.00",
    )
    assert server.ok(server.client.get("/readyz"))["ready"] is True

    # Counted by whichever worker served each request, summed by the one scraped.
    text = server.client.get("/metrics").text
    requests = samples(text, "prep_es_http_request_duration_seconds_count")
    register = (("method", "POST"), ("route", "/api/v1/auth/register"), ("status", "201"))
    assert requests[register] == 2
    commands = samples(text, "prep_es_commands_total")
    assert commands[(("command", "request_booking"), ("outcome", "ok"))] == 1
    assert commands[(("command", "request_top_up"), ("outcome", "ok"))] == 1

    stop_with_a_request_in_flight(server, customer)
    log = server.log()
    assert '"logger":"uvicorn.access","message":"127.0.0.1:' in log  # one JSON line each
    assert "Application shutdown complete." in log
    assert log.rstrip().endswith('"message":"stopped","request_id":null}')
    assert not metrics_directory.exists()


# --- PostgreSQL: workers share the runners; 20 concurrent requests for one slot --------


def advisory_lock_holders(database_url: str) -> Counter[str]:
    """How many sessions hold each projection's runner lock."""
    location = parse_database_url(database_url)
    assert isinstance(location, PostgresLocation)
    keys = {lock_key(f"projection:{p.name}"): p.name for p in PROJECTIONS}
    with psycopg.connect(location.conninfo(), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT (classid::bigint << 32) | objid::bigint AS key, pid FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    held: Counter[str] = Counter()
    for key, _pid in rows:
        signed = key - (1 << 64) if key >= (1 << 63) else key
        if signed in keys:
            held[keys[signed]] += 1
    return held


@pytest.mark.postgres
def test_workers_share_projections_and_one_slot_is_booked_once(
    start_server: Any, fresh_postgres_url: str
) -> None:
    server: Server = start_server(
        fresh_postgres_url,
        "--workers",
        "2",
        PREP_ES_JWT_SECRET=JWT_SECRET,
        # Its customers all register from this one address.
        PREP_ES_REGISTRATIONS_PER_CLIENT_MAX="1000",
    )
    create_admin(fresh_postgres_url, "admin@example.com", PREP_ES_JWT_SECRET=JWT_SECRET)
    admin = server.log_in("admin@example.com")
    host = server.user("host", "host@example.com")
    kitchen_id = server.published_kitchen(host, admin)
    customers = [
        server.funded_customer(f"customer-{number}@example.com")
        for number in range(CONCURRENT_REQUESTS)
    ]

    # Two workers, each running a supervisor: every projection has exactly one runner.
    def one_runner_each() -> bool:
        held = advisory_lock_holders(fresh_postgres_url)
        assert max(held.values(), default=0) <= 1, held
        return held == {p.name: 1 for p in PROJECTIONS}

    wait_until(
        one_runner_each,
        START_TIMEOUT_S,
        lambda: f"one runner per projection: {advisory_lock_holders(fresh_postgres_url)}",
    )

    window = booking_window(days=3)
    barrier = threading.Barrier(CONCURRENT_REQUESTS)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def book(customer: dict[str, str]) -> None:
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as client:
            barrier.wait()
            response = client.post(
                f"{API}/bookings",
                headers=customer,
                json={"kitchen_id": kitchen_id, **window, "guests": 2},
            )
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=book, args=(customer,)) for customer in customers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {201: 1, 409: CONCURRENT_REQUESTS - 1}, [a.text for a in answers]
    codes = {answer.json()["code"] for answer in answers if answer.status_code == 409}
    assert codes == {"booking_conflict"}
    [winner] = [answer.json() for answer in answers if answer.status_code == 201]
    position = str(max(int(answer.headers.get("X-Prep-Position", 0)) for answer in answers))
    page = server.ok(
        server.client.get(
            f"{API}/bookings",
            params={"kitchen_id": kitchen_id},
            headers={**host, "X-Prep-Min-Position": position},
        )
    )
    assert [item["id"] for item in page["items"]] == [winner["id"]]
    assert server.stop() == 0, server.log()


# --- refusals before anything starts ---------------------------------------------------


@pytest.fixture
def cli_postgres(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fresh_postgres_url: str
) -> RunCli:
    return cli_runner(monkeypatch, capsys, fresh_postgres_url)


@pytest.mark.postgres
def test_serve_refuses_postgres_without_a_long_enough_secret(
    cli_postgres: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = cli_postgres("serve", "--port", str(free_port()))
    assert missing.code == 2
    assert "PREP_ES_JWT_SECRET is required (at least 32 bytes)" in missing.err

    monkeypatch.setenv("PREP_ES_JWT_SECRET", "s" * 31)
    short = cli_postgres("serve", "--port", str(free_port()))
    assert short.code == 2
    assert "PREP_ES_JWT_SECRET must be at least 32 bytes" in short.err
    assert "s" * 31 not in short.err


def test_serve_refuses_workers_over_an_in_memory_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = cli_runner(monkeypatch, capsys, "sqlite:///:memory:")
    refused = run("serve", "--workers", "2", "--port", str(free_port()))
    assert refused.code == 2
    assert "in-memory database" in refused.err
    assert run("serve", "--workers", "0").code == 2
    assert run("serve", "--port", "70000").code == 2
    assert run("serve", "--role", "everything").code == 2


def test_a_read_replica_without_projectors(start_server: Any, tmp_path: Path) -> None:
    database = tmp_path / "prep_es.db"
    database_url = f"sqlite:///{database}"
    create_admin(database_url, "admin@example.com")
    server: Server = start_server(
        database_url, "--role", "read", "--no-projector", "--no-access-log"
    )

    operations = server.ok(server.client.get("/openapi.json"))["paths"]
    api_methods = {
        method for path, item in operations.items() if path.startswith(API) for method in item
    }
    assert api_methods == {"get"}
    assert server.client.post(f"{API}/auth/login", json={}).status_code in {404, 405}

    # Nobody here holds a projection's runner lock: another process may take each one.
    for projection_class in PROJECTIONS:
        lock = FileRunnerLock(lock_file_path(str(database), projection_class.name))
        assert lock.try_acquire(), projection_class.name
        lock.release()
    lag = samples(server.client.get("/metrics").text, "prep_es_projection_lag_events")
    assert set(lag.values()) == {3}  # the admin's user, email claim and account
    assert server.stop() == 0, server.log()
    assert "uvicorn.access" not in server.log()
