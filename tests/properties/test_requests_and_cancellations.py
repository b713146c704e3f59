"""Random sequences of booking requests and cancellations on one kitchen, checked step
by step against a brute-force model: a request succeeds iff it is valid, overlaps no
active booking and the customer's available funds cover its price; a cancellation
succeeds iff the booking is still active, and captures the fee its notice calls for.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from aggregates.account import Account, account_id_for
from aggregates.booking import Booking
from aggregates.errors import DomainError
from commands.bookings import BookingState, CancelBooking, RequestBooking
from commands.context import Actor
from prep_es.services.runtime import Runtime
from tests.properties.conftest import StoreFactory
from tests.properties.oracle import (
    QUARTER,
    expected_customer_cancellation_capture_cents,
    expected_price_cents,
    inside_operating_hours,
    overlaps,
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


@dataclass(frozen=True)
class Request:
    start_quarters: int  # from now; 0 is now, which is too late
    length_quarters: int


@dataclass(frozen=True)
class Cancel:
    which: int  # among the bookings made so far, modulo their number


STEPS = st.lists(
    st.one_of(
        st.builds(
            Request,
            # Anywhere in the next four days, or right at a cancellation tier's edge.
            start_quarters=st.sampled_from([192, 96, 191, 95, 193, 97]) | st.integers(0, 4 * 96),
            length_quarters=st.sampled_from([*range(4, 25), 2, 3]),
        ),
        st.builds(Cancel, which=st.integers(0, 11)),
    ),
    min_size=1,
    max_size=14,
)


@dataclass
class ModelBooking:
    id: UUID
    start: datetime
    end: datetime
    price_cents: int
    active: bool = True


@dataclass
class Model:
    balance_cents: int
    bookings: list[ModelBooking]

    @property
    def held_cents(self) -> int:
        return sum(b.price_cents for b in self.bookings if b.active)

    @property
    def available_cents(self) -> int:
        return self.balance_cents - self.held_cents


class Scenario:
    """One example: a new kitchen and a new customer in a store shared by the test."""

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
        top_up_cents: int,
    ) -> None:
        clock.now = START_OF_TESTS
        self.runtime, self.clock = runtime, clock
        self.hourly_rate_cents = hourly_rate_cents
        self.rules = runtime.jurisdictions.get(JURISDICTION)
        self.kitchen_id = publish_compliant_kitchen(
            runtime,
            host,
            admin,
            jurisdiction=JURISDICTION,
            hourly_rate_cents=hourly_rate_cents,
            instant_book=instant_book,
        )
        self.customer = create_user(runtime, "customer", f"customer{number}@example.com")
        if top_up_cents:
            top_up(runtime, self.customer, top_up_cents)
        self.model = Model(balance_cents=top_up_cents, bookings=[])

    def request(self, step: Request) -> None:
        now = self.clock.now
        start = now + step.start_quarters * QUARTER
        end = start + step.length_quarters * QUARTER
        price = expected_price_cents(self.hourly_rate_cents, step.length_quarters * 15)
        should_succeed = (
            start > now
            and end - start >= timedelta(hours=1)
            and inside_operating_hours(start, end, self.rules)
            and not any(
                b.active and overlaps(start, end, b.start, b.end) for b in self.model.bookings
            )
            and price <= self.model.available_cents
        )
        try:
            state = self.runtime.commands.bookings.request_booking(
                RequestBooking(
                    kitchen_id=self.kitchen_id, start_time=start, end_time=end, guests=GUESTS
                ),
                as_actor(self.customer),
            ).result
        except DomainError as error:
            refusal = error
        else:
            refusal = None
        if refusal is not None:
            assert not should_succeed, f"{step} refused ({refusal.code}: {refusal.detail})"
            return
        assert should_succeed, f"{step} succeeded as {state}"
        assert isinstance(state, BookingState) and state.price_cents == price
        self.model.bookings.append(ModelBooking(state.id, start, end, price))

    def cancel(self, step: Cancel) -> None:
        if not self.model.bookings:
            return
        booking = self.model.bookings[step.which % len(self.model.bookings)]
        try:
            state = self.runtime.commands.bookings.cancel_booking(
                CancelBooking(booking_id=booking.id), as_actor(self.customer)
            ).result
        except DomainError as error:
            refusal = error
        else:
            refusal = None
        if refusal is not None:
            assert not booking.active, f"{step} refused ({refusal.code}: {refusal.detail})"
            assert refusal.code == "already_cancelled", refusal.code
            return
        assert booking.active, f"{step} cancelled an already cancelled booking"
        captured = expected_customer_cancellation_capture_cents(
            booking.price_cents, booking.start, self.clock.now
        )
        assert state.refund is not None
        assert state.refund.captured_cents == captured, (state.refund, captured)
        booking.active = False
        self.model.balance_cents -= captured

    def check(self) -> None:
        """The store agrees with the model: the same active bookings, none overlapping,
        and the same balance and holds."""
        repository = self.runtime.app.repository
        active: list[Booking] = []
        for expected in self.model.bookings:
            booking = repository.get(expected.id)
            assert isinstance(booking, Booking)
            assert booking.is_active == expected.active, (expected, booking.status)
            if booking.is_active:
                active.append(booking)
        for n, one in enumerate(active):
            for other in active[n + 1 :]:
                assert not overlaps(
                    one.start_time, one.end_time, other.start_time, other.end_time
                ), (one.id, other.id)
        account = repository.get(account_id_for(self.customer.user_id))
        assert isinstance(account, Account)
        assert (account.balance_cents, account.held_cents) == (
            self.model.balance_cents,
            self.model.held_cents,
        )


def test_requests_and_cancellations_match_a_brute_force_model(
    fresh_stores: StoreFactory,
) -> None:
    url = fresh_stores.create()
    clock = MutableClock()
    runtime = open_test_runtime(url, clock)
    numbers = itertools.count()
    try:
        admin = create_user(runtime, "admin", "admin@example.com")
        host = create_user(runtime, "host", "host@example.com")

        @given(
            steps=STEPS,
            hourly_rate_cents=st.sampled_from([5000, 4999, 7333]),
            instant_book=st.booleans(),
            top_up_cents=st.sampled_from([100_000, 30_000, 10_000, 0]),
        )
        def requests_and_cancellations(
            steps: list[Request | Cancel],
            hourly_rate_cents: int,
            instant_book: bool,
            top_up_cents: int,
        ) -> None:
            scenario = Scenario(
                runtime,
                clock,
                host,
                admin,
                next(numbers),
                hourly_rate_cents=hourly_rate_cents,
                instant_book=instant_book,
                top_up_cents=top_up_cents,
            )
            for step in steps:
                if isinstance(step, Request):
                    scenario.request(step)
                else:
                    scenario.cancel(step)
                scenario.check()

        requests_and_cancellations()
    finally:
        runtime.close()
        fresh_stores.dispose(url)
