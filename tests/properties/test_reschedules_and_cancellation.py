"""Random sequences of reschedules of one booking, at random times to random windows,
then a cancellation: rescheduling can never lower the fee a cancellation would have
cost (SPEC §3).

Before each reschedule — refused or not — the test notes what the customer's direct
cancellation at that moment would have captured by its notice alone. The final
cancellation by the customer captures at least every one of those, and at least what
its own notice calls for; exactly the greater of them, in fact, and never more than the
booking's price. A reschedule to a window priced below the fee already due is refused.
A cancellation by the host captures nothing, whatever came before. The money is
checked from the notification log (``ledger.py``): the ledger sums to zero and the
booking's hold is placed once, adjusted, and settled exactly once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from hypothesis import given
from hypothesis import strategies as st

from aggregates.account import Account, account_id_for
from aggregates.errors import DomainError
from commands.bookings import CancelBooking, RequestBooking, RescheduleBooking
from commands.context import Actor
from prep_es.services.runtime import Runtime
from tests.properties.conftest import StoreFactory
from tests.properties.ledger import LedgerFold
from tests.properties.oracle import (
    QUARTER,
    expected_customer_cancellation_capture_cents,
    expected_price_cents,
    window_refusals,
)
from tests.support import (
    START_OF_TESTS,
    MutableClock,
    as_actor,
    create_user,
    open_test_runtime,
    publish_compliant_kitchen,
    top_up,
)

JURISDICTION = "los_angeles"
GUESTS = 2
TOP_UP_CENTS = 1_000_000  # more than any window's price: funds never refuse
FIRST_LOCAL_START = time(8, 0)
"""Windows start from 08:00 local time plus up to six hours, and last at most eight:
inside Los Angeles' 05:00–23:00, so a window is refused only for being past or for
the fee."""


@dataclass(frozen=True)
class Window:
    days_ahead: int  # the local day, counted from today's
    local_quarter: int  # quarters after 08:00 local time
    length_quarters: int


@dataclass(frozen=True)
class Reschedule:
    wait_quarters: int  # the clock moves on first, stopping short of the booking's start
    to: Window


WINDOWS_AHEAD = st.builds(
    Window,
    days_ahead=st.sampled_from([1, 2, 70, 0]) | st.integers(0, 80),
    local_quarter=st.integers(0, 24),
    length_quarters=st.integers(4, 32),
)
# Around the 24 h and 48 h tiers: a day, two, a few hours, or not at all.
WAITS_QUARTERS = st.sampled_from([0, 96, 4, 192, 95, 97]) | st.integers(0, 4 * 96)
RESCHEDULES = st.lists(
    st.builds(Reschedule, wait_quarters=WAITS_QUARTERS, to=WINDOWS_AHEAD), max_size=6
)


class Scenario:
    """One example: a new kitchen, a new customer and one booking of theirs, in a store
    shared by the test."""

    def __init__(
        self,
        runtime: Runtime,
        clock: MutableClock,
        host: Actor,
        admin: Actor,
        number: int,
        *,
        hourly_rate_cents: int,
        instant_book: bool,
        first: Window,
    ) -> None:
        clock.now = START_OF_TESTS
        self.runtime, self.clock = runtime, clock
        self.rules = runtime.jurisdictions.get(JURISDICTION)
        self.hourly_rate_cents = hourly_rate_cents
        self.kitchen_id = publish_compliant_kitchen(
            runtime,
            host,
            admin,
            jurisdiction=JURISDICTION,
            hourly_rate_cents=hourly_rate_cents,
            instant_book=instant_book,
        )
        self.host = host
        self.customer = create_user(runtime, "customer", f"customer{number}@example.com")
        top_up(runtime, self.customer, TOP_UP_CENTS)
        self.start, self.end = self._window(first)
        booked = runtime.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=self.kitchen_id,
                start_time=self.start,
                end_time=self.end,
                guests=GUESTS,
            ),
            as_actor(self.customer),
        ).result
        self.booking_id = booked.id
        self.price_cents = booked.price_cents
        assert self.price_cents == expected_price_cents(hourly_rate_cents, self._minutes())
        # What a customer's direct cancellation would have captured at each moment a
        # reschedule was asked for, by its notice alone.
        self.direct_cancellation_fees_cents: list[int] = []

    def _window(self, window: Window) -> tuple[datetime, datetime]:
        local_day = self.clock.now.astimezone(self.rules.zone).date() + timedelta(
            days=window.days_ahead
        )
        local_start = (
            datetime.combine(local_day, FIRST_LOCAL_START, tzinfo=self.rules.zone)
            + window.local_quarter * QUARTER
        )
        start = local_start.astimezone(UTC)
        return start, start + window.length_quarters * QUARTER

    def _minutes(self) -> int:
        return int((self.end - self.start).total_seconds()) // 60

    def _direct_cancellation_fee_cents(self) -> int:
        return expected_customer_cancellation_capture_cents(
            self.price_cents, self.start, self.clock.now
        )

    def wait(self, quarters: int) -> None:
        """Move the clock on by ``quarters``, but never to the booking's start (after
        it, nobody may cancel or reschedule)."""
        room = (self.start - self.clock.now) // QUARTER - 1
        self.clock.advance(max(0, min(quarters, room)) * QUARTER)
        assert self.clock.now < self.start

    def reschedule(self, step: Reschedule) -> None:
        self.wait(step.wait_quarters)
        fee_due = self._direct_cancellation_fee_cents()
        self.direct_cancellation_fees_cents.append(fee_due)
        start, end = self._window(step.to)
        price = expected_price_cents(self.hourly_rate_cents, step.to.length_quarters * 15)
        refusals = window_refusals(
            now=self.clock.now,
            start=start,
            end=end,
            guests=GUESTS,
            capacity=10,
            kitchen_status="published",
            rules=self.rules,
        )
        moved = (start, end) != (self.start, self.end)
        if moved and price < max(self.direct_cancellation_fees_cents):
            refusals.add("reschedule_below_fee")
        try:
            state = self.runtime.commands.bookings.reschedule_booking(
                RescheduleBooking(booking_id=self.booking_id, start_time=start, end_time=end),
                as_actor(self.customer),
            ).result
        except DomainError as error:
            refusal: DomainError | None = error
        else:
            refusal = None
        if refusal is not None:
            assert refusal.code in refusals, (step, refusal.code, refusal.detail, refusals)
            return
        assert not refusals, (step, state, refusals)
        assert (state.start_time, state.end_time, state.price_cents) == (start, end, price)
        self.start, self.end, self.price_cents = start, end, price

    def cancel(self, wait_quarters: int, *, by_host: bool) -> int:
        """Cancel after ``wait_quarters``; return the cents captured."""
        self.wait(wait_quarters)
        fee_by_notice = self._direct_cancellation_fee_cents()
        state = self.runtime.commands.bookings.cancel_booking(
            CancelBooking(booking_id=self.booking_id),
            as_actor(self.host if by_host else self.customer),
        ).result
        assert state.status == "cancelled" and state.refund is not None
        captured = state.refund.captured_cents
        assert captured + state.refund.released_cents == self.price_cents, state.refund
        if by_host:
            assert captured == 0, state.refund
        else:
            fees = [*self.direct_cancellation_fees_cents, fee_by_notice]
            assert all(captured >= fee for fee in fees), (captured, fees)
            assert captured == max(fees), (captured, fees)
        return captured

    def check_ledger(self, ledger: LedgerFold, captured_cents: int) -> None:
        ledger.catch_up(self.runtime.app)
        assert ledger.hold_problems == [] and ledger.capture_problems == []
        assert ledger.provider_problems == []
        (settlement,) = ledger.settlements[self.booking_id]
        assert (settlement.captured_cents, settlement.released_cents) == (
            captured_cents,
            self.price_cents - captured_cents,
        ), settlement
        assert self.booking_id not in ledger.pending_holds
        total = sum(ledger.balances_cents.values()) + ledger.system_balance_cents
        assert total == 0, total
        account = self.runtime.app.repository.get(account_id_for(self.customer.user_id))
        assert isinstance(account, Account)
        assert (account.balance_cents, account.held_cents) == (
            TOP_UP_CENTS - captured_cents,
            0,
        )
        assert ledger.balances_cents[account.id] == account.balance_cents


def test_rescheduling_never_lowers_what_a_cancellation_costs(
    fresh_stores: StoreFactory,
) -> None:
    url = fresh_stores.create()
    clock = MutableClock()
    runtime = open_test_runtime(url, clock)
    ledger = LedgerFold(runtime.settings.commission_basis_points)
    numbers = itertools.count()
    try:
        admin = create_user(runtime, "admin", "admin@example.com")
        host = create_user(runtime, "host", "host@example.com")

        @given(
            first=st.builds(
                Window,
                days_ahead=st.integers(1, 4),
                local_quarter=st.integers(0, 24),
                length_quarters=st.integers(4, 32),
            ),
            reschedules=RESCHEDULES,
            final_wait_quarters=WAITS_QUARTERS,
            hourly_rate_cents=st.sampled_from([5000, 4999, 7333]),
            instant_book=st.booleans(),
            by_host=st.sampled_from([False, False, False, True]),
        )
        def reschedules_then_a_cancellation(
            first: Window,
            reschedules: list[Reschedule],
            final_wait_quarters: int,
            hourly_rate_cents: int,
            instant_book: bool,
            by_host: bool,
        ) -> None:
            scenario = Scenario(
                runtime,
                clock,
                host,
                admin,
                next(numbers),
                hourly_rate_cents=hourly_rate_cents,
                instant_book=instant_book,
                first=first,
            )
            for step in reschedules:
                scenario.reschedule(step)
            captured = scenario.cancel(final_wait_quarters, by_host=by_host)
            scenario.check_ledger(ledger, captured)

        reschedules_then_a_cancellation()
    finally:
        runtime.close()
        fresh_stores.dispose(url)
