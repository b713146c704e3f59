"""``prep-es serve`` as a real process, as an attacker on the same machine sees it:
forwarded headers believed only from ``PREP_ES_TRUSTED_PROXIES``, and a worker's memory
bounded while unknown emails are sprayed at the login."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from prep_es.server import proxy_options
from prep_es.store.settings import Settings, SettingsError, load_settings
from tests.cli.test_serve import API, PASSWORD, Server, start_server

__all__ = ["start_server"]  # the fixture, shared with the serve tests

WORKER_RSS_BUDGET_KIB = 200 * 1024
SPRAY_LOGINS = 60


def wrong_logins(server: Server, email: str, forwarded_for: list[str]) -> list[int]:
    """One wrong login per ``X-Forwarded-For`` value, in order; their statuses."""
    statuses = []
    for address in forwarded_for:
        response = server.client.post(
            f"{API}/auth/login",
            json={"email": email, "password": "wrong password!"},
            headers={"X-Forwarded-For": address},
        )
        statuses.append(response.status_code)
    return statuses


def test_forwarded_headers_from_loopback_are_ignored_by_default(
    start_server: Any, tmp_path: Path
) -> None:
    server: Server = start_server(f"sqlite:///{tmp_path / 'prep_es.db'}")
    email = "target@example.com"
    server.register("customer", email)
    rotating = [f"198.51.100.{index}" for index in range(1, 8)]
    # Every attempt is from 127.0.0.1, whatever the header claims.
    assert wrong_logins(server, email, rotating) == [401] * 5 + [429] * 2


def test_forwarded_headers_from_a_trusted_proxy_name_the_client(
    start_server: Any, tmp_path: Path
) -> None:
    server: Server = start_server(
        f"sqlite:///{tmp_path / 'prep_es.db'}", PREP_ES_TRUSTED_PROXIES="10.1.2.3, 127.0.0.0/8"
    )
    email = "target@example.com"
    server.register("customer", email)
    rotating = [f"198.51.100.{index}" for index in range(1, 8)]
    assert wrong_logins(server, email, rotating) == [401] * 7  # seven clients
    assert wrong_logins(server, email, ["203.0.113.9"] * 7) == [401] * 5 + [429] * 2
    # A client's own header is not believed: the proxy's view of the peer is.
    forged_then_proxied = "198.51.100.77, 203.0.113.9"
    assert wrong_logins(server, email, [forged_then_proxied]) == [429]


def test_proxy_options_trust_only_the_configured_proxies() -> None:
    assert proxy_options(Settings()) == {"proxy_headers": False, "forwarded_allow_ips": []}
    trusted = Settings(trusted_proxies="10.0.0.1, 10.0.0.0/8,::1")
    assert proxy_options(trusted) == {
        "proxy_headers": True,
        "forwarded_allow_ips": ["10.0.0.1", "10.0.0.0/8", "::1"],
    }


@pytest.mark.parametrize("value", ["*", "not-an-address", "10.0.0.1,,example.com"])
def test_trusted_proxies_must_be_addresses_or_networks(value: str) -> None:
    with pytest.raises(SettingsError, match="PREP_ES_TRUSTED_PROXIES"):
        load_settings({"PREP_ES_TRUSTED_PROXIES": value})


def peak_rss_kib(pid: int) -> int:
    """The process's resident set high-water mark (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_spray_of_unknown_emails_keeps_the_worker_within_its_memory_budget(
    start_server: Any, tmp_path: Path
) -> None:
    """The production hash parameters, every login allowed as far as the hashing:
    each check's memory is held on the few hashing threads only."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    server: Server = start_server(
        f"sqlite:///{tmp_path / 'prep_es.db'}",
        PREP_ES_LOGIN_FAILURES_PER_CLIENT_MAX="100000",
        PREP_ES_PASSWORD_HASH_WAIT_S="30",
    )
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def log_in() -> None:
        body = {"email": f"nobody-{uuid4().hex}@example.com", "password": PASSWORD}
        with httpx.Client(base_url=server.url, timeout=120) as client:
            status = client.post(f"{API}/auth/login", json=body).status_code
        with lock:
            statuses[status] += 1

    spray = [threading.Thread(target=log_in) for _ in range(SPRAY_LOGINS)]
    for thread in spray:
        thread.start()
    for thread in spray:
        thread.join()
    assert statuses == Counter({401: SPRAY_LOGINS})
    peak_kib = peak_rss_kib(server.process.pid)
    assert peak_kib < WORKER_RSS_BUDGET_KIB, f"peak RSS {peak_kib // 1024} MiB"
