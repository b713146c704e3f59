"""What the kitchen routes answer: the response models, and their JSON written by orjson
straight from the read model (``json_of``, ``summary_json``), byte for byte what the
models would serialize."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final, Literal, get_args
from uuid import UUID

import orjson
from pydantic import BaseModel, Field

from aggregates.kitchen import KITCHEN_STATUSES
from api.schemas import MoneyOut, PageOut, money
from queries.base import Page
from queries.kitchens import (
    KitchenCertificate,
    KitchenCompliance,
    KitchenDetail,
    KitchenSummary,
    OwnedKitchen,
)

KitchenStatus = Literal["draft", "pending_review", "published", "rejected", "suspended"]
assert get_args(KitchenStatus) == KITCHEN_STATUSES


class KitchenSummaryOut(BaseModel):
    """A kitchen as lists show it."""

    id: UUID
    host_id: UUID = Field(description="The host who lists it.")
    name: str = Field(examples=["Sunset Commissary"])
    city: str = Field(examples=["Los Angeles"])
    jurisdiction: str = Field(
        description="Whose rules apply (certificates, hours).", examples=["los_angeles"]
    )
    hourly_rate: MoneyOut
    capacity: int = Field(description="People at once.", examples=[8])
    amenities: list[str] = Field(
        description="Lower case, sorted.", examples=[["oven", "walk-in fridge"]]
    )
    instant_book: bool = Field(description="Bookings are confirmed at once.")
    status: KitchenStatus = Field(examples=["published"])
    status_reason: str | None = Field(
        description="Why it was rejected or suspended.", examples=[None]
    )
    compliant_through: date | None = Field(
        description="The last day every certificate its jurisdiction requires is verified "
        "and valid; null while one is missing.",
        examples=["2031-12-31"],
    )
    created_at: datetime

    @classmethod
    def of(cls, kitchen: KitchenSummary) -> KitchenSummaryOut:
        fields = kitchen.model_dump(include=set(cls.model_fields) - {"hourly_rate"})
        return cls(**fields, hourly_rate=money(kitchen.hourly_rate_cents))


class KitchenPage(PageOut[KitchenSummaryOut]):
    @classmethod
    def json_of(cls, page: Page[KitchenSummary]) -> bytes:
        """The JSON of ``cls.of(page, KitchenSummaryOut.of)``, byte for byte, written by
        orjson straight from the read model: building and validating the response
        models cost ten times more (the read model is ours, and was checked when it was
        built)."""
        items = [summary_json(item) for item in page.items]
        return page_json(items, page.total, page.limit, page.offset)


class KitchenCertificateOut(BaseModel):
    id: UUID
    kind: str = Field(
        description="health_permit, business_license, fire_inspection, "
        "liability_insurance or food_handler",
        examples=["health_permit"],
    )
    number: str = Field(examples=["HP-2030-0042"])
    issued_on: date
    expires_on: date = Field(
        description="Valid through 23:59:59 of this day in the jurisdiction's time zone."
    )
    status: str = Field(description="pending, verified, rejected or expired")

    @classmethod
    def of(cls, certificate: KitchenCertificate) -> KitchenCertificateOut:
        return cls(**certificate.model_dump())


class KitchenComplianceOut(BaseModel):
    """Compliance now, kind by kind: each required kind is covered by a verified
    certificate valid now, ``expired`` (its verified certificates ran out) or
    ``missing`` (none verified)."""

    compliant: bool = Field(description="Every required kind is covered now.")
    compliant_through: date | None = Field(
        description="The last day every required certificate stays valid."
    )
    required_kinds: list[str] = Field(
        examples=[["business_license", "fire_inspection", "health_permit"]]
    )
    missing_kinds: list[str] = Field(examples=[[]])
    expired_kinds: list[str] = Field(examples=[[]])
    certificates: list[KitchenCertificateOut]

    @classmethod
    def of(cls, compliance: KitchenCompliance) -> KitchenComplianceOut:
        return cls(
            **compliance.model_dump(exclude={"certificates"}),
            certificates=[KitchenCertificateOut.of(c) for c in compliance.certificates],
        )


class KitchenDetailOut(KitchenSummaryOut):
    """A kitchen with its description, address and compliance status."""

    description: str = Field(examples=["A clean commercial kitchen near downtown"])
    address: str = Field(examples=["1200 Sunset Blvd"])
    status_changed_at: datetime
    updated_at: datetime
    version: int = Field(description="The kitchen aggregate's version the read model has.")
    compliance: KitchenComplianceOut

    @classmethod
    def of_detail(cls, kitchen: KitchenDetail) -> KitchenDetailOut:
        fields = kitchen.model_dump(include=set(cls.model_fields) - {"hourly_rate", "compliance"})
        return cls(
            **fields,
            hourly_rate=money(kitchen.hourly_rate_cents),
            compliance=KitchenComplianceOut.of(kitchen.compliance),
        )

    @classmethod
    def json_of(cls, kitchen: KitchenDetail) -> bytes:
        """The JSON of ``cls.of_detail(kitchen)``, byte for byte (see
        ``KitchenPage.json_of``)."""
        compliance = kitchen.compliance
        document = _summary_document(kitchen, _DETAIL_FIELDS)
        document["compliance"] = {
            **{name: getattr(compliance, name) for name in _COMPLIANCE_FIELDS},
            "certificates": [
                {name: getattr(certificate, name) for name in _CERTIFICATE_FIELDS}
                for certificate in compliance.certificates
            ],
        }
        return orjson.dumps(document, option=orjson.OPT_UTC_Z)


class OwnedKitchenOut(KitchenSummaryOut):
    """A kitchen the caller hosts, in any status, with every certificate attached to
    it."""

    description: str
    address: str
    status_changed_at: datetime
    updated_at: datetime
    version: int
    certificates: list[KitchenCertificateOut]

    @classmethod
    def of_owned(cls, kitchen: OwnedKitchen) -> OwnedKitchenOut:
        fields = kitchen.model_dump(include=set(cls.model_fields) - {"hourly_rate", "certificates"})
        return cls(
            **fields,
            hourly_rate=money(kitchen.hourly_rate_cents),
            certificates=[KitchenCertificateOut.of(c) for c in kitchen.certificates],
        )


_SUMMARY_FIELDS: Final = tuple(KitchenSummaryOut.model_fields)
_DETAIL_FIELDS: Final = tuple(KitchenDetailOut.model_fields)
_COMPLIANCE_FIELDS: Final = tuple(
    name for name in KitchenComplianceOut.model_fields if name != "certificates"
)
_CERTIFICATE_FIELDS: Final = tuple(KitchenCertificateOut.model_fields)


def summary_json(kitchen: KitchenSummary) -> bytes:
    """A kitchen's JSON in a search page: ``KitchenSummaryOut.of(kitchen)``'s."""
    return orjson.dumps(_summary_document(kitchen), option=orjson.OPT_UTC_Z)


def page_json(items: list[bytes], total: int, limit: int, offset: int) -> bytes:
    """A search page's JSON from its kitchens' (``summary_json``), as orjson writes a
    ``KitchenPage``: compact, fields in order."""
    return b'{"items":[%b],"total":%d,"limit":%d,"offset":%d}' % (
        b",".join(items),
        total,
        limit,
        offset,
    )


def _summary_document(
    kitchen: KitchenSummary, fields: tuple[str, ...] = _SUMMARY_FIELDS
) -> dict[str, Any]:
    """A kitchen's fields in the response model's order; the rate as money. (Fields of a
    nested model, such as a detail's ``compliance``, are left for the caller.)"""
    return {
        name: money(kitchen.hourly_rate_cents) if name == "hourly_rate" else getattr(kitchen, name)
        for name in fields
        if name != "compliance"
    }
