"""A provider that does not answer holds at most ``calls_max`` requests of a process: the
next asks are refused at once (503 ``payment_provider_busy``), whatever else the process
serves keeps its threads. Shown against a real server that accepts and never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from uuid import uuid4

import pytest

from aggregates.payment_provider import PaymentProviderError
from prep_es.payments.bounded import BoundedPaymentProvider
from prep_es.payments.stripe_provider import StripeProvider
from tests.waiting import wait_until

WAIT_S = 30.0


class SilentServer:
    """Accepts connections and never answers, until closed."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        """Refuse connections from now on and drop those accepted (idempotent)."""
        if self._listener.fileno() != -1:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self._listener.close()
            self._thread.join()
        for connection in self.accepted:
            if connection.fileno() != -1:
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_a_silent_provider_holds_at_most_its_calls(silent_server: SilentServer) -> None:
    stripe = StripeProvider(
        "sk_test_bounded",
        "whsec_bounded",
        api_base=f"http://127.0.0.1:{silent_server.port}",
        tolerance_s=300,
    )
    bounded = BoundedPaymentProvider(stripe, calls_max=1, wait_s=0.05)
    outcomes: list[BaseException | None] = []

    def ask() -> None:
        try:
            bounded.create_payment(uuid4(), 1000, "pm_card_visa")
            outcomes.append(None)
        except PaymentProviderError as error:
            outcomes.append(error)

    waiting = threading.Thread(target=ask)
    waiting.start()
    wait_until(lambda: silent_server.accepted, WAIT_S, "the first call to reach the provider")
    with pytest.raises(PaymentProviderError) as refused:
        bounded.create_payment(uuid4(), 1000, "pm_card_visa")
    assert refused.value.code == "payment_provider_busy"
    silent_server.close()  # the provider goes away: the waiting call ends, refused too
    waiting.join(WAIT_S)
    assert not waiting.is_alive()
    assert isinstance(outcomes[0], PaymentProviderError)
    assert outcomes[0].code == "payment_provider_unavailable"
