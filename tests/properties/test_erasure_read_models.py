"""Read models with erasures among registrations, renames, bookings with notes,
declines and cancellations with reasons: projectors that follow the store in random
slices (sharing one decoder, as a process's runners do, so that an event may be
decoded before its subject's erasure and applied after it), restart and rebuild, end
equal to a replay of the store from scratch, and hold nothing of an erased person.
"""

from __future__ import annotations

import secrets
import string
from datetime import timedelta
from typing import ClassVar
from uuid import UUID

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from aggregates.booking import Booking
from commands.bookings import CancelBooking, DeclineBooking, RequestBooking
from commands.context import Actor, CommandContext
from commands.profile import ChangeProfile
from commands.users import CreateUser
from prep_es.services.readside import ReadSide, open_read_side
from prep_es.store.settings import Settings
from projections import PROJECTIONS
from projections.decoding import EventDecoder
from projections.generations import ensure_ready, request_rebuild
from projections.runners import ProjectionRunner
from tests.properties.conftest import StoreFactory
from tests.properties.test_read_models_replay import dump
from tests.support import (
    PASSWORD,
    LeadsAsTheyAre,
    Marketplace,
    MutableClock,
    as_actor,
    build_marketplace,
    erase_user,
    open_test_runtime,
    top_up,
)

ERASURE_EXAMPLES = 10
PEOPLE_MAX = 4
BOOKINGS_MAX = 8


class ErasureReadModelMachine(RuleBasedStateMachine):
    stores: ClassVar[StoreFactory]

    def __init__(self) -> None:
        super().__init__()
        self.clock = MutableClock()
        self.url = self.stores.create()
        self.runtime = open_test_runtime(self.url, self.clock)
        self.read_side: ReadSide = open_read_side(Settings(database_url=self.url))
        self.scratch_url = self.stores.create()
        self.scratch: ReadSide = open_read_side(Settings(database_url=self.scratch_url))
        for projection_class in PROJECTIONS:
            ensure_ready(self.read_side.write_database, projection_class)
        self.runners = self._runners()
        self.market: Marketplace | None = None
        self.people: dict[UUID, str] = {}
        """Every person registered, with the token all they wrote holds."""
        self.erased: set[UUID] = set()
        self.renames = 0
        self.bookings: list[tuple[UUID, UUID]] = []
        """(booking, customer), requested in order, each on a day of its own."""

    def _runners(self) -> list[ProjectionRunner]:
        decoder = EventDecoder(self.runtime.app)
        return [
            ProjectionRunner(
                projection_class,
                self.runtime.app,
                self.read_side.write_database,
                batch_size=5,
                rebuild_batch_size=9,
                decoder=decoder,
            )
            for projection_class in PROJECTIONS
        ]

    def teardown(self) -> None:
        try:
            if self.market is not None:
                self.compare_with_scratch()
        finally:
            self.read_side.close()
            self.scratch.close()
            self.runtime.close()
            self.stores.dispose(self.scratch_url)
            self.stores.dispose(self.url)

    @initialize()
    def open_marketplace(self) -> None:
        self.market = build_marketplace(self.runtime, self.clock, top_up_cents=0)

    def _live(self) -> list[UUID]:
        return [person for person in self.people if person not in self.erased]

    @precondition(lambda self: len(self.people) < PEOPLE_MAX)
    @rule()
    def register(self) -> None:
        token = "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
        user_id = self.runtime.commands.users.create_user(
            CreateUser(
                email=f"p{token}@example.com",
                password=PASSWORD,
                full_name=f"Pérsön {token}",
                role="customer",
            ),
            CommandContext(actor=None),
        ).result.id
        top_up(self.runtime, Actor(user_id, "customer"), 1_000_000)
        self.people[user_id] = token

    @precondition(lambda self: any(p not in self.erased for p in self.people))
    @rule(which=st.integers(0, PEOPLE_MAX - 1))
    def rename(self, which: int) -> None:
        live = self._live()
        user_id = live[which % len(live)]
        self.renames += 1
        self.runtime.commands.profile.change_profile(
            ChangeProfile(full_name=f"Renämed {self.people[user_id]} {self.renames}"),
            as_actor(Actor(user_id, "customer")),
        )

    @precondition(
        lambda self: (
            len(self.bookings) < BOOKINGS_MAX and any(p not in self.erased for p in self.people)
        )
    )
    @rule(which=st.integers(0, PEOPLE_MAX - 1))
    def request_booking(self, which: int) -> None:
        assert self.market is not None
        live = self._live()
        customer = live[which % len(live)]
        start = self.clock.now + timedelta(days=2 + len(self.bookings))
        booking_id = self.runtime.commands.bookings.request_booking(
            RequestBooking(
                kitchen_id=self.market.kitchen_id,
                start_time=start,
                end_time=start + timedelta(hours=2),
                guests=2,
                notes=f"Nötes of {self.people[customer]}",
            ),
            as_actor(Actor(customer, "customer")),
        ).result.id
        self.bookings.append((booking_id, customer))

    def _active(self, booking_id: UUID) -> bool:
        booking = self.runtime.app.repository.get(booking_id)
        assert isinstance(booking, Booking)
        return booking.is_active

    @precondition(lambda self: self.bookings)
    @rule(which=st.integers(0, BOOKINGS_MAX - 1), by_customer=st.booleans())
    def end_booking(self, which: int, by_customer: bool) -> None:
        """The customer cancels with a reason of their own, or the host declines (or
        cancels) with the host's."""
        assert self.market is not None
        booking_id, customer = self.bookings[which % len(self.bookings)]
        if not self._active(booking_id):
            return
        if by_customer and customer not in self.erased:
            self.runtime.commands.bookings.cancel_booking(
                CancelBooking(booking_id=booking_id, reason=f"Réason {self.people[customer]}"),
                as_actor(Actor(customer, "customer")),
            )
        else:
            self.runtime.commands.bookings.decline_booking(
                DeclineBooking(booking_id=booking_id, reason="the host's reason"),
                as_actor(self.market.host),
            )

    @precondition(lambda self: any(p not in self.erased for p in self.people))
    @rule(which=st.integers(0, PEOPLE_MAX - 1))
    def erase(self, which: int) -> None:
        assert self.market is not None
        live = self._live()
        user_id = live[which % len(live)]
        erase_user(
            self.runtime,
            user_id,
            self.market.admin,
            LeadsAsTheyAre(self.read_side.query_database),
        )
        self.erased.add(user_id)

    @rule(which=st.integers(0, len(PROJECTIONS) - 1), steps=st.integers(1, 3))
    def project_some(self, which: int, steps: int) -> None:
        for _ in range(steps):
            self.runners[which].step()

    @rule()
    def restart_projectors(self) -> None:
        self.runners = self._runners()

    @precondition(lambda self: self.market is not None)
    @rule(which=st.integers(0, len(PROJECTIONS) - 1))
    def rebuild(self, which: int) -> None:
        request_rebuild(self.read_side.write_database, PROJECTIONS[which])
        self.runners[which].step()

    def compare_with_scratch(self) -> None:
        for runner in self.runners:
            runner.catch_up()
        live = {p.name: dump(self.read_side.write_database, p) for p in PROJECTIONS}
        for projection_class in PROJECTIONS:
            request_rebuild(self.scratch.write_database, projection_class)
            ProjectionRunner(
                projection_class, self.runtime.app, self.scratch.write_database
            ).catch_up()
            replayed = dump(self.scratch.write_database, projection_class)
            assert live[projection_class.name] == replayed, (
                f"{projection_class.name} differs from a replay"
            )
        rows = repr(live)
        for user_id in self.erased:
            assert self.people[user_id] not in rows, f"the read models keep erased {user_id}"
        for user_id in self._live():
            assert self.people[user_id] in rows, f"the read models lost {user_id}"


def test_read_models_forget_the_erased_and_equal_a_replay(fresh_stores: StoreFactory) -> None:
    machine = type(
        f"ErasureReadModelMachineOn{fresh_stores.backend.title()}",
        (ErasureReadModelMachine,),
        {"stores": fresh_stores},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            settings.get_profile(settings._current_profile or "default"),
            max_examples=ERASURE_EXAMPLES,
            stateful_step_count=30,
        ),
    )
