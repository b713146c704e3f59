"""Compliance queries over the ``compliance`` read model (admins only): certificates by
review status, and verified certificates about to expire with the kitchens they keep
bookable."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from aggregates.errors import InvalidRequest, PermissionDenied
from aggregates.kitchen import CERTIFICATE_STATUSES
from projections.compliance import ComplianceProjection
from projections.database import ReadDatabase
from queries.base import Page, PageRequest, Viewer

CERTIFICATES = ComplianceProjection.view("certificates")
KITCHENS = ComplianceProjection.view("kitchens")
WITHIN_DAYS_DEFAULT = 30
WITHIN_DAYS_MIN = 1
WITHIN_DAYS_MAX = 365

_COLUMNS = (
    "c.id, c.kitchen_id, c.host_id, c.kind, c.number, c.issued_on, c.expires_on, c.status, "
    "c.rejection_reason, c.document_sha256, c.attached_at, c.reviewed_at, "
    "k.name AS kitchen_name, k.status AS kitchen_status, k.jurisdiction"
)
_FROM = f"{CERTIFICATES} c JOIN {KITCHENS} k ON k.id = c.kitchen_id"


class AffectedKitchen(BaseModel):
    id: UUID
    name: str
    status: str
    jurisdiction: str


class CertificateRecord(BaseModel):
    """A certificate as admins review it."""

    id: UUID
    kitchen: AffectedKitchen
    host_id: UUID
    kind: str
    number: str
    issued_on: date
    expires_on: date
    status: str
    rejection_reason: str | None
    document_sha256: str
    attached_at: datetime
    reviewed_at: datetime | None


class ExpiringCertificate(CertificateRecord):
    """A verified certificate whose last valid day is within the asked horizon.
    ``days_left`` counts from the given day: 0 expires that day; negative means its
    date has passed and the sweeper has not yet recorded the lapse."""

    days_left: int


def _record_fields(row: dict[str, Any]) -> dict[str, Any]:
    fields = dict(row)
    fields["kitchen"] = AffectedKitchen(
        id=row["kitchen_id"],
        name=row["kitchen_name"],
        status=row["kitchen_status"],
        jurisdiction=row["jurisdiction"],
    )
    return fields


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


class ComplianceQueries:
    def __init__(self, database: ReadDatabase) -> None:
        self._database = database

    def _date(self, value: date) -> date | str:
        return value if self._database.dialect == "postgresql" else value.isoformat()

    def certificates(
        self, viewer: Viewer, *, status: str | None = None, page: PageRequest | None = None
    ) -> Page[CertificateRecord]:
        """Certificates in the order they were attached (admin only: 403 otherwise);
        ``status`` is one of pending, verified, rejected, expired."""
        page = page or PageRequest()
        if not viewer.is_admin:
            raise PermissionDenied("certificates are reviewed by admins")
        if status is not None and status not in CERTIFICATE_STATUSES:
            raise InvalidRequest(
                f"status is one of {', '.join(CERTIFICATE_STATUSES)}", code="invalid_status"
            )
        where = "" if status is None else "WHERE c.status = %s"
        params: list[Any] = [] if status is None else [status]
        with self._database.reading() as sql:
            total = int(sql.scalar(f"SELECT count(*) FROM {_FROM} {where}", params))
            rows = sql.fetchall(
                f"SELECT {_COLUMNS} FROM {_FROM} {where} "
                "ORDER BY c.attached_at, c.id LIMIT %s OFFSET %s",
                [*params, page.limit, page.offset],
            )
        return Page[CertificateRecord](
            items=[CertificateRecord.model_validate(_record_fields(row)) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    def expiring(
        self,
        viewer: Viewer,
        *,
        today: date,
        within_days: int = WITHIN_DAYS_DEFAULT,
        page: PageRequest | None = None,
    ) -> Page[ExpiringCertificate]:
        """Verified certificates whose ``expires_on`` is at most ``within_days`` after
        ``today`` (including any past their date but not yet lapsed), soonest first,
        each with its kitchen (admin only: 403 otherwise)."""
        page = page or PageRequest()
        if not viewer.is_admin:
            raise PermissionDenied("compliance monitoring is for admins")
        if not WITHIN_DAYS_MIN <= within_days <= WITHIN_DAYS_MAX:
            raise InvalidRequest(
                f"within_days is between {WITHIN_DAYS_MIN} and {WITHIN_DAYS_MAX}",
                code="invalid_within_days",
            )
        horizon = today + timedelta(days=within_days)
        where = "WHERE c.status = %s AND c.expires_on <= %s"
        params: list[Any] = ["verified", self._date(horizon)]
        with self._database.reading() as sql:
            total = int(sql.scalar(f"SELECT count(*) FROM {_FROM} {where}", params))
            rows = sql.fetchall(
                f"SELECT {_COLUMNS} FROM {_FROM} {where} "
                "ORDER BY c.expires_on, c.id LIMIT %s OFFSET %s",
                [*params, page.limit, page.offset],
            )
        items = [
            ExpiringCertificate.model_validate(
                {
                    **_record_fields(row),
                    "days_left": (_as_date(row["expires_on"]) - today).days,
                }
            )
            for row in rows
        ]
        return Page[ExpiringCertificate](
            items=items, total=total, limit=page.limit, offset=page.offset
        )
