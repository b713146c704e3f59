"""Pure domain policies: money arithmetic, refund tiers, booking windows, compliance.

Money is integer cents. A price is ``rate × minutes / 60`` rounded half up to the cent;
a percentage share (cancellation fee, commission) is rounded down to the cent and the
remainder stays where it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from aggregates.errors import InvalidRequest, KitchenNotBookable
from aggregates.jurisdictions import JurisdictionRules

BASIS_POINTS_WHOLE = 10_000
BOOKING_MINUTES_MIN = 60
BOOKING_ALIGNMENT_MINUTES = 15
GUESTS_MAX = 50
NOTES_LENGTH_MAX = 1000
AMOUNT_CENTS_MAX = 100_000_000_00  # one hundred million dollars: a limit on everything
HOURLY_RATE_CENTS_MAX = 100_000_00


def price_cents(hourly_rate_cents: int, minutes: int) -> int:
    """``rate × minutes / 60``, rounded half up to the cent."""
    assert hourly_rate_cents >= 0 and minutes >= 0
    return (hourly_rate_cents * minutes * 2 + 60) // 120


def share_cents(amount_cents: int, basis_points: int) -> int:
    """A percentage share of ``amount_cents``, rounded down to the cent."""
    assert amount_cents >= 0 and 0 <= basis_points <= BASIS_POINTS_WHOLE
    return amount_cents * basis_points // BASIS_POINTS_WHOLE


MONEY_PATTERN = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,2})?")


def parse_money(text: str) -> int:
    """A decimal string with at most two places (``"120.00"``, ``"120"``) as cents.
    Nothing else: no exponents, separators, spaces or more places."""
    if not MONEY_PATTERN.fullmatch(text):
        raise InvalidRequest(
            f"an amount is a decimal string with at most two places, not {text!r}",
            code="invalid_amount",
        )
    whole, _, part = text.lstrip("-").partition(".")
    cents = int(whole) * 100 + int(part.ljust(2, "0") or "0")
    return -cents if text.startswith("-") else cents


def format_money(cents: int) -> str:
    """Cents as a decimal string with two places: ``12000`` → ``"120.00"``."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def check_positive_amount(amount_cents: int) -> None:
    if not 0 < amount_cents <= AMOUNT_CENTS_MAX:
        raise InvalidRequest(
            f"amount must be greater than 0.00 and at most {format_money(AMOUNT_CENTS_MAX)}",
            code="invalid_amount",
        )


@dataclass(frozen=True)
class Settlement:
    """How a hold ends: what is captured (to the host, minus commission) and what
    is released back to the customer. ``captured + released`` is the hold."""

    captured_cents: int
    released_cents: int
    commission_cents: int

    @property
    def host_share_cents(self) -> int:
        return self.captured_cents - self.commission_cents


def settle(hold_cents: int, captured_cents: int, commission_basis_points: int) -> Settlement:
    """Split a hold: ``captured_cents`` to the host less the platform commission, the
    rest released to the customer."""
    assert 0 <= captured_cents <= hold_cents
    return Settlement(
        captured_cents=captured_cents,
        released_cents=hold_cents - captured_cents,
        commission_cents=share_cents(captured_cents, commission_basis_points),
    )


@dataclass(frozen=True)
class HoldSplit:
    """What a booking's end does with its hold (the booking's price):
    ``captured_cents`` are taken for the host (less commission, see :func:`settle`),
    ``released_cents`` go back to the customer."""

    captured_cents: int
    released_cents: int


def captured_in_full(hold_cents: int) -> HoldSplit:
    """A completed booking: the whole hold is captured."""
    assert hold_cents >= 0
    return HoldSplit(captured_cents=hold_cents, released_cents=0)


def released_in_full(hold_cents: int) -> HoldSplit:
    """A declined or expired booking: nothing is captured, the whole hold is released."""
    assert hold_cents >= 0
    return HoldSplit(captured_cents=0, released_cents=hold_cents)


CANCEL_FREE_NOTICE = timedelta(hours=48)
CANCEL_HALF_NOTICE = timedelta(hours=24)


def customer_cancellation_capture_basis_points(start: datetime, now: datetime) -> int:
    """≥ 48 h before start: nothing captured; 24–48 h: half; < 24 h: all."""
    notice = start - now
    if notice >= CANCEL_FREE_NOTICE:
        return 0
    if notice >= CANCEL_HALF_NOTICE:
        return BASIS_POINTS_WHOLE // 2
    return BASIS_POINTS_WHOLE


def customer_cancellation_fee_cents(
    price_cents: int, start: datetime, now: datetime, *, fee_floor_cents: int
) -> int:
    """What a customer's cancellation at ``now`` captures: the share of ``price_cents``
    its notice calls for, and never less than ``fee_floor_cents``, the fee an earlier
    reschedule locked in (so that rescheduling can never lower what cancelling costs)."""
    assert 0 <= fee_floor_cents <= price_cents
    tier_cents = share_cents(price_cents, customer_cancellation_capture_basis_points(start, now))
    return max(tier_cents, fee_floor_cents)


@dataclass(frozen=True)
class BookingWindow:
    """A validated booking window: aware UTC datetimes on 15-minute boundaries."""

    start: datetime
    end: datetime

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds()) // 60

    def days(self) -> list[date]:
        """The UTC days the window touches (its end is exclusive)."""
        last = (self.end - timedelta(microseconds=1)).date()
        day = self.start.date()
        days = []
        while day <= last:
            days.append(day)
            day += timedelta(days=1)
        return days

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


def booking_window(
    start: datetime, end: datetime, *, now: datetime, rules: JurisdictionRules
) -> BookingWindow:
    """Check the window rules of a booking request and return it in UTC."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidRequest("times need a UTC offset", code="naive_datetime")
    if end <= start:
        raise InvalidRequest("end_time must be after start_time", code="invalid_time_range")
    if start <= now:
        raise InvalidRequest("start_time must be in the future", code="booking_in_past")
    minutes, remainder = divmod((end - start).total_seconds(), 60)
    if minutes < BOOKING_MINUTES_MIN:
        raise InvalidRequest("a booking lasts at least 1 hour", code="booking_too_short")
    for moment in (start, end):
        # On the instant, not the wall clock of whatever offset the client sent.
        if moment.microsecond or moment.timestamp() % (BOOKING_ALIGNMENT_MINUTES * 60):
            raise InvalidRequest(
                "start_time and end_time must be on 15-minute boundaries",
                code="booking_not_aligned",
            )
    assert remainder == 0
    if minutes > rules.booking_hours_max * 60:
        raise InvalidRequest(
            f"a booking in {rules.name} lasts at most {rules.booking_hours_max} hours",
            code="booking_too_long",
        )
    return BookingWindow(start=_utc(start), end=_utc(end))


def check_guests(guests: int, capacity: int) -> None:
    if not 1 <= guests <= GUESTS_MAX:
        raise InvalidRequest(f"guests must be between 1 and {GUESTS_MAX}", code="invalid_guests")
    if guests > capacity:
        raise InvalidRequest(
            f"the kitchen holds at most {capacity} guests", code="guests_over_capacity"
        )


def check_notes(notes: str) -> None:
    if len(notes) > NOTES_LENGTH_MAX:
        raise InvalidRequest(
            f"notes are at most {NOTES_LENGTH_MAX} characters", code="notes_too_long"
        )


def check_certificate_current(expires_on: date, now: datetime, rules: JurisdictionRules) -> None:
    """A certificate attached must not have expired already: it could never count (it
    is valid through the end of ``expires_on`` in the jurisdiction's time zone)."""
    if rules.end_of_day(expires_on) < now:
        raise InvalidRequest(
            f"this certificate expired on {expires_on.isoformat()}; attach a current one",
            code="invalid_certificate_dates",
        )


def check_operating_hours(window: BookingWindow, rules: JurisdictionRules) -> None:
    if not rules.is_within_operating_hours(window.start, window.end):
        raise KitchenNotBookable(
            f"{rules.name} kitchens operate {rules.opens_at_minute // 60:02d}:"
            f"{rules.opens_at_minute % 60:02d}–{rules.closes_at_minute // 60:02d}:"
            f"{rules.closes_at_minute % 60:02d} local time",
            code="outside_operating_hours",
        )


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
