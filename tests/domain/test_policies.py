"""Pure policies: money arithmetic, cancellation tiers, booking windows, operating hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from aggregates.errors import InvalidRequest, KitchenNotBookable
from aggregates.policies import (
    AMOUNT_CENTS_MAX,
    BookingWindow,
    HoldSplit,
    booking_window,
    captured_in_full,
    check_certificate_current,
    check_guests,
    check_notes,
    check_operating_hours,
    check_positive_amount,
    customer_cancellation_capture_basis_points,
    format_money,
    parse_money,
    price_cents,
    released_in_full,
    settle,
    share_cents,
)
from tests.domain.scenario import LA, NOW, SF, raises_code

LA_WINTER = timezone(timedelta(hours=-8))
H = timedelta(hours=1)
M = timedelta(minutes=1)


# --- money ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "minutes", "cents"),
    [
        (5000, 60, 5000),
        (5000, 90, 7500),
        (1001, 15, 250),  # 250.25 → 250
        (1002, 15, 251),  # 250.5 → 251 (half up)
        (1003, 15, 251),  # 250.75 → 251
        (1, 15, 0),  # 0.25 → 0
        (2, 15, 1),  # 0.5 → 1
        (0, 60, 0),
        (100_000_00, 16 * 60, 1_600_000_00),
    ],
)
def test_price_is_rate_times_minutes_rounded_half_up(rate: int, minutes: int, cents: int) -> None:
    assert price_cents(rate, minutes) == cents


@pytest.mark.parametrize(
    ("amount", "basis_points", "cents"),
    [
        (10000, 1000, 1000),
        (999, 1000, 99),  # 99.9 → 99
        (5001, 5000, 2500),  # 2500.5 → 2500
        (1, 5000, 0),
        (12345, 10000, 12345),
        (12345, 0, 0),
    ],
)
def test_share_rounds_down(amount: int, basis_points: int, cents: int) -> None:
    assert share_cents(amount, basis_points) == cents


@pytest.mark.parametrize(
    ("hold", "captured", "commission_bp", "released", "commission", "host"),
    [
        (10000, 10000, 1000, 0, 1000, 9000),
        (10000, 5000, 1000, 5000, 500, 4500),
        (10001, 5000, 1000, 5001, 500, 4500),
        (999, 999, 1000, 0, 99, 900),  # commission 99.9 → 99, host keeps the remainder
        (10000, 0, 1000, 10000, 0, 0),
        (1, 1, 1000, 0, 0, 1),
    ],
)
def test_settle_splits_a_hold(
    hold: int, captured: int, commission_bp: int, released: int, commission: int, host: int
) -> None:
    settlement = settle(hold, captured, commission_bp)
    assert settlement.captured_cents == captured
    assert settlement.released_cents == released
    assert settlement.captured_cents + settlement.released_cents == hold
    assert settlement.commission_cents == commission
    assert settlement.host_share_cents == host == captured - commission


@pytest.mark.parametrize("hold", [0, 1, 12000])
def test_a_booking_that_ends_without_a_fee_captures_all_or_nothing(hold: int) -> None:
    assert captured_in_full(hold) == HoldSplit(captured_cents=hold, released_cents=0)
    assert released_in_full(hold) == HoldSplit(captured_cents=0, released_cents=hold)


@pytest.mark.parametrize(
    ("text", "cents"),
    [("120.00", 12000), ("120", 12000), ("0.5", 50), ("0.05", 5), ("1.10", 110), ("-3.25", -325)],
)
def test_parse_money(text: str, cents: int) -> None:
    assert parse_money(text) == cents


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1.005", "0.001", "NaN", "Infinity", "1,00", "1e2", " 1.00 ", "1_000", "+1"],
)
def test_parse_money_refuses_non_amounts(text: str) -> None:
    with raises_code(InvalidRequest, "invalid_amount"):
        parse_money(text)


def test_parse_money_refuses_huge_amounts_with_a_domain_error() -> None:
    with raises_code(InvalidRequest, "invalid_amount"):
        parse_money("1e30")


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (12000, "120.00"),
        (5, "0.05"),
        (0, "0.00"),
        (-5, "-0.05"),
        (-12345, "-123.45"),
        (110, "1.10"),
    ],
)
def test_format_money(cents: int, text: str) -> None:
    assert format_money(cents) == text
    assert parse_money(text) == cents


@pytest.mark.parametrize("cents", [1, AMOUNT_CENTS_MAX])
def test_positive_amount_accepts_its_range(cents: int) -> None:
    check_positive_amount(cents)


@pytest.mark.parametrize("cents", [0, -1, AMOUNT_CENTS_MAX + 1])
def test_positive_amount_refuses_outside_its_range(cents: int) -> None:
    with raises_code(InvalidRequest, "invalid_amount"):
        check_positive_amount(cents)


# --- customer cancellation tiers ------------------------------------------------------


@pytest.mark.parametrize(
    ("notice", "basis_points"),
    [
        (timedelta(days=30), 0),
        (48 * H, 0),
        (48 * H - M, 5000),
        (48 * H - timedelta(microseconds=1), 5000),
        (36 * H, 5000),
        (24 * H, 5000),
        (24 * H - M, 10000),
        (timedelta(minutes=1), 10000),
    ],
)
def test_customer_cancellation_tiers(notice: timedelta, basis_points: int) -> None:
    start = NOW + timedelta(days=10)
    assert customer_cancellation_capture_basis_points(start, start - notice) == basis_points


# --- booking windows -------------------------------------------------------------------


START = datetime(2030, 1, 14, 17, 0, tzinfo=UTC)  # 09:00 Los Angeles


def test_booking_window_is_returned_in_utc() -> None:
    local_start = START.astimezone(LA_WINTER)
    window = booking_window(local_start, local_start + 2 * H, now=NOW, rules=LA)
    assert window == BookingWindow(start=START, end=START + 2 * H)
    assert window.start.utcoffset() == timedelta(0)
    assert window.start.tzinfo is UTC
    assert window.minutes == 120


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (START.replace(tzinfo=None), START + 2 * H),
        (START, (START + 2 * H).replace(tzinfo=None)),
        (START.replace(tzinfo=None), (START + 2 * H).replace(tzinfo=None)),
    ],
)
def test_naive_datetimes_are_refused(start: datetime, end: datetime) -> None:
    with raises_code(InvalidRequest, "naive_datetime"):
        booking_window(start, end, now=NOW, rules=LA)


@pytest.mark.parametrize("end", [START, START - H])
def test_end_must_be_after_start(end: datetime) -> None:
    with raises_code(InvalidRequest, "invalid_time_range"):
        booking_window(START, end, now=NOW, rules=LA)


@pytest.mark.parametrize("start", [NOW, NOW - H, NOW - timedelta(days=1)])
def test_start_must_be_in_the_future(start: datetime) -> None:
    with raises_code(InvalidRequest, "booking_in_past"):
        booking_window(start, start + 2 * H, now=NOW, rules=LA)


def test_start_just_after_now_is_allowed() -> None:
    assert booking_window(NOW + 15 * M, NOW + 75 * M, now=NOW, rules=LA).minutes == 60


@pytest.mark.parametrize("length", [15 * M, 45 * M, 60 * M - timedelta(seconds=1)])
def test_a_booking_lasts_at_least_an_hour(length: timedelta) -> None:
    with raises_code(InvalidRequest, "booking_too_short"):
        booking_window(START, START + length, now=NOW, rules=LA)


def test_exactly_one_hour_is_allowed() -> None:
    assert booking_window(START, START + H, now=NOW, rules=LA).minutes == 60


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (START + 10 * M, START + 2 * H + 10 * M),
        (START, START + 2 * H + 5 * M),
        (START + timedelta(seconds=30), START + 2 * H + timedelta(seconds=30)),
        (START, START + 2 * H + timedelta(seconds=1)),
        (START + timedelta(microseconds=1), START + 2 * H + timedelta(microseconds=1)),
    ],
)
def test_times_are_on_15_minute_boundaries(start: datetime, end: datetime) -> None:
    with raises_code(InvalidRequest, "booking_not_aligned"):
        booking_window(start, end, now=NOW, rules=LA)


@pytest.mark.parametrize("offset_minutes", [15, 30, 45])
def test_quarter_hours_are_aligned(offset_minutes: int) -> None:
    start = START + offset_minutes * M
    assert booking_window(start, start + H + 15 * M, now=NOW, rules=LA).minutes == 75


def test_an_offset_of_whole_quarter_hours_keeps_alignment() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    start = START.astimezone(india)  # 22:30 +05:30
    assert booking_window(start, start + 2 * H, now=NOW, rules=LA).start == START


def test_alignment_is_checked_on_the_instant_not_the_offset() -> None:
    odd = timezone(timedelta(minutes=10))
    start = datetime(2030, 1, 14, 18, 0, tzinfo=odd)  # 17:50Z
    with raises_code(InvalidRequest, "booking_not_aligned"):
        booking_window(start, start + 2 * H, now=NOW, rules=LA)


def test_los_angeles_allows_16_hours_not_16_and_a_quarter() -> None:
    assert booking_window(START, START + 16 * H, now=NOW, rules=LA).minutes == 16 * 60
    with raises_code(InvalidRequest, "booking_too_long"):
        booking_window(START, START + 16 * H + 15 * M, now=NOW, rules=LA)


def test_san_francisco_allows_12_hours() -> None:
    assert booking_window(START, START + 12 * H, now=NOW, rules=SF).minutes == 12 * 60
    with raises_code(InvalidRequest, "booking_too_long"):
        booking_window(START, START + 12 * H + 15 * M, now=NOW, rules=SF)


def test_window_days_touch_every_utc_day_end_exclusive() -> None:
    crossing = BookingWindow(
        start=datetime(2030, 1, 14, 23, 0, tzinfo=UTC), end=datetime(2030, 1, 15, 1, 0, tzinfo=UTC)
    )
    assert crossing.days() == [date(2030, 1, 14), date(2030, 1, 15)]
    to_midnight = BookingWindow(
        start=datetime(2030, 1, 14, 22, 0, tzinfo=UTC), end=datetime(2030, 1, 15, 0, 0, tzinfo=UTC)
    )
    assert to_midnight.days() == [date(2030, 1, 14)]
    within = BookingWindow(start=START, end=START + 2 * H)
    assert within.days() == [date(2030, 1, 14)]


def test_window_overlap_is_half_open() -> None:
    window = BookingWindow(start=START, end=START + 2 * H)
    assert window.overlaps(START + H, START + 3 * H)
    assert window.overlaps(START - H, START + 15 * M)
    assert not window.overlaps(START + 2 * H, START + 3 * H)
    assert not window.overlaps(START - H, START)


# --- guests and notes -----------------------------------------------------------------


@pytest.mark.parametrize("guests", [0, -1, 51])
def test_guests_are_between_1_and_50(guests: int) -> None:
    with raises_code(InvalidRequest, "invalid_guests"):
        check_guests(guests, capacity=50)


def test_guests_within_capacity() -> None:
    check_guests(1, capacity=1)
    check_guests(50, capacity=50)
    check_guests(10, capacity=10)
    with raises_code(InvalidRequest, "guests_over_capacity"):
        check_guests(11, capacity=10)


def test_notes_are_at_most_1000_characters() -> None:
    check_notes("")
    check_notes("x" * 1000)
    with raises_code(InvalidRequest, "notes_too_long"):
        check_notes("x" * 1001)


# --- operating hours --------------------------------------------------------------------


def la(day: date, hour: int, minute: int = 0) -> datetime:
    """A Los Angeles wall-clock time as UTC (through the real zone, DST included)."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=LA.zone).astimezone(UTC)


WINTER_DAY = date(2030, 1, 14)


@pytest.mark.parametrize(("start_hour", "end_hour"), [(5, 7), (21, 23), (5, 21), (9, 11)])
def test_inside_operating_hours_boundaries_included(start_hour: int, end_hour: int) -> None:
    check_operating_hours(
        BookingWindow(start=la(WINTER_DAY, start_hour), end=la(WINTER_DAY, end_hour)), LA
    )


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (la(WINTER_DAY, 4, 45), la(WINTER_DAY, 6)),  # opens 05:00
        (la(WINTER_DAY, 22), la(WINTER_DAY, 23, 15)),  # closes 23:00
        (la(WINTER_DAY, 22), la(WINTER_DAY + timedelta(days=1), 1)),  # across local midnight
        (la(WINTER_DAY, 0), la(WINTER_DAY, 2)),
    ],
)
def test_outside_operating_hours(start: datetime, end: datetime) -> None:
    with raises_code(KitchenNotBookable, "outside_operating_hours"):
        check_operating_hours(BookingWindow(start=start, end=end), LA)


def test_san_francisco_hours_are_6_to_22() -> None:
    check_operating_hours(BookingWindow(start=la(WINTER_DAY, 6), end=la(WINTER_DAY, 22)), SF)
    with raises_code(KitchenNotBookable, "outside_operating_hours"):
        check_operating_hours(BookingWindow(start=la(WINTER_DAY, 5), end=la(WINTER_DAY, 7)), SF)
    with raises_code(KitchenNotBookable, "outside_operating_hours"):
        check_operating_hours(BookingWindow(start=la(WINTER_DAY, 21), end=la(WINTER_DAY, 23)), SF)


@pytest.mark.parametrize(
    ("day", "utc_offset_hours"),
    [(date(2030, 3, 10), -7), (date(2030, 11, 3), -8)],  # spring forward, fall back
)
def test_operating_hours_on_a_dst_change_day(day: date, utc_offset_hours: int) -> None:
    opens = datetime(day.year, day.month, day.day, 5, tzinfo=UTC) - timedelta(
        hours=utc_offset_hours
    )
    assert la(day, 5) == opens
    check_operating_hours(BookingWindow(start=opens, end=opens + 2 * H), LA)
    with raises_code(KitchenNotBookable, "outside_operating_hours"):
        check_operating_hours(BookingWindow(start=opens - H, end=opens + H), LA)
    closes = la(day, 23)
    check_operating_hours(BookingWindow(start=closes - 2 * H, end=closes), LA)
    with raises_code(KitchenNotBookable, "outside_operating_hours"):
        check_operating_hours(BookingWindow(start=closes - H, end=closes + H), LA)


def test_a_certificate_counts_through_its_expiry_day_in_local_time() -> None:
    # Los Angeles: 2030-01-06 ends at 2030-01-07T08:00Z.
    last_instant = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
    check_certificate_current(date(2030, 1, 6), last_instant, LA)
    check_certificate_current(date(2030, 1, 7), last_instant, LA)
    with raises_code(InvalidRequest, "invalid_certificate_dates"):
        check_certificate_current(date(2030, 1, 6), last_instant + timedelta(microseconds=1), LA)
