"""Which payment provider a deployment uses, opened from its settings."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aggregates.payment_provider import PaymentProvider
from prep_es.payments.sandbox import SandboxProvider
from prep_es.payments.stripe_provider import StripeProvider
from prep_es.store.settings import Settings


@dataclass(frozen=True)
class OpenPaymentProvider:
    """The configured provider; ``sandbox`` is the same object when it is the sandbox,
    which also delivers its own notifications (see ``SandboxProvider.start_delivering``)."""

    provider: PaymentProvider
    sandbox: SandboxProvider | None

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()


def open_payment_provider(settings: Settings, clock: Callable[[], datetime]) -> OpenPaymentProvider:
    if settings.payments_provider == "stripe":
        return OpenPaymentProvider(StripeProvider.from_settings(settings), sandbox=None)
    sandbox = SandboxProvider.open(settings, clock, rng=random.Random(settings.sandbox_seed))
    return OpenPaymentProvider(sandbox, sandbox=sandbox)
