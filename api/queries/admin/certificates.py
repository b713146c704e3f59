"""Admins review certificates: those in each review status, and those about to expire."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, get_args
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from aggregates.kitchen import CERTIFICATE_STATUSES
from api.deps import AdminUser, ComplianceQueriesDep, ComplianceReadModel, PageParams, TodayUtc
from api.queries.kitchens.schemas import KitchenStatus
from api.queries.params import query_responses
from api.schemas import PageOut
from queries.compliance import (
    WITHIN_DAYS_DEFAULT,
    WITHIN_DAYS_MAX,
    WITHIN_DAYS_MIN,
    CertificateRecord,
    ExpiringCertificate,
)

router = APIRouter(prefix="/admin", tags=["admin"])

CertificateStatus = Literal["pending", "verified", "rejected", "expired"]
assert get_args(CertificateStatus) == CERTIFICATE_STATUSES


class AffectedKitchenOut(BaseModel):
    id: UUID
    name: str = Field(examples=["Sunset Commissary"])
    status: KitchenStatus = Field(examples=["published"])
    jurisdiction: str = Field(examples=["los_angeles"])


class CertificateOut(BaseModel):
    """A certificate as admins review it, with its kitchen."""

    id: UUID
    kitchen: AffectedKitchenOut
    host_id: UUID
    kind: str = Field(examples=["health_permit"])
    number: str = Field(examples=["HP-2030-0042"])
    issued_on: date
    expires_on: date = Field(
        description="Valid through 23:59:59 of this day in the jurisdiction's time zone."
    )
    status: CertificateStatus = Field(examples=["pending"])
    rejection_reason: str | None = Field(examples=[None])
    document_sha256: str = Field(examples=["ab" * 32])
    attached_at: datetime
    reviewed_at: datetime | None

    @classmethod
    def of(cls, record: CertificateRecord) -> CertificateOut:
        return cls(**record.model_dump(include=set(cls.model_fields)))


class CertificatePage(PageOut[CertificateOut]):
    pass


@router.get(
    "/certificates",
    summary="Certificates by review status",
    description="Certificates in the order they were attached, e.g. `status=pending` "
    "for those awaiting review.",
    responses=query_responses(401, 403, 422, 503),
)
def list_certificates(
    admin: AdminUser,
    compliance: ComplianceQueriesDep,
    _: ComplianceReadModel,
    page: PageParams,
    status: Annotated[
        CertificateStatus | None,
        Query(description="Only this status (all if left out).", examples=["pending"]),
    ] = None,
) -> CertificatePage:
    return CertificatePage.of(
        compliance.certificates(admin.viewer, status=status, page=page), CertificateOut.of
    )


class ExpiringCertificateOut(CertificateOut):
    """A verified certificate whose last valid day is within the horizon."""

    days_left: int = Field(
        description="Days from today (UTC) to `expires_on`: 0 expires today; negative means "
        "its date has passed and the sweeper has not recorded the lapse yet.",
        examples=[12],
    )

    @classmethod
    def of_expiring(cls, record: ExpiringCertificate) -> ExpiringCertificateOut:
        return cls(**record.model_dump(include=set(cls.model_fields)))


class ExpiringCertificatePage(PageOut[ExpiringCertificateOut]):
    within_days: int = Field(examples=[30])


@router.get(
    "/compliance/expiring",
    summary="Certificates expiring soon",
    description="Verified certificates whose `expires_on` is at most `within_days` days "
    "from today (UTC), soonest first, each with the kitchen that stops being bookable "
    "when it lapses.",
    responses=query_responses(401, 403, 422, 503),
)
def expiring_certificates(
    admin: AdminUser,
    compliance: ComplianceQueriesDep,
    _: ComplianceReadModel,
    today: TodayUtc,
    page: PageParams,
    within_days: Annotated[
        int,
        Query(
            ge=WITHIN_DAYS_MIN,
            le=WITHIN_DAYS_MAX,
            description=f"The horizon in days ({WITHIN_DAYS_MIN}–{WITHIN_DAYS_MAX}).",
        ),
    ] = WITHIN_DAYS_DEFAULT,
) -> ExpiringCertificatePage:
    expiring = compliance.expiring(admin.viewer, today=today, within_days=within_days, page=page)
    return ExpiringCertificatePage.of(
        expiring, ExpiringCertificateOut.of_expiring, within_days=within_days
    )
