"""The rules of SPEC §3, written again independently of ``aggregates/policies.py``,
so a property test can say which outcome a command should have had.

Refusals are predicted as a set of acceptable error codes: when a request breaks
several rules, the handler may report any one of them.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from aggregates.jurisdictions import JurisdictionRules

QUARTER = timedelta(minutes=15)
FREE_CANCELLATION_NOTICE = timedelta(hours=48)
HALF_CANCELLATION_NOTICE = timedelta(hours=24)
AUTO_COMPLETE_AFTER = timedelta(hours=24)
GUESTS_MAX = 50


def expected_price_cents(hourly_rate_cents: int, minutes: int) -> int:
    """rate × minutes / 60, rounded half up to the cent."""
    exact = Decimal(hourly_rate_cents) * Decimal(minutes) / Decimal(60)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_commission_cents(captured_cents: int, commission_basis_points: int) -> int:
    """A percentage share, rounded down to the cent."""
    exact = Decimal(captured_cents) * Decimal(commission_basis_points) / Decimal(10_000)
    return int(exact.to_integral_value(rounding="ROUND_FLOOR"))


def expected_customer_cancellation_capture_cents(
    price_cents: int, start: datetime, now: datetime
) -> int:
    """≥ 48 h notice: nothing; 24–48 h: half (rounded down); < 24 h: everything."""
    notice = start - now
    if notice >= FREE_CANCELLATION_NOTICE:
        return 0
    if notice >= HALF_CANCELLATION_NOTICE:
        return price_cents // 2
    return price_cents


def expected_fee_floor_after_reschedule(
    fee_floor_cents: int, price_cents: int, start: datetime, now: datetime
) -> int:
    """Rescheduling can never lower the fee a cancellation would have cost: what a
    customer's cancellation would have captured at the moment of the reschedule (and
    at any earlier reschedule) stays the least any later cancellation captures."""
    return max(
        fee_floor_cents, expected_customer_cancellation_capture_cents(price_cents, start, now)
    )


def inside_operating_hours(start: datetime, end: datetime, rules: JurisdictionRules) -> bool:
    """The window lies within one local day's opening hours (wall-clock time)."""
    local_start = start.astimezone(rules.zone).replace(tzinfo=None)
    local_end = end.astimezone(rules.zone).replace(tzinfo=None)
    midnight = datetime.combine(local_start.date(), time(0))
    opens = midnight + timedelta(minutes=rules.opens_at_minute)
    closes = midnight + timedelta(minutes=rules.closes_at_minute)
    return opens <= local_start and local_end <= closes


def window_refusals(
    *,
    now: datetime,
    start: datetime,
    end: datetime,
    guests: int,
    capacity: int,
    kitchen_status: str,
    rules: JurisdictionRules,
) -> set[str]:
    """Why a new window (booking or reschedule) must be refused, before overlaps and
    money are considered; empty when it may be booked."""
    reasons: set[str] = set()
    if end <= start:
        reasons.add("invalid_time_range")
    if start <= now:
        reasons.add("booking_in_past")
    if end - start < timedelta(hours=1):
        reasons.add("booking_too_short")
    if end - start > timedelta(hours=rules.booking_hours_max):
        reasons.add("booking_too_long")
    for moment in (start, end):
        if moment.second or moment.microsecond or moment.minute % 15:
            reasons.add("booking_not_aligned")
    if not 1 <= guests <= GUESTS_MAX:
        reasons.add("invalid_guests")
    elif guests > capacity:
        reasons.add("guests_over_capacity")
    if kitchen_status != "published":
        reasons.add("kitchen_not_bookable")
    if not inside_operating_hours(start, end, rules):
        reasons.add("outside_operating_hours")
    return reasons


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end
