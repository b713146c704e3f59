"""Jurisdiction rules are data: one entry per jurisdiction, loaded by the kernel from a
TOML file and handed to the domain. Adding a city is adding an entry to that file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aggregates.errors import InvalidRequest

CERTIFICATE_KINDS = frozenset(
    {"health_permit", "business_license", "fire_inspection", "liability_insurance", "food_handler"}
)

MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class JurisdictionRules:
    """What a kitchen in one jurisdiction needs to be bookable."""

    code: str
    name: str
    timezone: str
    required_certificates: frozenset[str]
    opens_at_minute: int
    closes_at_minute: int
    booking_hours_max: int

    def __post_init__(self) -> None:
        assert self.required_certificates <= CERTIFICATE_KINDS, self.required_certificates
        assert 0 <= self.opens_at_minute < self.closes_at_minute <= MINUTES_PER_DAY
        assert self.booking_hours_max > 0
        ZoneInfo(self.timezone)  # an unknown zone fails at load time, not at booking time

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def end_of_day(self, day: date) -> datetime:
        """The last instant ``day`` covers in this jurisdiction (exclusive bound)."""
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone)

    def is_within_operating_hours(self, start: datetime, end: datetime) -> bool:
        local_start = start.astimezone(self.zone)
        local_end = end.astimezone(self.zone)
        day_start = datetime.combine(local_start.date(), time(0), tzinfo=self.zone)
        opens = day_start + timedelta(minutes=self.opens_at_minute)
        closes = day_start + timedelta(minutes=self.closes_at_minute)
        return opens <= local_start and local_end <= closes


def _parse_clock(value: str) -> int:
    hours, _, minutes = value.partition(":")
    minute = int(hours) * 60 + int(minutes or 0)
    if not 0 <= minute <= MINUTES_PER_DAY:
        raise ValueError(f"not a clock time: {value!r}")
    return minute


class JurisdictionCatalog:
    """The jurisdictions the marketplace operates in, by code."""

    def __init__(self, rules: Iterable[JurisdictionRules]) -> None:
        self._rules = {rule.code: rule for rule in rules}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> JurisdictionCatalog:
        """Build from ``{code: {name, timezone, required_certificates, opens_at,
        closes_at, booking_hours_max}}`` as the TOML file holds it."""
        return cls(
            JurisdictionRules(
                code=code,
                name=str(entry["name"]),
                timezone=str(entry["timezone"]),
                required_certificates=frozenset(entry["required_certificates"]),
                opens_at_minute=_parse_clock(str(entry["opens_at"])),
                closes_at_minute=_parse_clock(str(entry["closes_at"])),
                booking_hours_max=int(entry["booking_hours_max"]),
            )
            for code, entry in data.items()
        )

    def get(self, code: str) -> JurisdictionRules:
        try:
            return self._rules[code]
        except KeyError:
            known = ", ".join(sorted(self._rules))
            raise InvalidRequest(
                f"unknown jurisdiction {code!r}; known: {known}", code="unknown_jurisdiction"
            ) from None

    def __contains__(self, code: object) -> bool:
        return code in self._rules

    def codes(self) -> list[str]:
        return sorted(self._rules)
