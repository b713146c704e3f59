"""Top-up commands: a customer pays the provider, and the account is credited when the
provider confirms.

A top-up is two commands. :meth:`TopUpCommands.request_top_up` records the top-up (and
counts it towards the day's limit) under the client's idempotency key, before the
provider is asked anything; :meth:`TopUpCommands.submit_payment` then asks the provider
for the payment, with the top-up's id as the provider's idempotency key, and records its
answer. A crash or a provider outage between the two leaves a top-up ``requires_payment``,
which the same request sent again (same key) submits: nothing is paid twice, nothing paid
is unknown. The credit itself comes later, from the provider's signed notification
(``commands.payment_notifications``).
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from aggregates.account import TopUpLimits
from aggregates.errors import InvalidRequest
from aggregates.payment_provider import PaymentProvider
from aggregates.top_up import TopUp, TopUpStatus
from commands.clock import Clock
from commands.context import CommandContext, require_role
from commands.processor import AggregateTarget, CommandProcessor, Executed
from commands.unit_of_work import UnitOfWork

PAYMENT_METHOD_PATTERN: Final = re.compile(r"pm_[A-Za-z0-9_]{1,250}")
"""A provider's payment method id, as its client library hands it out."""


class RequestTopUp(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount_cents: int
    payment_method: str


class TopUpState(BaseModel):
    id: UUID
    owner_id: UUID
    amount_cents: int
    payment_method: str
    status: TopUpStatus
    payment_reference: str | None
    failure_code: str | None
    provider: str
    test_mode: bool

    @classmethod
    def of(cls, top_up: TopUp, test_mode: bool) -> TopUpState:
        return cls(
            id=top_up.id,
            owner_id=top_up.owner_id,
            amount_cents=top_up.amount_cents,
            payment_method=top_up.payment_method,
            status=top_up.status,
            payment_reference=top_up.payment_reference,
            failure_code=top_up.failure_code,
            provider=top_up.provider,
            test_mode=test_mode,
        )


def check_payment_method(payment_method: str) -> None:
    if PAYMENT_METHOD_PATTERN.fullmatch(payment_method) is None:
        raise InvalidRequest(
            "payment_method is a payment method id from the provider (pm_...); card "
            "numbers never come here",
            code="invalid_payment_method",
            field="payment_method",
        )


class TopUpCommands:
    def __init__(
        self,
        processor: CommandProcessor,
        provider: PaymentProvider,
        clock: Clock,
        limits: TopUpLimits,
    ) -> None:
        self._processor = processor
        self._provider = provider
        self._clock = clock
        self._limits = limits

    def request_top_up(
        self, command: RequestTopUp, context: CommandContext
    ) -> Executed[TopUpState]:
        """Record the top-up and submit its payment; the top-up as it then stands (on a
        retry with the same key too: as it stands now)."""
        started = self.start_top_up(command, context)
        submitted = self.submit_payment(started.result.id, context.follow_up())
        return Executed(
            result=submitted.result, position=submitted.position, replayed=started.replayed
        )

    def start_top_up(self, command: RequestTopUp, context: CommandContext) -> Executed[TopUpState]:
        customer = require_role(context, "customer")
        check_payment_method(command.payment_method)
        test_mode = self._provider.test_mode

        def decide(unit: UnitOfWork) -> TopUpState:
            account = unit.account_of(customer.user_id)
            now = self._clock()
            top_up = TopUp(
                owner_id=customer.user_id,
                amount_cents=command.amount_cents,
                payment_method=command.payment_method,
                provider=self._provider.name,
                requested_at=now,
            )
            day = now.astimezone(UTC).date()
            account.start_top_up(top_up.id, command.amount_cents, day, self._limits)
            unit.add(top_up)
            return TopUpState.of(top_up, test_mode)

        return self._processor.execute("request_top_up", context, command, TopUpState, decide)

    def submit_payment(self, top_up_id: UUID, context: CommandContext) -> Executed[TopUpState]:
        """Ask the provider for the payment of a top-up that has none yet (idempotent at
        the provider by the top-up's id) and record its answer. ``PaymentProviderError``
        when the provider cannot be asked: the top-up waits, ``requires_payment``."""
        test_mode = self._provider.test_mode

        def decide(unit: UnitOfWork) -> TopUpState:
            top_up = unit.get(TopUp, top_up_id, not_found_code="top_up_not_found")
            if top_up.status == TopUpStatus.REQUIRES_PAYMENT:
                payment = self._provider.create_payment(
                    top_up.id, top_up.amount_cents, top_up.payment_method
                )
                top_up.record_payment_created(payment)
            return TopUpState.of(top_up, test_mode)

        return self._processor.execute(
            "submit_top_up_payment",
            context,
            AggregateTarget(aggregate_id=top_up_id),
            TopUpState,
            decide,
        )
