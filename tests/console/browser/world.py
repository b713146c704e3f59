"""The console's world for the browser tests: the demo's marketplace loaded by ``prep-es
demo`` into a fresh store, then a real ``prep-es serve`` over it, plus a few things made
through the HTTP API for the flows to act on (so that the demo's own pending kitchen and
certificates stay on the queues for the screenshots)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from prep_es.demo import DEMO_ADMIN_EMAIL, DEMO_EMAIL_DOMAIN, DEMO_PASSWORD
from tests.support import master_key_environment
from tests.waiting import wait_until

API: Final = "/api/v1"
JWT_SECRET: Final = "browser-test-secret-T4kq9Wm2Zr7Lx5Cv8Nb3Hd6Jp1Fs0Gy"
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 15.0
REQUEST_TIMEOUT_S: Final = 30.0
DEMO_TIMEOUT_S: Final = 180.0
CATCH_UP_TIMEOUT_S: Final = 60.0
DOCUMENT_SHA256: Final = "cd" * 32
LOS_ANGELES_CERTIFICATES: Final = (
    "business_license",
    "fire_inspection",
    "health_permit",
    "liability_insurance",
)
"""What the packaged rules require of a Los Angeles kitchen before it may be approved."""

ANALYST_EMAIL: Final = f"analyst@{DEMO_EMAIL_DOMAIN}"
HOST_EMAIL: Final = f"maria.gonzalez@{DEMO_EMAIL_DOMAIN}"
CUSTOMER_EMAIL: Final = f"priya.raman@{DEMO_EMAIL_DOMAIN}"
ADMIN_EMAIL: Final = DEMO_ADMIN_EMAIL
PASSWORD: Final = DEMO_PASSWORD

KITCHEN_TO_APPROVE: Final = "Browser Approval Kitchen"
KITCHEN_LEFT_PENDING: Final = "Browser Spare Kitchen"
KITCHEN_WITH_A_CERTIFICATE: Final = "Browser Draft Kitchen"
CERTIFICATE_TO_REJECT: Final = "BRW-HP-2099-0001"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_environment(database_url: str, **variables: str) -> dict[str, str]:
    """This process's environment without its ``PREP_ES_*`` variables (the shell running
    the tests must not leak in), plus the store's and ``variables``."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("PREP_ES_") and name != "PROMETHEUS_MULTIPROC_DIR"
    }
    return (
        inherited
        | {"PREP_ES_DATABASE_URL": database_url, "PREP_ES_JWT_SECRET": JWT_SECRET}
        | master_key_environment(database_url)
        | variables
    )


def load_demo(database_url: str, workdir: Path, **variables: str) -> None:
    """``prep-es demo`` into the store at ``database_url``, as an operator would."""
    completed = subprocess.run(
        [sys.executable, "-m", "prep_es.cli", "demo"],
        cwd=workdir,
        env=process_environment(database_url, **variables),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@dataclass
class Served:
    """A ``prep-es serve`` process on a free port, and an HTTP client of its API."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_healthy(self) -> bool:
        assert self.process.poll() is None, f"the server exited:\n{self.log()}"
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(database_url: str, workdir: Path, **variables: str) -> Served:
    """A healthy ``prep-es serve`` over ``database_url`` (its log in ``workdir``)."""
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prep_es.cli", "serve", "--port", str(port),
             "--no-access-log"],
            cwd=workdir,
            env=process_environment(database_url, **variables),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
    served = Served(process=process, port=port, log_path=log_path)
    try:
        wait_until(served.is_healthy, START_TIMEOUT_S, lambda: f"a healthy server:\n{served.log()}")
    except BaseException:
        served.stop()
        raise
    return served


@dataclass(frozen=True)
class ApiUser:
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class ConsoleWorld:
    """One backend's running console and what the tests look for in it."""

    backend: str
    served: Served
    admin: ApiUser
    analyst: ApiUser
    kitchen_to_approve_id: str = ""
    kitchen_left_pending_id: str = ""
    draft_kitchen_id: str = ""
    cancelled_booking_id: str = ""
    cancel_version: int = 0

    @property
    def url(self) -> str:
        return self.served.url

    def console_url(self, path: str) -> str:
        return f"{self.served.url}/console{path}"

    # --- the API, as a client sees it -------------------------------------------------

    def ok(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, (response.request.url, response.text)
        return response.json()

    def get(self, path: str, user: ApiUser, min_position: int = 0, **params: Any) -> Any:
        """``path``'s answer, once its read models have reached ``min_position``."""
        headers = {**user.headers, "X-Prep-Min-Position": str(min_position)}
        return self.ok(self.served.client.get(API + path, headers=headers, params=params))

    def post(self, path: str, user: ApiUser, status: int = 200, **body: Any) -> Any:
        return self.ok(
            self.served.client.post(API + path, headers=user.headers, json=body or None), status
        )

    def log_in(self, email: str) -> ApiUser:
        token = self.ok(
            self.served.client.post(
                f"{API}/auth/login", json={"email": email, "password": PASSWORD}
            )
        )
        return ApiUser(email=email, token=token["access_token"])

    def events(self, aggregate_id: str) -> list[dict[str, Any]]:
        """The aggregate's events as the API's time travel gives them (a page is enough:
        the aggregates the tests open have a handful)."""
        page = self.get(f"/admin/aggregates/{aggregate_id}/events", self.admin, limit=100)
        items: list[dict[str, Any]] = page["items"]
        assert page["total"] == len(items), page["total"]
        return items

    def kitchen_status(self, kitchen_id: str, min_position: int = 0) -> str:
        status: str = self.get(f"/kitchens/{kitchen_id}", self.admin, min_position)["status"]
        return status

    def caught_up(self) -> bool:
        """Whether every read model has applied every event stored so far."""
        projections = self.get("/admin/projections", self.admin)["items"]
        return bool(projections) and all(
            item["status"] == "running" and item["lag_events"] == 0 for item in projections
        )

    def wait_until_caught_up(self) -> None:
        wait_until(
            self.caught_up,
            CATCH_UP_TIMEOUT_S,
            lambda: f"the read models to catch up: {self.get('/admin/projections', self.admin)}",
            check_interval_s_max=0.1,
        )

    def revenue(self, first: date, last: date, granularity: str = "day") -> dict[str, Any]:
        """``GET /analytics/revenue`` for that range, with the analyst's token."""
        series: dict[str, Any] = self.get(
            "/analytics/revenue",
            self.analyst,
            **{"from": first.isoformat(), "to": last.isoformat(), "granularity": granularity},
        )
        return series

    # --- what the flows act on -------------------------------------------------------

    def draft_kitchen(self, host: ApiUser, name: str) -> str:
        kitchen = self.post(
            "/kitchens",
            host,
            201,
            name=name,
            description="A kitchen the browser tests review.",
            city="Los Angeles",
            jurisdiction="los_angeles",
            address="100 Test Ave, Los Angeles, CA 90012",
            hourly_rate="48.00",
            capacity=8,
            amenities=["convection oven", "prep tables"],
            instant_book=False,
        )
        kitchen_id: str = kitchen["id"]
        return kitchen_id

    def attach_certificate(self, host: ApiUser, kitchen_id: str, kind: str, number: str) -> str:
        today = datetime.now(UTC).date()
        certificate = self.post(
            f"/kitchens/{kitchen_id}/certificates",
            host,
            201,
            kind=kind,
            number=number,
            issued_on=(today - timedelta(days=300)).isoformat(),
            expires_on=date(today.year + 3, 12, 31).isoformat(),
            document_sha256=DOCUMENT_SHA256,
        )
        certificate_id: str = certificate["id"]
        return certificate_id

    def kitchen_waiting_for_review(self, host: ApiUser, name: str) -> str:
        """A kitchen with every certificate verified, submitted: approvable."""
        kitchen_id = self.draft_kitchen(host, name)
        for kind in LOS_ANGELES_CERTIFICATES:
            number = f"BRW-{kind[:4].upper()}-{kitchen_id[:8]}"
            certificate_id = self.attach_certificate(host, kitchen_id, kind, number)
            self.post(
                f"/admin/kitchens/{kitchen_id}/certificates/{certificate_id}/verify", self.admin
            )
        submitted = self.post(f"/kitchens/{kitchen_id}/submit", host)
        assert submitted["status"] == "pending_review", submitted
        return kitchen_id

    def prepare(self) -> None:
        """What the flows act on, made through the API; then every read model caught up."""
        host = self.log_in(HOST_EMAIL)
        self.kitchen_to_approve_id = self.kitchen_waiting_for_review(host, KITCHEN_TO_APPROVE)
        self.kitchen_left_pending_id = self.kitchen_waiting_for_review(host, KITCHEN_LEFT_PENDING)
        self.draft_kitchen_id = self.draft_kitchen(host, KITCHEN_WITH_A_CERTIFICATE)
        self.attach_certificate(host, self.draft_kitchen_id, "health_permit", CERTIFICATE_TO_REJECT)
        self.wait_until_caught_up()
        cancelled = self.get("/bookings", self.admin, status="cancelled")["items"]
        assert cancelled, "the demo has cancelled bookings"
        self.cancelled_booking_id = cancelled[0]["id"]
        [cancel] = [
            event
            for event in self.events(self.cancelled_booking_id)
            if event["type"].endswith("BookingCancelled")
        ]
        self.cancel_version = cancel["version"]


def open_world(backend: str, database_url: str, workdir: Path, **variables: str) -> ConsoleWorld:
    """The demo loaded into ``database_url``, served, and the flows' data made."""
    load_demo(database_url, workdir, **variables)
    served = serve(database_url, workdir, **variables)
    try:
        client = served.client
        tokens = {}
        for email in (ADMIN_EMAIL, ANALYST_EMAIL):
            answer = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            tokens[email] = ApiUser(email=email, token=answer.json()["access_token"])
        world = ConsoleWorld(
            backend=backend,
            served=served,
            admin=tokens[ADMIN_EMAIL],
            analyst=tokens[ANALYST_EMAIL],
        )
        world.prepare()
    except BaseException:
        served.stop()
        raise
    return world


def stop_world(world: ConsoleWorld) -> None:
    world.served.stop()
    if world.served.process.returncode not in (0, -signal.SIGTERM):
        pytest.fail(f"the server exited {world.served.process.returncode}:\n{world.served.log()}")
