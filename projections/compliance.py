"""Compliance: every certificate attached to a kitchen, for admins reviewing documents
and watching expiry dates, with the kitchen each one belongs to.

Tables: ``certificates`` (one row per certificate, indexed by status and by expiry) and
``kitchens`` (name, host and lifecycle status of kitchens, to say which kitchens an
expiring certificate affects).
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from aggregates.kitchen import Kitchen
from projections.base import Projection, fold
from projections.database import Dialect, Sql


class ComplianceProjection(Projection):
    name: ClassVar[str] = "compliance"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("certificates", "kitchens")

    def __init__(self, generation: int, dialect: Dialect) -> None:
        super().__init__(generation, dialect)
        self._hosts: dict[UUID, Any] = {}

    def create_tables(self, sql: Sql) -> None:
        certificates = self.table("certificates")
        sql.execute(
            f"CREATE TABLE {certificates} (id {self.column('id')} PRIMARY KEY, "
            f"kitchen_id {self.column('id')} NOT NULL, "
            f"host_id {self.column('id')} NOT NULL, "
            "kind text NOT NULL, number text NOT NULL, "
            f"issued_on {self.column('date')} NOT NULL, "
            f"expires_on {self.column('date')} NOT NULL, "
            "status text NOT NULL, rejection_reason text, document_sha256 text NOT NULL, "
            f"attached_at {self.column('time')} NOT NULL, "
            f"reviewed_at {self.column('time')}, "
            f"updated_at {self.column('time')} NOT NULL)"
        )
        sql.execute(
            f"CREATE INDEX {certificates}_status ON {certificates} (status, attached_at, id)"
        )
        sql.execute(
            f"CREATE INDEX {certificates}_expiry ON {certificates} (status, expires_on, id)"
        )
        sql.execute(f"CREATE INDEX {certificates}_kitchen ON {certificates} (kitchen_id)")
        kitchens = self.table("kitchens")
        sql.execute(
            f"CREATE TABLE {kitchens} (id {self.column('id')} PRIMARY KEY, "
            f"host_id {self.column('id')} NOT NULL, name text NOT NULL, "
            "jurisdiction text NOT NULL, status text NOT NULL)"
        )

    @fold(Kitchen.KitchenCreated)
    def _created(self, event: Kitchen.KitchenCreated, position: int, sql: Sql) -> None:
        self.changed.add(self.name)
        self._hosts[event.originator_id] = self.id_value(event.host_id)
        sql.execute(
            f"INSERT INTO {self.table('kitchens')} (id, host_id, name, jurisdiction, status) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.originator_id),
                self.id_value(event.host_id),
                event.name,
                event.jurisdiction,
                "draft",
            ),
        )

    @fold(Kitchen.KitchenUpdated)
    def _updated(self, event: Kitchen.KitchenUpdated, position: int, sql: Sql) -> None:
        if event.name is not None:
            self.changed.add(self.name)
            sql.execute(
                f"UPDATE {self.table('kitchens')} SET name = %s WHERE id = %s",
                (event.name, self.id_value(event.originator_id)),
            )

    def _kitchen_status(self, sql: Sql, kitchen_id: UUID, status: str) -> None:
        self.changed.add(self.name)
        sql.execute(
            f"UPDATE {self.table('kitchens')} SET status = %s WHERE id = %s",
            (status, self.id_value(kitchen_id)),
        )

    @fold(Kitchen.KitchenSubmittedForReview)
    def _submitted(self, event: Kitchen.KitchenSubmittedForReview, position: int, sql: Sql) -> None:
        self._kitchen_status(sql, event.originator_id, "pending_review")

    @fold(Kitchen.KitchenSentBackForReview)
    def _sent_back(self, event: Kitchen.KitchenSentBackForReview, position: int, sql: Sql) -> None:
        self._kitchen_status(sql, event.originator_id, "pending_review")

    @fold(Kitchen.KitchenApproved)
    def _approved(self, event: Kitchen.KitchenApproved, position: int, sql: Sql) -> None:
        self._kitchen_status(sql, event.originator_id, "published")

    @fold(Kitchen.KitchenRejected)
    def _rejected(self, event: Kitchen.KitchenRejected, position: int, sql: Sql) -> None:
        self._kitchen_status(sql, event.originator_id, "rejected")

    @fold(Kitchen.KitchenSuspended)
    def _suspended(self, event: Kitchen.KitchenSuspended, position: int, sql: Sql) -> None:
        self._kitchen_status(sql, event.originator_id, "suspended")

    @fold(Kitchen.KitchenReinstated)
    def _reinstated(self, event: Kitchen.KitchenReinstated, position: int, sql: Sql) -> None:
        self._kitchen_status(sql, event.originator_id, "published")

    def _host_id(self, sql: Sql, kitchen_id: UUID) -> Any:
        """The kitchen's host (as stored): a kitchen's host never changes, so it is kept
        once known, and asked of the table only for kitchens created before this
        process started following them."""
        host_id = self._hosts.get(kitchen_id)
        if host_id is None:
            host_id = sql.scalar(
                f"SELECT host_id FROM {self.table('kitchens')} WHERE id = %s",
                (self.id_value(kitchen_id),),
            )
            assert host_id is not None, f"certificate of unknown kitchen {kitchen_id}"
            self._hosts[kitchen_id] = host_id
        return host_id

    @fold(Kitchen.CertificateAttached)
    def _attached(self, event: Kitchen.CertificateAttached, position: int, sql: Sql) -> None:
        self.changed.add(self.name)
        host_id = self._host_id(sql, event.originator_id)
        attached_at = self.time_value(event.timestamp)
        sql.execute(
            f"INSERT INTO {self.table('certificates')} (id, kitchen_id, host_id, kind, "
            "number, issued_on, expires_on, status, rejection_reason, document_sha256, "
            "attached_at, reviewed_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, NULL, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (
                self.id_value(event.certificate_id),
                self.id_value(event.originator_id),
                host_id,
                event.kind,
                event.number,
                self.date_value(event.issued_on),
                self.date_value(event.expires_on),
                "pending",
                event.document_sha256,
                attached_at,
                attached_at,
            ),
        )

    @fold(Kitchen.CertificateVerified)
    def _verified(self, event: Kitchen.CertificateVerified, position: int, sql: Sql) -> None:
        self._reviewed(sql, event, event.certificate_id, "verified", None)

    @fold(Kitchen.CertificateRejected)
    def _certificate_rejected(
        self, event: Kitchen.CertificateRejected, position: int, sql: Sql
    ) -> None:
        self._reviewed(sql, event, event.certificate_id, "rejected", event.reason)

    @fold(Kitchen.CertificateLapsed)
    def _lapsed(self, event: Kitchen.CertificateLapsed, position: int, sql: Sql) -> None:
        self.changed.add(self.name)
        sql.execute(
            f"UPDATE {self.table('certificates')} SET status = %s, updated_at = %s WHERE id = %s",
            ("expired", self.time_value(event.timestamp), self.id_value(event.certificate_id)),
        )

    def _reviewed(
        self,
        sql: Sql,
        event: Kitchen.Event,
        certificate_id: UUID,
        status: str,
        reason: str | None,
    ) -> None:
        self.changed.add(self.name)
        recorded_at = self.time_value(event.timestamp)
        sql.execute(
            f"UPDATE {self.table('certificates')} SET status = %s, rejection_reason = %s, "
            "reviewed_at = %s, updated_at = %s WHERE id = %s",
            (status, reason, recorded_at, recorded_at, self.id_value(certificate_id)),
        )
