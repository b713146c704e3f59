"""Kitchens: listing details, moderation lifecycle and compliance certificates.

draft ──submit──▶ pending_review ──approve──▶ published ◀──reinstate── suspended
                       │    ▲                     └────────suspend────────▲
                    reject  └──submit── rejected

published ──material edit──▶ pending_review ◀──reinstate, edited materially── suspended

An admin approves what a kitchen is. A material edit of a published kitchen (where it
is, how many it holds: ``MATERIAL_FIELDS``) changes what was approved, so it sends the
kitchen back to ``pending_review``: its existing bookings stand, new ones wait for the
approval. Other edits stay live. Either way, once a kitchen has been approved, the
fields edited since are kept (``changed_since_approval``) for the moderation queue,
until an admin approves the kitchen as it now stands (``approve`` of a published
kitchen with changes accepts them) or reinstates it. A suspended kitchen edited
materially since its approval is not reinstated as it stands: reinstating it sends it
to ``pending_review``, so no edit reaches the public without an admin's review.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import event

from aggregates.base import Aggregate, AggregateCreated, StateObject
from aggregates.errors import (
    InvalidRequest,
    InvalidStateTransition,
    KitchenNotBookable,
    NotFound,
)
from aggregates.jurisdictions import CERTIFICATE_KINDS, JurisdictionRules
from aggregates.policies import HOURLY_RATE_CENTS_MAX, BookingWindow, check_operating_hours
from aggregates.text import check_reason, check_text

SNAPSHOT_INTERVAL = 5
"""A published kitchen has about a dozen events (certificates, their verification, review);
years of edits and renewals add more: every booking loads its kitchen."""

CAPACITY_MIN = 1
CAPACITY_MAX = 50
NAME_LENGTH_MAX = 200
DESCRIPTION_LENGTH_MAX = 5000
CITY_LENGTH_MAX = 100
ADDRESS_LENGTH_MAX = 500
AMENITIES_MAX = 50
AMENITY_LENGTH_MAX = 60
CERTIFICATE_NUMBER_LENGTH_MAX = 100

KITCHEN_STATUSES = ("draft", "pending_review", "published", "rejected", "suspended")
SUBMITTABLE_STATUSES = ("draft", "rejected")
APPROVED_STATUSES = ("published", "suspended")
"""A kitchen in these has passed review: its edits are kept as changed since approval."""
MATERIAL_FIELDS = frozenset({"address", "city", "jurisdiction", "capacity"})
"""Edits of these send a published kitchen back to review. (A kitchen's jurisdiction is
fixed when it is listed; it is named here because it is as material as the rest.)"""
CERTIFICATE_STATUSES = ("pending", "verified", "rejected", "expired")


def normalize_amenities(amenities: list[str]) -> list[str]:
    cleaned = sorted({a.strip().lower() for a in amenities if a.strip()})
    if len(cleaned) > AMENITIES_MAX or any(len(a) > AMENITY_LENGTH_MAX for a in cleaned):
        raise InvalidRequest(
            f"at most {AMENITIES_MAX} amenities of at most {AMENITY_LENGTH_MAX} characters",
            code="invalid_amenities",
        )
    return cleaned


def check_capacity(capacity: int) -> None:
    if not CAPACITY_MIN <= capacity <= CAPACITY_MAX:
        raise InvalidRequest(
            f"capacity is between {CAPACITY_MIN} and {CAPACITY_MAX}", code="invalid_capacity"
        )


def check_hourly_rate(hourly_rate_cents: int) -> None:
    if not 0 < hourly_rate_cents <= HOURLY_RATE_CENTS_MAX:
        raise InvalidRequest(
            "hourly_rate must be positive and at most 100000.00", code="invalid_hourly_rate"
        )


class Kitchen(Aggregate):
    """A licensed commercial kitchen listed by a host."""

    TOPIC: ClassVar[str] = "Kitchen"

    class Event(Aggregate.Event):
        pass

    class KitchenCreated(Event, AggregateCreated):
        TOPIC: ClassVar[str] = "Kitchen.KitchenCreated"
        host_id: UUID
        name: str
        description: str
        city: str
        jurisdiction: str
        address: str
        hourly_rate_cents: int
        capacity: int
        amenities: list[str]
        instant_book: bool

    class KitchenUpdated(Event):
        """Only the fields that changed are set. ``changed_since_approval``: every field
        edited since the kitchen's last approval, these included, for a kitchen that
        has been approved; ``None`` for one that has not (and in events recorded before
        edits were kept)."""

        TOPIC: ClassVar[str] = "Kitchen.KitchenUpdated"
        name: str | None = None
        description: str | None = None
        city: str | None = None
        address: str | None = None
        hourly_rate_cents: int | None = None
        capacity: int | None = None
        amenities: list[str] | None = None
        instant_book: bool | None = None
        changed_since_approval: list[str] | None = None

    class KitchenSentBackForReview(Event):
        """A material edit (``material_fields``) of a published kitchen; or the
        reinstatement of a suspended kitchen with such edits since its approval."""

        TOPIC: ClassVar[str] = "Kitchen.KitchenSentBackForReview"
        material_fields: list[str]

    class KitchenSubmittedForReview(Event):
        TOPIC: ClassVar[str] = "Kitchen.KitchenSubmittedForReview"

    class KitchenApproved(Event):
        TOPIC: ClassVar[str] = "Kitchen.KitchenApproved"

    class KitchenRejected(Event):
        TOPIC: ClassVar[str] = "Kitchen.KitchenRejected"
        reason: str

    class KitchenSuspended(Event):
        TOPIC: ClassVar[str] = "Kitchen.KitchenSuspended"
        reason: str

    class KitchenReinstated(Event):
        TOPIC: ClassVar[str] = "Kitchen.KitchenReinstated"

    class CertificateAttached(Event):
        TOPIC: ClassVar[str] = "Kitchen.CertificateAttached"
        certificate_id: UUID
        kind: str
        number: str
        issued_on: date
        expires_on: date
        document_sha256: str

    class CertificateVerified(Event):
        TOPIC: ClassVar[str] = "Kitchen.CertificateVerified"
        certificate_id: UUID

    class CertificateRejected(Event):
        TOPIC: ClassVar[str] = "Kitchen.CertificateRejected"
        certificate_id: UUID
        reason: str

    class CertificateLapsed(Event):
        """A verified certificate passed its expiry date (recorded by the sweeper)."""

        TOPIC: ClassVar[str] = "Kitchen.CertificateLapsed"
        certificate_id: UUID

    @event(KitchenCreated)
    def __init__(
        self,
        host_id: UUID,
        name: str,
        description: str,
        city: str,
        jurisdiction: str,
        address: str,
        hourly_rate_cents: int,
        capacity: int,
        amenities: list[str],
        instant_book: bool,
    ) -> None:
        self.host_id = host_id
        self.name = name
        self.description = description
        self.city = city
        self.jurisdiction = jurisdiction
        self.address = address
        self.hourly_rate_cents = hourly_rate_cents
        self.capacity = capacity
        self.amenities = list(amenities)
        self.instant_book = instant_book
        self.status = "draft"
        self.status_reason: str | None = None
        self.changed_since_approval: list[str] = []
        self.certificates: dict[UUID, Certificate] = {}

    @classmethod
    def create(
        cls,
        *,
        host_id: UUID,
        name: str,
        description: str,
        city: str,
        jurisdiction: JurisdictionRules,
        address: str,
        hourly_rate_cents: int,
        capacity: int,
        amenities: list[str],
        instant_book: bool,
    ) -> Kitchen:
        check_hourly_rate(hourly_rate_cents)
        check_capacity(capacity)
        return cls(
            host_id=host_id,
            name=check_text("name", name, NAME_LENGTH_MAX),
            description=check_text(
                "description", description, DESCRIPTION_LENGTH_MAX, required=False
            ),
            city=check_text("city", city, CITY_LENGTH_MAX),
            jurisdiction=jurisdiction.code,
            address=check_text("address", address, ADDRESS_LENGTH_MAX),
            hourly_rate_cents=hourly_rate_cents,
            capacity=capacity,
            amenities=normalize_amenities(amenities),
            instant_book=instant_book,
        )

    # --- listing -----------------------------------------------------------------

    def update(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        city: str | None = None,
        address: str | None = None,
        hourly_rate_cents: int | None = None,
        capacity: int | None = None,
        amenities: list[str] | None = None,
        instant_book: bool | None = None,
    ) -> None:
        """Edit the listing. A rate change never touches existing bookings: their price
        was fixed when they were requested. A material edit of a published kitchen
        sends it back to review (see the module's docstring)."""
        changes: dict[str, object] = {}
        if name is not None:
            changes["name"] = check_text("name", name, NAME_LENGTH_MAX)
        if description is not None:
            changes["description"] = check_text(
                "description", description, DESCRIPTION_LENGTH_MAX, required=False
            )
        if city is not None:
            changes["city"] = check_text("city", city, CITY_LENGTH_MAX)
        if address is not None:
            changes["address"] = check_text("address", address, ADDRESS_LENGTH_MAX)
        if hourly_rate_cents is not None:
            check_hourly_rate(hourly_rate_cents)
            changes["hourly_rate_cents"] = hourly_rate_cents
        if capacity is not None:
            check_capacity(capacity)
            changes["capacity"] = capacity
        if amenities is not None:
            changes["amenities"] = normalize_amenities(amenities)
        if instant_book is not None:
            changes["instant_book"] = instant_book
        changed = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not changed:
            return
        keeps_changes = self.status in APPROVED_STATUSES or bool(self.changed_since_approval)
        self._updated(
            **changed,  # type: ignore[arg-type]
            changed_since_approval=sorted({*self.changed_since_approval, *changed})
            if keeps_changes
            else None,
        )
        material = sorted(MATERIAL_FIELDS.intersection(changed))
        if self.status == "published" and material:
            self._sent_back_for_review(material_fields=material)

    @event(KitchenUpdated)
    def _updated(
        self,
        name: str | None = None,
        description: str | None = None,
        city: str | None = None,
        address: str | None = None,
        hourly_rate_cents: int | None = None,
        capacity: int | None = None,
        amenities: list[str] | None = None,
        instant_book: bool | None = None,
        changed_since_approval: list[str] | None = None,
    ) -> None:
        if changed_since_approval is not None:
            self.changed_since_approval = changed_since_approval
        for field, value in (
            ("name", name),
            ("description", description),
            ("city", city),
            ("address", address),
            ("hourly_rate_cents", hourly_rate_cents),
            ("capacity", capacity),
            ("amenities", amenities),
            ("instant_book", instant_book),
        ):
            if value is not None:
                setattr(self, field, value)

    # --- moderation --------------------------------------------------------------

    def _check_status(self, action: str, *allowed: str) -> None:
        if self.status not in allowed:
            raise InvalidStateTransition(
                f"cannot {action} a kitchen that is {self.status}"
                f" (allowed from: {', '.join(allowed)})"
            )

    def submit_for_review(self) -> None:
        self._check_status("submit", *SUBMITTABLE_STATUSES)
        self._submitted()

    def approve(self) -> None:
        """Publish a kitchen under review; or accept the edits of a published kitchen
        changed since its approval."""
        if not (self.status == "published" and self.changed_since_approval):
            self._check_status("approve", "pending_review")
        self._approved()

    def reject(self, reason: str) -> None:
        self._check_status("reject", "pending_review")
        self._rejected(reason=check_reason(reason))

    def suspend(self, reason: str) -> None:
        self._check_status("suspend", "published")
        self._suspended(reason=check_reason(reason))

    def reinstate(self) -> None:
        """Publish a suspended kitchen again — unless its host edited where it is or how
        many it holds since it was approved: then it goes to review, as the same edit of
        a published kitchen would have (see the module's docstring)."""
        self._check_status("reinstate", "suspended")
        material = sorted(MATERIAL_FIELDS.intersection(self.changed_since_approval))
        if material:
            self._sent_back_for_review(material_fields=material)
        else:
            self._reinstated()

    @event(KitchenSubmittedForReview)
    def _submitted(self) -> None:
        self.status = "pending_review"
        self.status_reason = None

    @event(KitchenSentBackForReview)
    def _sent_back_for_review(self, material_fields: list[str]) -> None:
        self.status = "pending_review"
        self.status_reason = None

    @event(KitchenApproved)
    def _approved(self) -> None:
        self.status = "published"
        self.status_reason = None
        self.changed_since_approval = []

    @event(KitchenRejected)
    def _rejected(self, reason: str) -> None:
        self.status = "rejected"
        self.status_reason = reason

    @event(KitchenSuspended)
    def _suspended(self, reason: str) -> None:
        self.status = "suspended"
        self.status_reason = reason

    @event(KitchenReinstated)
    def _reinstated(self) -> None:
        self.status = "published"
        self.status_reason = None
        self.changed_since_approval = []

    # --- certificates ------------------------------------------------------------

    def attach_certificate(
        self,
        *,
        certificate_id: UUID,
        kind: str,
        number: str,
        issued_on: date,
        expires_on: date,
        document_sha256: str,
    ) -> None:
        if kind not in CERTIFICATE_KINDS:
            raise InvalidRequest(
                f"kind must be one of {', '.join(sorted(CERTIFICATE_KINDS))}",
                code="invalid_certificate_kind",
            )
        if expires_on < issued_on:
            raise InvalidRequest(
                "expires_on must not be before issued_on", code="invalid_certificate_dates"
            )
        sha = document_sha256.strip().lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise InvalidRequest(
                "document_sha256 is 64 hexadecimal characters", code="invalid_document_sha256"
            )
        assert certificate_id not in self.certificates
        self._certificate_attached(
            certificate_id=certificate_id,
            kind=kind,
            number=check_text("number", number, CERTIFICATE_NUMBER_LENGTH_MAX),
            issued_on=issued_on,
            expires_on=expires_on,
            document_sha256=sha,
        )

    def _certificate(self, certificate_id: UUID) -> Certificate:
        try:
            return self.certificates[certificate_id]
        except KeyError:
            raise NotFound(
                f"certificate {certificate_id} not found on this kitchen",
                code="certificate_not_found",
            ) from None

    def verify_certificate(self, certificate_id: UUID) -> None:
        certificate = self._certificate(certificate_id)
        if certificate.status != "pending":
            raise InvalidStateTransition(f"cannot verify a {certificate.status} certificate")
        self._certificate_verified(certificate_id=certificate_id)

    def reject_certificate(self, certificate_id: UUID, reason: str) -> None:
        certificate = self._certificate(certificate_id)
        if certificate.status != "pending":
            raise InvalidStateTransition(f"cannot reject a {certificate.status} certificate")
        self._certificate_rejected(certificate_id=certificate_id, reason=check_reason(reason))

    def lapse_expired_certificates(self, now: datetime, rules: JurisdictionRules) -> list[UUID]:
        """Record every verified certificate whose last valid day has passed. Running it
        again records nothing new."""
        lapsed = [
            certificate.certificate_id
            for certificate in self.certificates.values()
            if certificate.status == "verified" and rules.end_of_day(certificate.expires_on) <= now
        ]
        for certificate_id in lapsed:
            self._certificate_lapsed(certificate_id=certificate_id)
        return lapsed

    @event(CertificateAttached)
    def _certificate_attached(
        self,
        certificate_id: UUID,
        kind: str,
        number: str,
        issued_on: date,
        expires_on: date,
        document_sha256: str,
    ) -> None:
        self.certificates[certificate_id] = Certificate(
            certificate_id=certificate_id,
            kind=kind,
            number=number,
            issued_on=issued_on,
            expires_on=expires_on,
            document_sha256=document_sha256,
        )

    @event(CertificateVerified)
    def _certificate_verified(self, certificate_id: UUID) -> None:
        self.certificates[certificate_id].status = "verified"

    @event(CertificateRejected)
    def _certificate_rejected(self, certificate_id: UUID, reason: str) -> None:
        self.certificates[certificate_id].status = "rejected"
        self.certificates[certificate_id].rejection_reason = reason

    @event(CertificateLapsed)
    def _certificate_lapsed(self, certificate_id: UUID) -> None:
        self.certificates[certificate_id].status = "expired"

    # --- snapshots -----------------------------------------------------------------

    @classmethod
    def snapshot_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        certificates = state["certificates"]
        return {
            **state,
            "certificates": {str(key): vars(value) for key, value in certificates.items()},
        }

    @classmethod
    def restored_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        state["host_id"] = UUID(state["host_id"])
        # Snapshots taken before edits were kept have none.
        state.setdefault("changed_since_approval", [])
        state["certificates"] = {
            UUID(key): Certificate.restored(fields) for key, fields in state["certificates"].items()
        }
        return state

    # --- bookability -------------------------------------------------------------

    def compliance_problem(self, rules: JurisdictionRules, valid_through: datetime) -> str | None:
        """``None`` when every required certificate is verified and valid through
        ``valid_through``; otherwise ``certificate_missing`` or ``certificate_expired``."""
        for kind in sorted(rules.required_certificates):
            of_kind = [c for c in self.certificates.values() if c.kind == kind]
            verified = [c for c in of_kind if c.status == "verified"]
            if any(rules.end_of_day(c.expires_on) >= valid_through for c in verified):
                continue
            if verified or any(c.status == "expired" for c in of_kind):
                return "certificate_expired"
            return "certificate_missing"
        return None

    def check_bookable(self, window: BookingWindow, rules: JurisdictionRules) -> None:
        """Published, compliant through the window's end, and inside operating hours."""
        assert rules.code == self.jurisdiction
        if self.status != "published":
            raise KitchenNotBookable(f"the kitchen is {self.status}, not published")
        problem = self.compliance_problem(rules, window.end)
        if problem == "certificate_missing":
            raise KitchenNotBookable(
                "a required certificate is missing or unverified", code=problem
            )
        if problem == "certificate_expired":
            raise KitchenNotBookable(
                "a required certificate expires before the booking ends", code=problem
            )
        check_operating_hours(window, rules)


class Certificate(StateObject):
    """A compliance document attached to a kitchen (state inside the Kitchen aggregate)."""

    def __init__(
        self,
        *,
        certificate_id: UUID,
        kind: str,
        number: str,
        issued_on: date,
        expires_on: date,
        document_sha256: str,
    ) -> None:
        self.certificate_id = certificate_id
        self.kind = kind
        self.number = number
        self.issued_on = issued_on
        self.expires_on = expires_on
        self.document_sha256 = document_sha256
        self.status = "pending"
        self.rejection_reason: str | None = None

    @classmethod
    def restored(cls, fields: dict[str, Any]) -> Certificate:
        """A certificate from its fields as a kitchen's snapshot holds them."""
        certificate = object.__new__(cls)
        certificate.__dict__ = {
            **fields,
            "certificate_id": UUID(fields["certificate_id"]),
            "issued_on": date.fromisoformat(fields["issued_on"]),
            "expires_on": date.fromisoformat(fields["expires_on"]),
        }
        return certificate
