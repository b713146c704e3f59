"""Kitchen schedules: one per kitchen and UTC day; overlapping claims conflict."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

from aggregates.base import DomainEvent, derived_id
from aggregates.errors import BookingConflict
from aggregates.schedule import KitchenSchedule
from tests.domain.scenario import BOOKING_START, KITCHEN_ID, given, refused, then, window

DAY = date(2030, 1, 14)
FIRST = UUID(int=101)
SECOND = UUID(int=102)
H = timedelta(hours=1)
NINE = BOOKING_START  # 17:00Z


def opened() -> list[DomainEvent]:
    schedule = KitchenSchedule(kitchen_id=KITCHEN_ID, day=DAY)
    return schedule.collect_events()  # type: ignore[return-value]


def with_claim() -> list[DomainEvent]:
    history = opened()
    schedule = given(*history)
    schedule.claim(FIRST, window(NINE, 2))
    return [*history, *schedule.collect_events()]


def test_id_is_derived_from_kitchen_and_day() -> None:
    schedule = KitchenSchedule(kitchen_id=KITCHEN_ID, day=DAY)
    assert schedule.id == KitchenSchedule(kitchen_id=KITCHEN_ID, day=DAY).id
    assert schedule.id == derived_id("kitchen-schedule", KITCHEN_ID, "2030-01-14")
    assert schedule.id != KitchenSchedule(kitchen_id=KITCHEN_ID, day=DAY + timedelta(days=1)).id
    assert schedule.id != KitchenSchedule(kitchen_id=UUID(int=4), day=DAY).id
    then(schedule, (KitchenSchedule.ScheduleOpened, {"kitchen_id": KITCHEN_ID, "day": DAY}))
    assert schedule.claims == {}


def test_claim_a_free_window() -> None:
    schedule = given(*opened())
    schedule.claim(FIRST, window(NINE, 2))
    then(
        schedule,
        (
            KitchenSchedule.SlotClaimed,
            {"booking_id": FIRST, "start_time": NINE, "end_time": NINE + 2 * H},
        ),
    )
    assert schedule.claims == {str(FIRST): [int(NINE.timestamp()), int((NINE + 2 * H).timestamp())]}


def test_overlapping_claims_conflict() -> None:
    for start, hours in [
        (NINE, 2),
        (NINE + H, 2),
        (NINE - H, 1.25),
        (NINE - H, 4),
        (NINE + 0.75 * H, 1),
    ]:
        schedule = given(*with_claim())
        with refused(schedule, BookingConflict, "booking_conflict"):
            schedule.claim(SECOND, window(start, hours))


def test_adjacent_windows_are_allowed() -> None:
    history = with_claim()
    schedule = given(*history)
    schedule.claim(SECOND, window(NINE + 2 * H, 1))
    then(
        schedule,
        (
            KitchenSchedule.SlotClaimed,
            {"booking_id": SECOND, "start_time": NINE + 2 * H, "end_time": NINE + 3 * H},
        ),
    )
    schedule = given(*history)
    schedule.claim(SECOND, window(NINE - H, 1))
    assert len(schedule.collect_events()) == 1


def test_reclaim_by_the_same_booking_replaces_its_window() -> None:
    schedule = given(*with_claim())
    schedule.claim(FIRST, window(NINE + H, 2))  # overlaps only its own old claim
    then(
        schedule,
        (
            KitchenSchedule.SlotClaimed,
            {"booking_id": FIRST, "start_time": NINE + H, "end_time": NINE + 3 * H},
        ),
    )
    assert list(schedule.claims) == [str(FIRST)]
    assert schedule.claims[str(FIRST)][0] == int((NINE + H).timestamp())
    schedule.claim(SECOND, window(NINE, 1))
    assert len(schedule.collect_events()) == 1


def test_reclaim_of_the_same_window_records_nothing() -> None:
    schedule = given(*with_claim())
    schedule.claim(FIRST, window(NINE, 2))
    then(schedule)


def test_release_then_claim_again() -> None:
    history = with_claim()
    schedule = given(*history)
    schedule.release(FIRST)
    released = then(schedule, (KitchenSchedule.SlotReleased, {"booking_id": FIRST}))
    assert schedule.claims == {}
    schedule = given(*history, *released)
    schedule.claim(SECOND, window(NINE, 2))
    then(
        schedule,
        (
            KitchenSchedule.SlotClaimed,
            {"booking_id": SECOND, "start_time": NINE, "end_time": NINE + 2 * H},
        ),
    )


def test_release_of_an_unclaimed_booking_records_nothing() -> None:
    schedule = given(*with_claim())
    schedule.release(SECOND)
    then(schedule)
