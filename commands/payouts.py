"""Payout commands: money leaves only through the provider, two-phase.

A host is paid out to their payout destination; a customer withdraws by refunds to the
cards they topped up with, newest top-up first. Either way one command reserves the
amount on the account and records the payouts (under the client's idempotency key),
then :meth:`PayoutCommands.send` hands each to the provider (the payout's id is the
provider's idempotency key) and records its answer. The provider's notification posts
or voids it later (``commands.payment_notifications``). A provider outage between the two
leaves the payout ``pending`` without a transfer: the same request sent again (same key)
sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from aggregates.account import Account
from aggregates.payment_provider import PaymentProvider, TransferMethod
from aggregates.payout import Payout, PayoutStatus
from commands.clock import Clock
from commands.context import CommandContext, require_role
from commands.payment_notifications import settle_payout
from commands.processor import AggregateTarget, CommandProcessor, Executed
from commands.unit_of_work import UnitOfWork


class SetPayoutDestination(BaseModel):
    model_config = ConfigDict(frozen=True)

    destination: str


class RequestPayout(BaseModel):
    model_config = ConfigDict(frozen=True)

    amount_cents: int


class PayoutState(BaseModel):
    id: UUID
    owner_id: UUID
    amount_cents: int
    method: TransferMethod
    status: PayoutStatus
    destination: str | None
    top_up_id: UUID | None
    transfer_reference: str | None
    failure_code: str | None
    provider: str

    @classmethod
    def of(cls, payout: Payout) -> PayoutState:
        return cls(
            id=payout.id,
            owner_id=payout.owner_id,
            amount_cents=payout.amount_cents,
            method=TransferMethod(payout.method),
            status=payout.status,
            destination=payout.destination,
            top_up_id=payout.top_up_id,
            transfer_reference=payout.transfer_reference,
            failure_code=payout.failure_code,
            provider=payout.provider,
        )


class AccountFigures(BaseModel):
    """An account's figures after a command."""

    account_id: UUID
    balance_cents: int
    held_cents: int
    available_cents: int
    payout_destination: str | None

    @classmethod
    def of(cls, account: Account) -> AccountFigures:
        return cls(
            account_id=account.id,
            balance_cents=account.balance_cents,
            held_cents=account.held_cents,
            available_cents=account.available_cents,
            payout_destination=account.payout_destination,
        )


class PayoutsRequested(BaseModel):
    """The payouts one request made (a withdrawal may make several refunds), with the
    account's figures after the amount was reserved."""

    payouts: list[PayoutState]
    account: AccountFigures
    test_mode: bool


class PayoutCommands:
    def __init__(
        self, processor: CommandProcessor, provider: PaymentProvider, clock: Clock
    ) -> None:
        self._processor = processor
        self._provider = provider
        self._clock = clock

    def set_payout_destination(
        self, command: SetPayoutDestination, context: CommandContext
    ) -> Executed[AccountFigures]:
        host = require_role(context, "host")
        self._provider.check_payout_destination(command.destination)

        def decide(unit: UnitOfWork) -> AccountFigures:
            account = unit.account_of(host.user_id)
            account.set_payout_destination(command.destination)
            return AccountFigures.of(account)

        return self._processor.execute(
            "set_payout_destination", context, command, AccountFigures, decide
        )

    def request_payout(
        self, command: RequestPayout, context: CommandContext
    ) -> Executed[PayoutsRequested]:
        host = require_role(context, "host")

        def decide(unit: UnitOfWork) -> PayoutsRequested:
            account = unit.account_of(host.user_id)
            destination = account.check_payout_destination()
            payout = Payout(
                owner_id=host.user_id,
                amount_cents=command.amount_cents,
                method=TransferMethod.PAYOUT.value,
                destination=destination,
                top_up_id=None,
                payment_reference=None,
                provider=self._provider.name,
                requested_at=self._clock(),
            )
            account.reserve_payout(payout.id, command.amount_cents)
            unit.add(payout)
            return self._requested([payout], account)

        return self._request_and_send("request_payout", command, context, decide)

    def request_withdrawal(
        self, command: RequestPayout, context: CommandContext
    ) -> Executed[PayoutsRequested]:
        customer = require_role(context, "customer")

        def decide(unit: UnitOfWork) -> PayoutsRequested:
            account = unit.account_of(customer.user_id)
            payouts = []
            for plan in account.plan_refunds(command.amount_cents):
                payout = Payout(
                    owner_id=customer.user_id,
                    amount_cents=plan.amount_cents,
                    method=TransferMethod.REFUND.value,
                    destination=None,
                    top_up_id=plan.top_up_id,
                    payment_reference=plan.payment_reference,
                    provider=self._provider.name,
                    requested_at=self._clock(),
                )
                account.reserve_refund(payout.id, plan)
                unit.add(payout)
                payouts.append(payout)
            return self._requested(payouts, account)

        return self._request_and_send("request_withdrawal", command, context, decide)

    def _requested(self, payouts: list[Payout], account: Account) -> PayoutsRequested:
        return PayoutsRequested(
            payouts=[PayoutState.of(payout) for payout in payouts],
            account=AccountFigures.of(account),
            test_mode=self._provider.test_mode,
        )

    def _request_and_send(
        self,
        command_name: str,
        command: RequestPayout,
        context: CommandContext,
        decide: Callable[[UnitOfWork], PayoutsRequested],
    ) -> Executed[PayoutsRequested]:
        """Record the payouts ``decide`` makes, then hand the provider each one it has not
        taken yet (a replayed request sends what an outage left unsent)."""
        requested = self._processor.execute(
            command_name, context, command, PayoutsRequested, decide
        )
        position = requested.position
        payouts = []
        for requested_payout in requested.result.payouts:
            payout = requested_payout
            if payout.status == PayoutStatus.PENDING and payout.transfer_reference is None:
                sent = self.send(payout.id, context.follow_up())
                payout, position = sent.result, max(position, sent.position)
            payouts.append(payout)
        result = requested.result.model_copy(update={"payouts": payouts})
        return Executed(result=result, position=position, replayed=requested.replayed)

    def send(self, payout_id: UUID, context: CommandContext) -> Executed[PayoutState]:
        """Hand a pending payout the provider has not taken yet to the provider and
        record its answer (a refusal voids it back to the account at once).
        ``PaymentProviderError`` when the provider cannot be asked: it stays pending."""

        def decide(unit: UnitOfWork) -> PayoutState:
            payout = unit.get(Payout, payout_id, not_found_code="payout_not_found")
            if payout.is_pending and payout.transfer_reference is None:
                if payout.method == TransferMethod.REFUND:
                    assert payout.payment_reference is not None
                    transfer = self._provider.refund_payment(
                        payout.id, payout.payment_reference, payout.amount_cents
                    )
                else:
                    assert payout.destination is not None
                    transfer = self._provider.send_payout(
                        payout.id, payout.destination, payout.amount_cents
                    )
                settle_payout(unit, payout, payout.record_transfer_created(transfer))
            return PayoutState.of(payout)

        return self._processor.execute(
            "send_payout", context, AggregateTarget(aggregate_id=payout_id), PayoutState, decide
        )
