"""The payment methods the sandbox knows: Stripe's test ids, and one of its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aggregates.payment_provider import PaymentStatus


@dataclass(frozen=True)
class SandboxPaymentMethod:
    """What becomes of a payment made with one test payment method."""

    outcome: PaymentStatus
    failure_code: str | None = None
    settles_after_delay: bool = False
    """``processing`` at first, ``succeeded`` ``sandbox_settle_delay_s`` later."""


TEST_PAYMENT_METHODS: Final[Mapping[str, SandboxPaymentMethod]] = {
    "pm_card_visa": SandboxPaymentMethod(PaymentStatus.SUCCEEDED),
    "pm_card_mastercard": SandboxPaymentMethod(PaymentStatus.SUCCEEDED),
    "pm_card_amex": SandboxPaymentMethod(PaymentStatus.SUCCEEDED),
    "pm_card_chargeDeclined": SandboxPaymentMethod(PaymentStatus.FAILED, "card_declined"),
    "pm_card_chargeDeclinedInsufficientFunds": SandboxPaymentMethod(
        PaymentStatus.FAILED, "insufficient_funds"
    ),
    "pm_card_chargeDeclinedExpiredCard": SandboxPaymentMethod(PaymentStatus.FAILED, "expired_card"),
    "pm_sandbox_succeeds_after_delay": SandboxPaymentMethod(
        PaymentStatus.SUCCEEDED, settles_after_delay=True
    ),
}
"""The payment methods the sandbox knows, and what becomes of a payment with each:

=========================================  ==============================================
``pm_card_visa``, ``pm_card_mastercard``,  succeeded at once
``pm_card_amex``
``pm_card_chargeDeclined``                 failed, ``card_declined``
``pm_card_chargeDeclinedInsufficientFunds`` failed, ``insufficient_funds``
``pm_card_chargeDeclinedExpiredCard``      failed, ``expired_card``
``pm_sandbox_succeeds_after_delay``        processing, then succeeded after
                                           ``PREP_ES_SANDBOX_SETTLE_DELAY_S``
any other                                  failed, ``payment_method_unknown``
=========================================  ==============================================

The ``pm_card_*`` ids are Stripe's own test payment methods, so a client written against
the sandbox works unchanged against Stripe in test mode."""

UNKNOWN_PAYMENT_METHOD: Final = SandboxPaymentMethod(PaymentStatus.FAILED, "payment_method_unknown")
