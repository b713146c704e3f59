"""A Stripe API to test against: localstripe, a stateful emulator, run as a real server.

``localstripe_url`` starts one for the session on a free port and waits until it answers.
Without localstripe installed (it comes with the ``dev`` extra) its tests are skipped with
a warning in the summary — unless ``CI=true``, where that is a failure.

localstripe ignores idempotency keys, which Stripe honours; ``idempotent_stripe_url``
puts in front of it a proxy that does what Stripe does with them: a POST that comes again
under a key gets the first answer again, and under the same key with other parameters an
``idempotency_error``. It also records the keys it saw.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import _is_ci
from tests.waiting import wait_until

TEST_SECRET_KEY = "sk_test_prep_es_localstripe"
STARTUP_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
PROBE_TIMEOUT_S = 2

_unavailable_reasons: list[str] = []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    request = urllib.request.Request(
        f"{url}/v1/payment_intents", headers={"Authorization": f"Bearer {TEST_SECRET_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a localstripe server of this session's own, with an empty store."""
    if importlib.util.find_spec("localstripe") is None:
        reason = "localstripe is not installed (pip install -e '.[dev]')"
        if _is_ci():
            pytest.fail(f"{reason} (CI=true: the Stripe adapter tests must run)", pytrace=False)
        _unavailable_reasons.append(reason)
        pytest.skip(reason)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: server.poll() is not None or _answers(url),
            STARTUP_TIMEOUT_S,
            lambda: f"localstripe answering at {url}:\n{log_path.read_text()}",
        )
        if server.poll() is not None:
            pytest.fail(f"localstripe exited ({server.returncode}):\n{log_path.read_text()}")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(STOP_TIMEOUT_S)


@dataclass
class IdempotentStripe:
    """A proxy to localstripe that replays answers by idempotency key, as Stripe does."""

    url: str
    keys_seen: list[str] = field(default_factory=list)


@dataclass
class _Answer:
    request_body: bytes
    status: int
    content_type: str
    body: bytes


def _replaying_handler(
    upstream: str, answers: dict[str, _Answer], keys_seen: list[str], lock: threading.Lock
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._forward(b"")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            key = self.headers.get("Idempotency-Key")
            if key is None:
                self._forward(body)
                return
            with lock:
                keys_seen.append(key)
                answer = answers.get(key)
                if answer is None:
                    answer = answers[key] = self._ask_upstream(body)
            if answer.request_body != body:
                error = {
                    "error": {
                        "type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the "
                        "same parameters they were first used with.",
                    }
                }
                self._send(_Answer(body, 400, "application/json", json.dumps(error).encode()))
                return
            self._send(answer)

        def _forward(self, body: bytes) -> None:
            self._send(self._ask_upstream(body))

        def _ask_upstream(self, body: bytes) -> _Answer:
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() in {"authorization", "content-type", "stripe-version"}
            }
            request = urllib.request.Request(
                upstream + self.path,
                data=body if self.command == "POST" else None,
                headers=headers,
                method=self.command,
            )
            try:
                with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S * 5) as response:
                    return _Answer(
                        body, response.status, response.headers["Content-Type"], response.read()
                    )
            except urllib.error.HTTPError as error:
                return _Answer(
                    body, error.code, error.headers.get("Content-Type", ""), error.read()
                )

        def _send(self, answer: _Answer) -> None:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test output has no room for an access log

    return Handler


@pytest.fixture
def idempotent_stripe(localstripe_url: str) -> Iterator[IdempotentStripe]:
    """localstripe behind a proxy that honours idempotency keys (for one test)."""
    keys_seen: list[str] = []
    handler = _replaying_handler(localstripe_url, {}, keys_seen, threading.Lock())
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as proxy:
        serving = threading.Thread(
            target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        serving.start()
        try:
            yield IdempotentStripe(f"http://127.0.0.1:{proxy.server_address[1]}", keys_seen)
        finally:
            proxy.shutdown()
            serving.join()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reason in dict.fromkeys(_unavailable_reasons):
        terminalreporter.write_sep("!", "Stripe adapter tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(reason, red=True)
