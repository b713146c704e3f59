"""A state machine over money: customers top up (cards that succeed, are declined, or
settle late), book and cancel late (the host earns), hosts are paid out (to destinations
that pay or fail), customers withdraw to their cards; and the sandbox's notifications
reach the webhook handling in any order, any number of times, or not yet — each one
re-signed when delivered, as a provider signs each attempt.

After every step:

1. no money is made: the sum of every user's balance never exceeds what the provider
   confirmed it received minus what it paid out;
2. no top-up is credited twice, and none the provider did not confirm;
3. no payout is both posted and voided, nor either twice;
4. no user balance is negative.

And whenever every notification sent so far has been delivered at least once
(``deliver_everything``), the ledger is what the provider says: reconciliation finds no
difference, whatever the order and the duplicates were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from contextlib import suppress
from datetime import timedelta
from typing import ClassVar
from uuid import UUID

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from aggregates.account import Account, account_id_for
from aggregates.errors import DomainError
from aggregates.payment_provider import PaymentStatus, TransferStatus
from commands.bookings import BookingAction, CancelBooking, RequestBooking
from commands.context import Actor
from commands.payouts import RequestPayout, SetPayoutDestination
from commands.top_ups import RequestTopUp
from prep_es.payments.sandbox import SandboxProvider
from prep_es.services.reconciliation import reconcile
from tests.properties.conftest import StoreFactory
from tests.support import (
    MutableClock,
    as_actor,
    create_user,
    open_test_runtime,
    publish_compliant_kitchen,
)

CUSTOMERS = 2
PAYMENT_METHODS = (
    "pm_card_visa",
    "pm_card_chargeDeclined",
    "pm_sandbox_succeeds_after_delay",
)
SETTLE_DELAY_S = 30.0
NOTIFICATION_DELAY_S = 1.0
AMOUNTS_CENTS = st.integers(min_value=1, max_value=50_000)


class MoneyMachine(RuleBasedStateMachine):
    stores: ClassVar[StoreFactory]

    def __init__(self) -> None:
        super().__init__()
        self.clock = MutableClock()
        self.url = self.stores.create()
        self.runtime = open_test_runtime(
            self.url,
            self.clock,
            sandbox_notification_delay_s=NOTIFICATION_DELAY_S,
            sandbox_settle_delay_s=SETTLE_DELAY_S,
            sandbox_unruly_deliveries=True,
            sandbox_seed=0,  # hypothesis replays an example: the sandbox must too
        )
        sandbox = self.runtime.payment_provider.sandbox
        assert sandbox is not None
        self.sandbox: SandboxProvider = sandbox
        self.inbox: list[bytes] = []
        """Every notification the sandbox sent so far, delivered or not."""
        self.undelivered: set[int] = set()
        self.customers: list[Actor] = []
        self.host: Actor | None = None
        self.kitchen_id: UUID | None = None

    def teardown(self) -> None:
        self.runtime.close()
        self.stores.dispose(self.url)

    @initialize()
    def open_marketplace(self) -> None:
        admin = create_user(self.runtime, "admin", "admin@example.com")
        self.host = create_user(self.runtime, "host", "host@example.com")
        self.customers = [
            create_user(self.runtime, "customer", f"customer{n}@example.com")
            for n in range(CUSTOMERS)
        ]
        self.kitchen_id = publish_compliant_kitchen(self.runtime, self.host, admin)

    # --- what people do -----------------------------------------------------------

    # Refusals are fine here (not enough money, no destination...): the rules under
    # test are the invariants, and a refused command changes nothing.

    @rule(
        customer=st.integers(0, CUSTOMERS - 1),
        amount=AMOUNTS_CENTS,
        method=st.sampled_from(PAYMENT_METHODS),
    )
    def top_up(self, customer: int, amount: int, method: str) -> None:
        with suppress(DomainError):
            self.runtime.commands.top_ups.request_top_up(
                RequestTopUp(amount_cents=amount, payment_method=method),
                as_actor(self.customers[customer]),
            )

    @rule(customer=st.integers(0, CUSTOMERS - 1), hours=st.integers(1, 3))
    def book_and_cancel_late(self, customer: int, hours: int) -> None:
        """A booking six hours out, confirmed and cancelled by the customer at once: all
        of it is captured, and the host earns."""
        assert self.kitchen_id is not None and self.host is not None
        now = self.clock()
        start = (now + timedelta(hours=6)).replace(second=0, microsecond=0)
        start -= timedelta(minutes=start.minute % 15)
        bookings = self.runtime.commands.bookings
        try:
            booking = bookings.request_booking(
                RequestBooking(
                    kitchen_id=self.kitchen_id,
                    start_time=start,
                    end_time=start + timedelta(hours=hours),
                    guests=2,
                ),
                as_actor(self.customers[customer]),
            ).result
        except DomainError:
            return
        bookings.confirm_booking(BookingAction(booking_id=booking.id), as_actor(self.host))
        bookings.cancel_booking(
            CancelBooking(booking_id=booking.id, reason=None), as_actor(self.customers[customer])
        )

    @rule(amount=AMOUNTS_CENTS, failing=st.booleans())
    def pay_out(self, amount: int, failing: bool) -> None:
        assert self.host is not None
        payouts = self.runtime.commands.payouts
        destination = "fail-account" if failing else "bank-account"
        payouts.set_payout_destination(
            SetPayoutDestination(destination=destination), as_actor(self.host)
        )
        with suppress(DomainError):
            payouts.request_payout(RequestPayout(amount_cents=amount), as_actor(self.host))

    @rule(customer=st.integers(0, CUSTOMERS - 1), amount=AMOUNTS_CENTS)
    def withdraw(self, customer: int, amount: int) -> None:
        with suppress(DomainError):
            self.runtime.commands.payouts.request_withdrawal(
                RequestPayout(amount_cents=amount), as_actor(self.customers[customer])
            )

    # --- what the provider does ------------------------------------------------------

    @rule(seconds=st.sampled_from([1.0, 5.0, SETTLE_DELAY_S + 1]))
    def time_passes(self, seconds: float) -> None:
        """The provider sends what became due: into the inbox, not yet delivered."""
        self.clock.advance(timedelta(seconds=seconds))

        def keep(payload: bytes, headers: Mapping[str, str]) -> None:
            self.undelivered.add(len(self.inbox))
            self.inbox.append(payload)

        self.sandbox.deliver_due(keep)

    @precondition(lambda self: self.inbox)
    @rule(data=st.data())
    def deliver_one(self, data: st.DataObject) -> None:
        """Any notification sent so far, delivered or not: out of order, or again."""
        index = data.draw(st.integers(0, len(self.inbox) - 1))
        self._deliver(index)

    @rule()
    def deliver_everything(self) -> None:
        for index in sorted(self.undelivered):
            self._deliver(index)
        if self.sandbox.undelivered_count() == 0:
            differences = reconcile(self.runtime.app, self.sandbox).differences
            assert differences == [], differences

    def _deliver(self, index: int) -> None:
        payload = self.inbox[index]
        headers = self.sandbox.notification_headers(payload)
        self.runtime.receive_notification("sandbox", payload, headers, "machine")
        self.undelivered.discard(index)

    # --- invariants --------------------------------------------------------------------

    def _accounts(self) -> list[Account]:
        users = [*self.customers, *([self.host] if self.host else [])]
        accounts = []
        for user in users:
            found: object = self.runtime.app.repository.get(account_id_for(user.user_id))
            assert isinstance(found, Account)
            accounts.append(found)
        return accounts

    @invariant()
    def no_money_is_made(self) -> None:
        confirmed = sum(
            payment.amount_cents
            for payment in self.sandbox.payments_since(None)
            if payment.status == PaymentStatus.SUCCEEDED
        )
        paid_out = sum(
            transfer.amount_cents
            for transfer in self.sandbox.transfers_since(None)
            if transfer.status == TransferStatus.PAID
        )
        accounts = self._accounts()
        assert sum(account.balance_cents for account in accounts) <= confirmed - paid_out
        assert all(account.balance_cents >= account.held_cents >= 0 for account in accounts)

    @invariant()
    def money_moves_once(self) -> None:
        credited: Counter[UUID] = Counter()
        posted: Counter[UUID] = Counter()
        voided: Counter[UUID] = Counter()
        for notification in self.runtime.app.recorder.select_notifications(0, 100_000):
            event = self.runtime.app.mapper.to_domain_event(notification)
            if isinstance(event, Account.TopUpCredited):
                credited[event.top_up_id] += 1
            elif isinstance(event, Account.PayoutPosted):
                posted[event.payout_id] += 1
            elif isinstance(event, Account.PayoutVoided):
                voided[event.payout_id] += 1
        assert all(count == 1 for count in credited.values()), credited
        succeeded = {
            payment.top_up_id
            for payment in self.sandbox.payments_since(None)
            if payment.status == PaymentStatus.SUCCEEDED
        }
        assert set(credited) <= succeeded
        assert all(count == 1 for count in [*posted.values(), *voided.values()])
        assert not set(posted) & set(voided)


def test_money_enters_only_from_the_provider_and_moves_once(fresh_stores: StoreFactory) -> None:
    machine = type(
        f"MoneyMachineOn{fresh_stores.backend.title()}", (MoneyMachine,), {"stores": fresh_stores}
    )
    run_state_machine_as_test(machine)
