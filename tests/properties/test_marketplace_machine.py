"""A state machine that drives the real command handlers with random commands over a
small marketplace (2–3 kitchens in Los Angeles and San Francisco, 2 hosts, 3–4
customers) while a clock moves on, and checks the ledger's invariants after every step.

Each rule predicts its own outcome from the state before it (SPEC §3, re-written in
``oracle.py``): a command the rules allow must succeed, a command they refuse must
fail with one of the predicted codes and append nothing. The invariants read the
aggregates and the notification log (``ledger.py``), not the machine's bookkeeping:

1. no two pending/confirmed bookings of a kitchen overlap (aggregates and schedules);
2. the ledger sums to zero, with the clearing accounts (``payments_in``,
   ``payouts_in_transit``, ``payments_out``) and ``platform_revenue`` derived from
   events, and every capture is payee + commission with a matching PaymentReceived;
3. no user account goes negative (balance, held, available);
4. every hold is settled exactly once, and held = Σ prices of active bookings;
5. a settled booking's captured + released equals its price;
6. a sweep expires and completes exactly what is due, and a second sweep does nothing
   (checked inside the ``sweep`` rule);
7. every top-up is credited at most once, only when its card succeeds, and every payout
   or withdrawal is reserved at once, then posted or voided exactly once (a host's
   destination starting with ``fail`` makes the sandbox fail its payouts).

Hypothesis picks the first, simplest rules and values far more often than the rest;
the preconditions on ``sweep``, ``advance_clock``, ``top_up_by_card``, ``payout``,
``withdraw`` and
``suspend_or_reinstate_kitchen`` keep those cheap rules from crowding out bookings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from aggregates.account import Account, account_id_for
from aggregates.booking import Booking
from aggregates.errors import DomainError
from commands.bookings import (
    BookingAction,
    CancelBooking,
    DeclineBooking,
    RequestBooking,
    RescheduleBooking,
)
from commands.context import Actor
from commands.kitchens import KitchenAction, KitchenActionWithReason
from commands.payouts import RequestPayout, SetPayoutDestination
from commands.processor import Executed
from commands.top_ups import RequestTopUp
from tests.properties.conftest import StoreFactory
from tests.properties.ledger import LedgerFold
from tests.properties.oracle import (
    AUTO_COMPLETE_AFTER,
    QUARTER,
    expected_customer_cancellation_capture_cents,
    expected_fee_floor_after_reschedule,
    expected_price_cents,
    overlaps,
    window_refusals,
)
from tests.support import (
    MutableClock,
    as_actor,
    create_user,
    deliver_payment_notifications,
    open_test_runtime,
    publish_compliant_kitchen,
    top_up,
)

TResult = TypeVar("TResult")

JURISDICTIONS = ("los_angeles", "san_francisco")
HOURLY_RATES_CENTS = (2500, 4999, 5000, 7333)
KITCHENS_MAX = 3
CUSTOMERS_MAX = 4
HOSTS = 2
QUARTERS_PER_DAY = 96
# Hypothesis favours the simplest values (the least integer, the first element of a
# sampled_from) and shrinks towards them, so the usual, valid values come first.
#
# A start is drawn as a local day (tomorrow first, today, then up to three days ahead)
# and a local time of day from 03:00 to 22:45, 09:00 first: mostly inside operating
# hours, some before opening or running past closing, some already past.
START_DAYS = st.sampled_from([1, 0, 2, 3])
START_LOCAL_QUARTER = st.integers(0, 79).map(lambda n: 3 * 4 + (n + 6 * 4) % 80)
# 1 h to 6 h; now and then 30 or 45 minutes (too short).
LENGTH_QUARTERS = st.sampled_from([*range(4, 25), 2, 3])
# Mostly on a 15-minute boundary; now and then 5 minutes off it.
NUDGE_MINUTES = st.sampled_from([0] * 11 + [5])
# Mostly within every kitchen's capacity (4 or more); now and then 0 or too many.
GUESTS = st.sampled_from([2, 1, 3, 4, 2, 1, 3, 4, 0, 12])
TOP_UPS_CENTS = st.sampled_from([60_000, 150_000, 30_000, 10_000])
TOP_UP_AMOUNTS_CENTS = st.sampled_from([20_000, 50_000, 5_000, 1, 0])
# Mostly a card that succeeds; now and then one the sandbox declines.
PAYMENT_METHODS = st.sampled_from(["pm_card_visa"] * 3 + ["pm_card_chargeDeclined"])
SUCCEEDING_PAYMENT_METHOD = "pm_card_visa"
# The second host's payouts fail at the sandbox, and come back.
PAYOUT_DESTINATIONS = ("bank-of-test", "fail-closed-account")
# 15 minutes to 3 days: a spread of steps around the 24 h and 48 h cancellation tiers.
ADVANCE_QUARTERS = st.sampled_from([96, 24, 4, 1, 48, 2 * 96, 3 * 96, 3, 100, 191, 7])
DEADLINES = st.sampled_from(["start", "end + 24h", "start - 24h", "start - 48h", "end"])
# Customers top up when one of them is below this.
LOW_BALANCE_CENTS = 20_000
# And withdraw when one of them has more than this.
HIGH_BALANCE_CENTS = 100_000
# An admin steps in now and then, not every other step.
MODERATIONS_MAX = 2
BOOKINGS_BEFORE_MODERATION = 2
# Who acts on a booking: mostly someone allowed to, now and then someone who is not.
AS_HOST = st.sampled_from(["own host", "own host", "own host", "other host"])
AS_CANCELLER = st.sampled_from(["customer", "customer", "host", "other customer"])
AS_COMPLETER = st.sampled_from(["host", "host", "admin", "other host"])
AS_RESCHEDULER = st.sampled_from(["customer", "customer", "customer", "other customer"])


@dataclass(frozen=True)
class KitchenFacts:
    id: UUID
    jurisdiction: str
    hourly_rate_cents: int
    capacity: int
    instant_book: bool
    host: Actor


@dataclass(frozen=True)
class Observation:
    """The aggregates the invariants read, loaded once per store position."""

    position: int
    bookings: dict[UUID, Booking]
    accounts: dict[UUID, Account]  # by owner (user) id


class MarketplaceMachine(RuleBasedStateMachine):
    stores: ClassVar[StoreFactory]

    bookings = Bundle("bookings")

    def __init__(self) -> None:
        super().__init__()
        self.clock = MutableClock()
        self.url = self.stores.create()
        self.runtime = open_test_runtime(self.url, self.clock)
        self.ledger = LedgerFold(self.runtime.settings.commission_basis_points)
        self.admin: Actor | None = None
        self.hosts: list[Actor] = []
        self.customers: list[Actor] = []
        self.kitchens: list[KitchenFacts] = []
        self.booking_ids: list[UUID] = []
        # The least a customer's cancellation captures, locked in by reschedules.
        self.fee_floors_cents: dict[UUID, int] = {}
        self._observation: Observation | None = None
        self.moderations = 0

    def teardown(self) -> None:
        self.runtime.close()
        self.stores.dispose(self.url)

    # --- set-up --------------------------------------------------------------------

    @initialize(
        kitchens=st.lists(
            st.tuples(st.booleans(), st.sampled_from(HOURLY_RATES_CENTS), st.integers(4, 10)),
            min_size=2,
            max_size=KITCHENS_MAX,
        ),
        top_ups_cents=st.lists(TOP_UPS_CENTS, min_size=3, max_size=CUSTOMERS_MAX),
    )
    def open_marketplace(
        self, kitchens: list[tuple[bool, int, int]], top_ups_cents: list[int]
    ) -> None:
        runtime = self.runtime
        self.admin = self._make_user("admin", "admin")
        self.hosts = [self._make_user("host", f"host{n}") for n in range(HOSTS)]
        for host, destination in zip(self.hosts, PAYOUT_DESTINATIONS, strict=True):
            runtime.commands.payouts.set_payout_destination(
                SetPayoutDestination(destination=destination), as_actor(host)
            )
        for n, (instant_book, rate, capacity) in enumerate(kitchens):
            jurisdiction = JURISDICTIONS[n % len(JURISDICTIONS)]
            host = self.hosts[n % HOSTS]
            kitchen_id = publish_compliant_kitchen(
                runtime,
                host,
                self.admin,
                jurisdiction=jurisdiction,
                hourly_rate_cents=rate,
                capacity=capacity,
                instant_book=instant_book,
            )
            self.kitchens.append(
                KitchenFacts(kitchen_id, jurisdiction, rate, capacity, instant_book, host)
            )
        for n, amount_cents in enumerate(top_ups_cents):
            customer = self._make_user("customer", f"customer{n}")
            top_up(runtime, customer, amount_cents)
            self.customers.append(customer)

    # --- helpers -------------------------------------------------------------------

    def _make_user(self, role: str, label: str) -> Actor:
        """A new user of ``role``; ``label`` tells it from the others."""
        return create_user(self.runtime, role, f"{label}@example.com")

    def _notes_of(self, customer: Actor) -> str:
        """What ``customer`` writes in a booking request."""
        return ""

    def _reason_of(self, actor: Actor, action: str) -> str | None:
        """What ``actor`` gives as the reason of a ``"decline"`` or ``"cancel"``."""
        return "kitchen closed that day" if action == "decline" else None

    def _refused_outright(self, actor: Actor) -> set[str]:
        """The codes any command by ``actor`` is refused with, whatever it asks (none
        here: every user of this machine may act)."""
        return set()

    def _refused_to_reinstate(self, facts: KitchenFacts) -> set[str]:
        """The codes reinstating ``facts``' kitchen is refused with, whatever its status
        (none here)."""
        return set()

    @property
    def now(self) -> datetime:
        return self.clock.now

    @property
    def users(self) -> list[Actor]:
        assert self.admin is not None
        return [self.admin, *self.hosts, *self.customers]

    def _get(self, aggregate_id: UUID) -> Any:
        return self.runtime.app.repository.get(aggregate_id)

    def _booking(self, booking_id: UUID) -> Booking:
        booking = self._get(booking_id)
        assert isinstance(booking, Booking)
        return booking

    def _account(self, user_id: UUID) -> Account:
        account = self._get(account_id_for(user_id))
        assert isinstance(account, Account)
        return account

    def _kitchen_facts(self, kitchen_id: UUID) -> KitchenFacts:
        return next(k for k in self.kitchens if k.id == kitchen_id)

    def _actor(self, user_id: UUID) -> Actor:
        return next(u for u in self.users if u.user_id == user_id)

    def _other(self, actors: list[Actor], user_id: UUID) -> Actor:
        return next(a for a in actors if a.user_id != user_id)

    def _active_bookings_of(self, kitchen_id: UUID) -> list[Booking]:
        return [
            booking
            for booking in (self._booking(i) for i in self.booking_ids)
            if booking.kitchen_id == kitchen_id and booking.is_active
        ]

    def _attempt(
        self,
        action: str,
        refusals: set[str],
        call: Callable[[], Executed[TResult]],
        *,
        by: Actor,
    ) -> TResult | None:
        """Run a command whose outcome the rules predict: success when ``refusals`` is
        empty, otherwise a ``DomainError`` with one of those codes and no new events.
        An actor refused outright (see :meth:`_refused_outright`) gets that instead."""
        refusals = self._refused_outright(by) or refusals
        before = self.runtime.app.position()
        refusal: DomainError | None = None
        try:
            executed = call()
        except DomainError as error:
            refusal = error
        if refusal is not None:
            assert refusals, (
                f"{action} was refused with {refusal.code} ({refusal.detail}), "
                "but the rules allow it"
            )
            assert refusal.code in refusals, (
                f"{action} was refused with {refusal.code} ({refusal.detail}), "
                f"expected one of {sorted(refusals)}"
            )
            assert self.runtime.app.position() == before, f"a refused {action} appended events"
            event(f"{action}: refused ({refusal.code})")
            return None
        assert not refusals, f"{action} succeeded, but the rules refuse it: {sorted(refusals)}"
        event(f"{action}: done")
        return executed.result

    def _request(
        self,
        kitchen: KitchenFacts,
        customer: Actor,
        start: datetime,
        end: datetime,
        guests: int,
    ) -> Any:
        rules = self.runtime.jurisdictions.get(kitchen.jurisdiction)
        kitchen_status = self._get(kitchen.id).status
        refusals = window_refusals(
            now=self.now,
            start=start,
            end=end,
            guests=guests,
            capacity=kitchen.capacity,
            kitchen_status=kitchen_status,
            rules=rules,
        )
        minutes = int((end - start).total_seconds()) // 60
        price = expected_price_cents(kitchen.hourly_rate_cents, minutes)
        if any(
            overlaps(start, end, other.start_time, other.end_time)
            for other in self._active_bookings_of(kitchen.id)
        ):
            refusals.add("booking_conflict")
        if price > self._account(customer.user_id).available_cents:
            refusals.add("insufficient_funds")
        command = RequestBooking(
            kitchen_id=kitchen.id,
            start_time=start,
            end_time=end,
            guests=guests,
            notes=self._notes_of(customer),
        )
        state = self._attempt(
            "request",
            refusals,
            lambda: self.runtime.commands.bookings.request_booking(command, as_actor(customer)),
            by=customer,
        )
        if state is None:
            return multiple()
        assert state.price_cents == price, (state.price_cents, price)
        assert state.status == ("confirmed" if kitchen.instant_book else "pending"), state
        assert (state.start_time, state.end_time) == (start, end), state
        assert state.customer_id == customer.user_id and state.host_id == kitchen.host.user_id
        self.booking_ids.append(state.id)
        return state.id

    # --- rules -----------------------------------------------------------------------

    @rule(
        target=bookings,
        kitchen=st.integers(0, KITCHENS_MAX - 1),
        customer=st.integers(0, CUSTOMERS_MAX - 1),
        start_days=START_DAYS,
        start_local_quarter=START_LOCAL_QUARTER,
        length_quarters=LENGTH_QUARTERS,
        nudge_minutes=NUDGE_MINUTES,
        guests=GUESTS,
    )
    def request_booking(
        self,
        kitchen: int,
        customer: int,
        start_days: int,
        start_local_quarter: int,
        length_quarters: int,
        nudge_minutes: int,
        guests: int,
    ) -> Any:
        facts = self.kitchens[kitchen % len(self.kitchens)]
        zone = self.runtime.jurisdictions.get(facts.jurisdiction).zone
        local_day = self.now.astimezone(zone).date() + timedelta(days=start_days)
        # Aware arithmetic in one zone is wall-clock arithmetic: this is the local time.
        local_start = (
            datetime.combine(local_day, time(0), tzinfo=zone)
            + start_local_quarter * QUARTER
            + timedelta(minutes=nudge_minutes)
        )
        start = local_start.astimezone(UTC)
        return self._request(
            facts,
            self.customers[customer % len(self.customers)],
            start,
            start + length_quarters * QUARTER,
            guests,
        )

    @rule(
        target=bookings,
        near=bookings,
        customer=st.integers(0, CUSTOMERS_MAX - 1),
        shift_quarters=st.integers(-8, 8),
        length_quarters=LENGTH_QUARTERS,
        guests=GUESTS,
    )
    def request_booking_near_another(
        self,
        near: UUID,
        customer: int,
        shift_quarters: int,
        length_quarters: int,
        guests: int,
    ) -> Any:
        """Windows touching or overlapping an existing booking of the same kitchen."""
        other = self._booking(near)
        start = other.start_time + shift_quarters * QUARTER
        return self._request(
            self._kitchen_facts(other.kitchen_id),
            self.customers[customer % len(self.customers)],
            start,
            start + length_quarters * QUARTER,
            guests,
        )

    @rule(booking=bookings, who=AS_HOST)
    def confirm_booking(self, booking: UUID, who: str) -> None:
        before = self._booking(booking)
        host = self._actor(before.host_id)
        actor = host if who == "own host" else self._other(self.hosts, host.user_id)
        refusals: set[str] = set()
        if actor != host:
            refusals.add("forbidden")
        if before.status != "pending":
            refusals.add("invalid_state_transition")
        if self.now >= before.start_time:
            refusals.add("booking_already_started")
        state = self._attempt(
            "confirm",
            refusals,
            lambda: self.runtime.commands.bookings.confirm_booking(
                BookingAction(booking_id=booking), as_actor(actor)
            ),
            by=actor,
        )
        if state is not None:
            assert state.status == "confirmed", state

    @rule(booking=bookings, who=AS_HOST)
    def decline_booking(self, booking: UUID, who: str) -> None:
        before = self._booking(booking)
        host = self._actor(before.host_id)
        actor = host if who == "own host" else self._other(self.hosts, host.user_id)
        refusals: set[str] = set()
        if actor != host:
            refusals.add("forbidden")
        if before.status != "pending":
            refusals.add("invalid_state_transition")
        state = self._attempt(
            "decline",
            refusals,
            lambda: self.runtime.commands.bookings.decline_booking(
                DeclineBooking(booking_id=booking, reason=self._reason_of(actor, "decline")),
                as_actor(actor),
            ),
            by=actor,
        )
        if state is not None:
            assert state.status == "declined", state
            assert state.refund is not None
            assert (state.refund.captured_cents, state.refund.released_cents) == (
                0,
                before.price_cents,
            ), state

    @rule(booking=bookings, who=AS_CANCELLER)
    def cancel_booking(self, booking: UUID, who: str) -> None:
        before = self._booking(booking)
        customer = self._actor(before.customer_id)
        host = self._actor(before.host_id)
        actor = {
            "customer": customer,
            "host": host,
            "other customer": self._other(self.customers, customer.user_id),
        }[who]
        refusals: set[str] = set()
        if actor not in (customer, host):
            refusals.add("forbidden")
        if before.status == "cancelled":
            refusals.add("already_cancelled")
        elif not before.is_active:
            refusals.add("invalid_state_transition")
        if self.now >= before.start_time:
            refusals.add("booking_already_started")
        state = self._attempt(
            f"cancel by {actor.role}",
            refusals,
            lambda: self.runtime.commands.bookings.cancel_booking(
                CancelBooking(booking_id=booking, reason=self._reason_of(actor, "cancel")),
                as_actor(actor),
            ),
            by=actor,
        )
        if state is not None:
            captured = (
                max(
                    expected_customer_cancellation_capture_cents(
                        before.price_cents, before.start_time, self.now
                    ),
                    self.fee_floors_cents.get(booking, 0),
                )
                if actor == customer
                else 0
            )
            assert state.status == "cancelled", state
            assert state.refund is not None
            assert (state.refund.captured_cents, state.refund.released_cents) == (
                captured,
                before.price_cents - captured,
            ), (state, captured)

    @rule(
        booking=bookings,
        who=AS_RESCHEDULER,
        shift_quarters=st.integers(-16, QUARTERS_PER_DAY),
        length_quarters=LENGTH_QUARTERS,
        nudge_minutes=NUDGE_MINUTES,
    )
    def reschedule_booking(
        self,
        booking: UUID,
        who: str,
        shift_quarters: int,
        length_quarters: int,
        nudge_minutes: int,
    ) -> None:
        before = self._booking(booking)
        customer = self._actor(before.customer_id)
        actor = customer if who == "customer" else self._other(self.customers, customer.user_id)
        kitchen = self._kitchen_facts(before.kitchen_id)
        start = before.start_time + shift_quarters * QUARTER + timedelta(minutes=nudge_minutes)
        end = start + length_quarters * QUARTER
        refusals = window_refusals(
            now=self.now,
            start=start,
            end=end,
            guests=before.guests,
            capacity=kitchen.capacity,
            kitchen_status=self._get(kitchen.id).status,
            rules=self.runtime.jurisdictions.get(kitchen.jurisdiction),
        )
        if actor != customer:
            refusals.add("forbidden")
        if not before.is_active:
            refusals.add("invalid_state_transition")
        if self.now >= before.start_time:
            refusals.add("booking_already_started")
        if any(
            overlaps(start, end, other.start_time, other.end_time)
            for other in self._active_bookings_of(kitchen.id)
            if other.id != booking
        ):
            refusals.add("booking_conflict")
        minutes = int((end - start).total_seconds()) // 60
        price = expected_price_cents(before.hourly_rate_cents, minutes)
        if price - before.price_cents > self._account(customer.user_id).available_cents:
            refusals.add("insufficient_funds")
        fee_floor = expected_fee_floor_after_reschedule(
            self.fee_floors_cents.get(booking, 0), before.price_cents, before.start_time, self.now
        )
        moved = (start, end) != (before.start_time, before.end_time)
        if moved and price < fee_floor:
            refusals.add("reschedule_below_fee")
        state = self._attempt(
            "reschedule",
            refusals,
            lambda: self.runtime.commands.bookings.reschedule_booking(
                RescheduleBooking(booking_id=booking, start_time=start, end_time=end),
                as_actor(actor),
            ),
            by=actor,
        )
        if state is not None:
            assert state.status == before.status, state
            assert (state.start_time, state.end_time, state.price_cents) == (start, end, price)
            if moved:
                self.fee_floors_cents[booking] = fee_floor

    @rule(booking=bookings, who=AS_COMPLETER)
    def complete_booking(self, booking: UUID, who: str) -> None:
        before = self._booking(booking)
        host = self._actor(before.host_id)
        assert self.admin is not None
        actor = {
            "host": host,
            "admin": self.admin,
            "other host": self._other(self.hosts, host.user_id),
        }[who]
        refusals: set[str] = set()
        if actor not in (host, self.admin):
            refusals.add("forbidden")
        if before.status != "confirmed":
            refusals.add("invalid_state_transition")
        if self.now < before.end_time:
            refusals.add("booking_not_ended")
        state = self._attempt(
            f"complete by {actor.role}",
            refusals,
            lambda: self.runtime.commands.bookings.complete_booking(
                BookingAction(booking_id=booking), as_actor(actor)
            ),
            by=actor,
        )
        if state is not None:
            assert state.status == "completed", state
            assert state.refund is not None
            assert (state.refund.captured_cents, state.refund.released_cents) == (
                before.price_cents,
                0,
            ), state

    def _sweep_has_work(self) -> bool:
        return any(
            (booking.status == "pending" and booking.start_time <= self.now)
            or (
                booking.status == "confirmed" and booking.end_time + AUTO_COMPLETE_AFTER <= self.now
            )
            for booking in self._observe().bookings.values()
        )

    @rule()
    @precondition(_sweep_has_work)
    def sweep(self) -> None:
        """Invariant 6: a sweep expires exactly the pending bookings whose start has
        passed and completes exactly the confirmed ones 24 h past their end; a second
        sweep finds nothing to do."""
        before = {i: self._booking(i) for i in self.booking_ids}
        due_to_expire = {
            i for i, b in before.items() if b.status == "pending" and b.start_time <= self.now
        }
        due_to_complete = {
            i
            for i, b in before.items()
            if b.status == "confirmed" and b.end_time + AUTO_COMPLETE_AFTER <= self.now
        }
        report = self.runtime.commands.sweeper.sweep()
        assert set(report.expired_booking_ids) == due_to_expire, report
        assert set(report.completed_booking_ids) == due_to_complete, report
        assert len(report.expired_booking_ids) == len(due_to_expire), report
        assert len(report.completed_booking_ids) == len(due_to_complete), report
        assert report.lapsed_certificate_ids == [], report
        for booking_id, was in before.items():
            now = self._booking(booking_id)
            if booking_id in due_to_expire:
                assert now.status == "expired", (booking_id, now.status)
                assert (now.captured_cents, now.released_cents) == (0, was.price_cents)
            elif booking_id in due_to_complete:
                assert now.status == "completed", (booking_id, now.status)
                assert (now.captured_cents, now.released_cents) == (was.price_cents, 0)
            else:
                assert now.version == was.version, f"sweep touched {booking_id}"
        position = self.runtime.app.position()
        again = self.runtime.commands.sweeper.sweep()
        assert again.expired_booking_ids == again.completed_booking_ids == [], again
        assert self.runtime.app.position() == position, "a second sweep appended events"
        event(f"sweep: expired {len(due_to_expire)}, completed {len(due_to_complete)}")

    def _a_customer_runs_low(self) -> bool:
        return any(
            self._observe().accounts[customer.user_id].available_cents < LOW_BALANCE_CENTS
            for customer in self.customers
        )

    @rule(
        customer=st.integers(0, CUSTOMERS_MAX - 1),
        amount_cents=TOP_UP_AMOUNTS_CENTS,
        payment_method=PAYMENT_METHODS,
    )
    @precondition(_a_customer_runs_low)
    def top_up_by_card(self, customer: int, amount_cents: int, payment_method: str) -> None:
        """A top-up, credited when the sandbox's notification says the card paid."""
        actor = self.customers[customer % len(self.customers)]
        balance = self._account(actor.user_id).balance_cents
        started = self._attempt(
            "top up",
            set() if amount_cents > 0 else {"invalid_amount"},
            lambda: self.runtime.commands.top_ups.request_top_up(
                RequestTopUp(amount_cents=amount_cents, payment_method=payment_method),
                as_actor(actor),
            ),
            by=actor,
        )
        if started is None:
            return
        assert self._account(actor.user_id).balance_cents == balance, "credited unconfirmed"
        deliver_payment_notifications(self.runtime)
        credited_cents = amount_cents if payment_method == SUCCEEDING_PAYMENT_METHOD else 0
        assert self._account(actor.user_id).balance_cents == balance + credited_cents

    def _a_host_has_money(self) -> bool:
        return any(self._observe().accounts[host.user_id].available_cents for host in self.hosts)

    @rule(host=st.integers(0, HOSTS - 1), percent_of_available=st.integers(1, 120))
    @precondition(_a_host_has_money)
    def payout(self, host: int, percent_of_available: int) -> None:
        actor = self.hosts[host]
        account = self._account(actor.user_id)
        amount = max(1, account.available_cents * percent_of_available // 100)
        refusals = {"insufficient_funds"} if amount > account.available_cents else set()
        requested = self._attempt(
            "payout",
            refusals,
            lambda: self.runtime.commands.payouts.request_payout(
                RequestPayout(amount_cents=amount), as_actor(actor)
            ),
            by=actor,
        )
        if requested is None:
            return
        assert requested.account.balance_cents == account.balance_cents - amount, requested
        deliver_payment_notifications(self.runtime)
        failing = PAYOUT_DESTINATIONS[host].startswith("fail")
        returned_cents = amount if failing else 0
        after = self._account(actor.user_id).balance_cents
        assert after == account.balance_cents - amount + returned_cents, (after, requested)

    def _a_customer_has_plenty(self) -> bool:
        accounts = self._observe().accounts
        return any(
            accounts[customer.user_id].available_cents > HIGH_BALANCE_CENTS
            for customer in self.customers
        )

    @rule(
        customer=st.integers(0, CUSTOMERS_MAX - 1),
        percent_of_available=st.sampled_from([50, 100, 120, 1]) | st.integers(1, 120),
    )
    @precondition(_a_customer_has_plenty)
    def withdraw(self, customer: int, percent_of_available: int) -> None:
        """A withdrawal back to the cards: every customer's money came from top-ups, so
        all of what is available can go back."""
        actor = self.customers[customer % len(self.customers)]
        account = self._account(actor.user_id)
        amount = max(1, account.available_cents * percent_of_available // 100)
        refusals = {"insufficient_funds"} if amount > account.available_cents else set()
        requested = self._attempt(
            "withdraw",
            refusals,
            lambda: self.runtime.commands.payouts.request_withdrawal(
                RequestPayout(amount_cents=amount), as_actor(actor)
            ),
            by=actor,
        )
        if requested is None:
            return
        assert sum(refund.amount_cents for refund in requested.payouts) == amount, requested
        deliver_payment_notifications(self.runtime)
        assert self._account(actor.user_id).balance_cents == account.balance_cents - amount

    def _time_has_work(self) -> bool:
        return any(booking.is_active for booking in self._observe().bookings.values())

    @rule(quarters=ADVANCE_QUARTERS)
    @precondition(_time_has_work)
    def advance_clock(self, quarters: int) -> None:
        self.clock.advance(quarters * QUARTER)
        event("advance clock")

    @rule(booking=bookings, deadline=DEADLINES, offset_quarters=st.sampled_from([0, -1, 1]))
    def advance_clock_to_a_deadline(
        self, booking: UUID, deadline: str, offset_quarters: int
    ) -> None:
        """Move the clock to (or a quarter either side of) a moment the rules turn on:
        the cancellation tiers, the start, the end, the auto-completion."""
        current = self._booking(booking)
        moment = {
            "start - 48h": current.start_time - timedelta(hours=48),
            "start - 24h": current.start_time - timedelta(hours=24),
            "start": current.start_time,
            "end": current.end_time,
            "end + 24h": current.end_time + AUTO_COMPLETE_AFTER,
        }[deadline] + offset_quarters * QUARTER
        if moment > self.now:
            self.clock.now = moment
            event(f"advance clock to {deadline}")

    @rule(kitchen=st.integers(0, KITCHENS_MAX - 1), repeat=st.booleans())
    @precondition(
        lambda self: (
            len(self.booking_ids) >= BOOKINGS_BEFORE_MODERATION
            and self.moderations < MODERATIONS_MAX
        )
    )
    def suspend_or_reinstate_kitchen(self, kitchen: int, repeat: bool) -> None:
        """An admin suspends a published kitchen or reinstates a suspended one (and,
        with ``repeat``, tries the same step again, which the kitchen refuses)."""
        self.moderations += 1
        # The last kitchen first: requests favour the first.
        facts = self.kitchens[-1 - kitchen % len(self.kitchens)]
        assert self.admin is not None
        admin = as_actor(self.admin)
        kitchens = self.runtime.commands.kitchens
        if self._get(facts.id).status == "published":
            action, call = (
                "suspend",
                lambda: kitchens.suspend_kitchen(
                    KitchenActionWithReason(kitchen_id=facts.id, reason="inspection pending"), admin
                ),
            )
        else:
            action, call = (
                "reinstate",
                lambda: kitchens.reinstate_kitchen(KitchenAction(kitchen_id=facts.id), admin),
            )
        refused = self._refused_to_reinstate(facts) if action == "reinstate" else set()
        self._attempt(action, refused, call, by=self.admin)
        if repeat:
            self._attempt(action, refused or {"invalid_state_transition"}, call, by=self.admin)

    # --- invariants --------------------------------------------------------------------

    def _observe(self) -> Observation:
        position = self.runtime.app.position()
        if self._observation is None or self._observation.position != position:
            self.ledger.catch_up(self.runtime.app)
            self._observation = Observation(
                position=position,
                bookings={i: self._booking(i) for i in self.booking_ids},
                accounts={u.user_id: self._account(u.user_id) for u in self.users},
            )
        return self._observation

    @invariant()
    def no_overlapping_active_bookings(self) -> None:
        """1. Two pending/confirmed bookings of one kitchen never overlap — by the
        booking aggregates, and by the kitchen-day schedules' live claims."""
        active = [b for b in self._observe().bookings.values() if b.is_active]
        for n, one in enumerate(active):
            for other in active[n + 1 :]:
                assert not (
                    one.kitchen_id == other.kitchen_id
                    and overlaps(one.start_time, one.end_time, other.start_time, other.end_time)
                ), f"bookings {one.id} and {other.id} overlap"
        for schedule_id, claims in self.ledger.claims.items():
            windows = sorted(claims.values())
            for (_, end), (start, _) in itertools.pairwise(windows):
                assert end <= start, f"schedule {schedule_id} has overlapping claims {windows}"

    @invariant()
    def schedules_claim_exactly_the_booked_windows(self) -> None:
        """Each active booking claims its window on every UTC day it touches; a
        declined, cancelled or expired booking claims nothing."""
        bookings = self._observe().bookings
        claimed: dict[UUID, set[tuple[UUID, object]]] = {}
        for schedule_id, claims in self.ledger.claims.items():
            kitchen_id, day = self.ledger.schedules[schedule_id]
            for booking_id, window in claims.items():
                booking = bookings[booking_id]
                assert booking.kitchen_id == kitchen_id, (booking_id, schedule_id)
                assert window == (booking.start_time, booking.end_time), (
                    f"{booking.status} booking {booking_id} claims {window} on {day}, "
                    f"its window is {booking.start_time}–{booking.end_time}"
                )
                claimed.setdefault(booking_id, set()).add((kitchen_id, day))
        for booking in bookings.values():
            if booking.is_active:
                days = {(booking.kitchen_id, day) for day in booking.window.days()}
                assert claimed.get(booking.id) == days, (booking.id, claimed.get(booking.id))
            elif booking.status != "completed":
                assert booking.id not in claimed, (
                    f"{booking.status} booking {booking.id} still claims {claimed[booking.id]}"
                )

    @invariant()
    def ledger_sums_to_zero(self) -> None:
        """2. Σ user balances + payments_in (−Σ top-ups credited) + payouts_in_transit
        + payments_out (Σ payouts posted) + platform revenue (Σ commissions) == 0, and
        each account's balance equals its folded entries."""
        accounts = self._observe().accounts
        user_total = sum(account.balance_cents for account in accounts.values())
        ledger = self.ledger
        total = user_total + ledger.system_balance_cents
        assert total == 0, (
            f"users {user_total} + payments_in {ledger.payments_in_cents}"
            f" + in transit {ledger.payouts_in_transit_cents}"
            f" + payments_out {ledger.payments_out_cents}"
            f" + revenue {ledger.platform_revenue_cents} = {total}"
        )
        for owner, account in accounts.items():
            folded = self.ledger.balances_cents[account_id_for(owner)]
            assert account.balance_cents == folded, (owner, account.balance_cents, folded)
        known = {account_id_for(owner) for owner in accounts}
        assert set(+self.ledger.balances_cents) <= known, "money on an unknown account"

    @invariant()
    def money_moves_through_the_provider_once(self) -> None:
        """7. No top-up credited twice; every payout reserved once and posted or voided
        once — at once here, since each rule delivers the sandbox's notifications."""
        self._observe()
        assert self.ledger.provider_problems == []
        assert self.ledger.pending_payouts == {}
        assert self.ledger.payouts_in_transit_cents == 0

    @invariant()
    def captures_pay_the_host_and_the_platform(self) -> None:
        """2. Each capture splits into payee + commission (10 %, rounded down), and the
        payee account has the matching PaymentReceived."""
        assert self.ledger.capture_problems == []
        promised, received = self.ledger.payments_promised, self.ledger.payments_received
        assert promised == received, f"promised {promised - received}, got {received - promised}"

    @invariant()
    def user_accounts_never_go_negative(self) -> None:
        """3. balance ≥ 0, held ≥ 0, available ≥ 0 on every user account."""
        for owner, account in self._observe().accounts.items():
            assert account.balance_cents >= 0, (owner, account.balance_cents)
            assert account.held_cents >= 0, (owner, account.held_cents)
            assert account.available_cents >= 0, (owner, account.available_cents)

    @invariant()
    def every_hold_settles_exactly_once(self) -> None:
        """4. No settlement for an active booking, exactly one for any other; each
        account holds exactly the prices of its customer's active bookings."""
        observation = self._observe()
        assert self.ledger.hold_problems == []
        hold_ids = set(self.ledger.pending_holds) | set(self.ledger.settlements)
        assert hold_ids <= set(observation.bookings), "a hold for no known booking"
        held_by_owner: dict[UUID, int] = {}
        for booking in observation.bookings.values():
            settlements = self.ledger.settlements.get(booking.id, [])
            if booking.is_active:
                assert settlements == [], (booking.id, booking.status, settlements)
                assert self.ledger.pending_holds.get(booking.id) == (
                    account_id_for(booking.customer_id),
                    booking.price_cents,
                ), (booking.id, self.ledger.pending_holds.get(booking.id))
                held_by_owner[booking.customer_id] = (
                    held_by_owner.get(booking.customer_id, 0) + booking.price_cents
                )
            else:
                assert len(settlements) == 1, (booking.id, booking.status, settlements)
        for owner, account in observation.accounts.items():
            expected = held_by_owner.get(owner, 0)
            assert account.held_cents == sum(account.holds.values()) == expected, (
                owner,
                account.held_cents,
                account.holds,
                expected,
            )
            assert self.ledger.held_cents_of(account.id) == expected, owner

    @invariant()
    def settled_bookings_money_adds_up(self) -> None:
        """5. For a settled booking, captured + released == price, in its events and
        on the aggregate; declines and expiries capture nothing, completions all."""
        for booking in self._observe().bookings.values():
            if booking.is_active:
                continue
            (settlement,) = self.ledger.settlements[booking.id]
            assert settlement.account_id == account_id_for(booking.customer_id)
            assert settlement.captured_cents + settlement.released_cents == booking.price_cents
            assert (booking.captured_cents, booking.released_cents) == (
                settlement.captured_cents,
                settlement.released_cents,
            ), (booking.id, booking.status, settlement)
            if booking.status in ("declined", "expired"):
                assert settlement.kind == "released", (booking.id, settlement)
            if booking.status == "completed":
                assert settlement.captured_cents == booking.price_cents, (booking.id, settlement)
            if settlement.kind == "captured":
                assert settlement.captured_cents > 0
                payee = account_id_for(booking.host_id)
                assert any(
                    hold == booking.id and account == payee
                    for hold, account, _ in self.ledger.payments_received
                ), f"the host of {booking.id} was not paid"


def run_marketplace_machine(stores: StoreFactory) -> None:
    machine = type(
        f"MarketplaceMachineOn{stores.backend.title()}",
        (MarketplaceMachine,),
        {"stores": stores},
    )
    run_state_machine_as_test(machine)


def test_marketplace_keeps_its_invariants(fresh_stores: StoreFactory) -> None:
    run_marketplace_machine(fresh_stores)
