"""Jurisdiction rules are data: the packaged TOML file, and a third city from a dict."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from aggregates.booking import Booking
from aggregates.errors import InvalidRequest, KitchenNotBookable
from aggregates.jurisdictions import JurisdictionCatalog, JurisdictionRules
from aggregates.policies import booking_window, check_operating_hours
from prep_es.store.jurisdiction_rules import packaged_jurisdictions_path
from tests.domain.scenario import (
    CUSTOMER_ID,
    HOST_ID,
    NOW,
    compliant_kitchen,
    given,
    raises_code,
)

ALL_KINDS = frozenset(
    {"health_permit", "business_license", "fire_inspection", "liability_insurance", "food_handler"}
)


def packaged() -> dict[str, Any]:
    return tomllib.loads((packaged_jurisdictions_path()).read_text(encoding="utf-8"))


def test_packaged_catalog_holds_los_angeles_and_san_francisco() -> None:
    catalog = JurisdictionCatalog.from_mapping(packaged())
    assert catalog.codes() == ["los_angeles", "san_francisco"]
    assert catalog.get("los_angeles") == JurisdictionRules(
        code="los_angeles",
        name="Los Angeles",
        timezone="America/Los_Angeles",
        required_certificates=ALL_KINDS - {"food_handler"},
        opens_at_minute=5 * 60,
        closes_at_minute=23 * 60,
        booking_hours_max=16,
    )
    assert catalog.get("san_francisco") == JurisdictionRules(
        code="san_francisco",
        name="San Francisco",
        timezone="America/Los_Angeles",
        required_certificates=ALL_KINDS,
        opens_at_minute=6 * 60,
        closes_at_minute=22 * 60,
        booking_hours_max=12,
    )
    assert "los_angeles" in catalog
    assert "new_york" not in catalog


@pytest.mark.parametrize("code", ["new_york", "", "Los_Angeles"])
def test_unknown_jurisdiction(code: str) -> None:
    catalog = JurisdictionCatalog.from_mapping(packaged())
    with raises_code(InvalidRequest, "unknown_jurisdiction"):
        catalog.get(code)


NEW_YORK = {
    "name": "New York",
    "timezone": "America/New_York",
    "required_certificates": ["health_permit", "food_handler"],
    "opens_at": "07:00",
    "closes_at": "24:00",
    "booking_hours_max": 10,
}


def test_adding_a_city_is_data_only() -> None:
    catalog = JurisdictionCatalog.from_mapping({**packaged(), "new_york": NEW_YORK})
    rules = catalog.get("new_york")
    assert catalog.codes() == ["los_angeles", "new_york", "san_francisco"]
    assert rules.closes_at_minute == 24 * 60

    # 2030-01-14 22:00–24:00 in New York (UTC-5): until closing at local midnight.
    start = datetime(2030, 1, 15, 3, 0, tzinfo=UTC)
    window = booking_window(start, start + timedelta(hours=2), now=NOW, rules=rules)
    kitchen = given(*compliant_kitchen(rules, city="New York"))
    assert kitchen.jurisdiction == "new_york"
    assert sorted(c.kind for c in kitchen.certificates.values()) == [
        "food_handler",
        "health_permit",
    ]
    kitchen.check_bookable(window, rules)
    booking = Booking.request(
        kitchen_id=kitchen.id,
        host_id=HOST_ID,
        customer_id=CUSTOMER_ID,
        window=window,
        guests=4,
        notes="",
        hourly_rate_cents=kitchen.hourly_rate_cents,
        instant_book=kitchen.instant_book,
    )
    assert booking.price_cents == 2 * kitchen.hourly_rate_cents

    with raises_code(InvalidRequest, "booking_too_long"):
        booking_window(start - timedelta(hours=9), start + timedelta(hours=2), now=NOW, rules=rules)
    early = datetime(2030, 1, 14, 11, 0, tzinfo=UTC)  # 06:00 New York
    with raises_code(KitchenNotBookable, "outside_operating_hours"):
        check_operating_hours(
            booking_window(early, early + timedelta(hours=2), now=NOW, rules=rules), rules
        )


def test_end_of_day_is_local_midnight_after_the_date() -> None:
    rules = JurisdictionCatalog.from_mapping(packaged()).get("los_angeles")
    assert rules.end_of_day(date(2030, 1, 10)) == datetime(2030, 1, 11, 8, 0, tzinfo=UTC)
    assert rules.end_of_day(date(2030, 7, 10)) == datetime(2030, 7, 11, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("clock", ["24:01", "25:00", "-1:00", "noon"])
def test_a_malformed_clock_fails_at_load_time(clock: str) -> None:
    with pytest.raises(ValueError, match=r".*"):
        JurisdictionCatalog.from_mapping({"x": {**NEW_YORK, "opens_at": clock}})
