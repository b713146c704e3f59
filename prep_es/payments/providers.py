"""Which payment provider a deployment uses, opened from its settings."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aggregates.payment_provider import PaymentProvider
from prep_es.payments.bounded import BoundedPaymentProvider
from prep_es.payments.sandbox import SandboxProvider
from prep_es.store.settings import Settings


@dataclass(frozen=True)
class OpenPaymentProvider:
    """The configured provider; ``sandbox`` is the sandbox behind it when it is one,
    which also delivers its own notifications (see ``SandboxProvider.start_delivering``)."""

    provider: PaymentProvider
    sandbox: SandboxProvider | None

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()


def open_payment_provider(settings: Settings, clock: Callable[[], datetime]) -> OpenPaymentProvider:
    """The configured provider, its calls bounded per process (see
    ``prep_es.payments.bounded``)."""
    sandbox = None
    provider: PaymentProvider
    if settings.payments_provider == "stripe":
        # Imported only here: the Stripe SDK is some ten megabytes of objects in every
        # process, which lengthened the slowest requests of the sandbox's processes
        # (measured: booking p99 in processes running their projectors).
        from prep_es.payments.stripe_provider import StripeProvider  # noqa: PLC0415

        provider = StripeProvider.from_settings(settings)
    else:
        sandbox = SandboxProvider.open(settings, clock, rng=random.Random(settings.sandbox_seed))
        provider = sandbox
    bounded = BoundedPaymentProvider(
        provider,
        calls_max=settings.payment_provider_calls_max,
        wait_s=settings.payment_provider_wait_s,
    )
    return OpenPaymentProvider(bounded, sandbox=sandbox)
