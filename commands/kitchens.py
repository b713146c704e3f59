"""Kitchen commands: listing, moderation and certificates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from aggregates.errors import NotFound, PermissionDenied, StateConflict
from aggregates.jurisdictions import JurisdictionCatalog
from aggregates.kitchen import Certificate, Kitchen
from aggregates.policies import check_certificate_current
from aggregates.user import User
from commands.clock import Clock
from commands.context import Actor, CommandContext, require_role
from commands.processor import CommandProcessor, Executed
from commands.unit_of_work import UnitOfWork


class CreateKitchen(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    city: str
    jurisdiction: str
    address: str
    hourly_rate_cents: int
    capacity: int
    amenities: list[str] = Field(default_factory=list)
    instant_book: bool = False


class UpdateKitchen(BaseModel):
    """Only the fields given change."""

    model_config = ConfigDict(frozen=True)

    kitchen_id: UUID
    name: str | None = None
    description: str | None = None
    city: str | None = None
    address: str | None = None
    hourly_rate_cents: int | None = None
    capacity: int | None = None
    amenities: list[str] | None = None
    instant_book: bool | None = None


class KitchenAction(BaseModel):
    """A moderation step on a kitchen (submit, approve, reinstate)."""

    model_config = ConfigDict(frozen=True)

    kitchen_id: UUID


class KitchenActionWithReason(BaseModel):
    """A moderation step that needs a reason (reject, suspend)."""

    model_config = ConfigDict(frozen=True)

    kitchen_id: UUID
    reason: str


class AttachCertificate(BaseModel):
    model_config = ConfigDict(frozen=True)

    kitchen_id: UUID
    kind: str
    number: str
    issued_on: date
    expires_on: date
    document_sha256: str


class CertificateAction(BaseModel):
    model_config = ConfigDict(frozen=True)

    kitchen_id: UUID
    certificate_id: UUID
    reason: str | None = None


class CertificateState(BaseModel):
    id: UUID
    kitchen_id: UUID
    kind: str
    number: str
    issued_on: date
    expires_on: date
    document_sha256: str
    status: str
    rejection_reason: str | None

    @classmethod
    def of(cls, kitchen_id: UUID, certificate: Certificate) -> CertificateState:
        return cls(
            id=certificate.certificate_id,
            kitchen_id=kitchen_id,
            kind=certificate.kind,
            number=certificate.number,
            issued_on=certificate.issued_on,
            expires_on=certificate.expires_on,
            document_sha256=certificate.document_sha256,
            status=certificate.status,
            rejection_reason=certificate.rejection_reason,
        )


class KitchenState(BaseModel):
    id: UUID
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
    status: str
    status_reason: str | None
    changed_since_approval: list[str]
    compliance_problem: str | None
    certificates: list[CertificateState]
    version: int

    @classmethod
    def of(cls, kitchen: Kitchen, compliance_problem: str | None) -> KitchenState:
        return cls(
            id=kitchen.id,
            host_id=kitchen.host_id,
            name=kitchen.name,
            description=kitchen.description,
            city=kitchen.city,
            jurisdiction=kitchen.jurisdiction,
            address=kitchen.address,
            hourly_rate_cents=kitchen.hourly_rate_cents,
            capacity=kitchen.capacity,
            amenities=list(kitchen.amenities),
            instant_book=kitchen.instant_book,
            status=kitchen.status,
            status_reason=kitchen.status_reason,
            changed_since_approval=list(kitchen.changed_since_approval),
            compliance_problem=compliance_problem,
            certificates=[
                CertificateState.of(kitchen.id, c) for c in kitchen.certificates.values()
            ],
            version=kitchen.version,
        )


def load_owned_kitchen(unit: UnitOfWork, kitchen_id: UUID, actor: Actor) -> Kitchen:
    """The kitchen, if ``actor`` is its host. Another host may not change it: 403 for
    a published kitchen (anyone can see it), 404 for the others, which are invisible to
    anyone but their host and admins."""
    kitchen = unit.get(Kitchen, kitchen_id, not_found_code="kitchen_not_found")
    if kitchen.host_id != actor.user_id:
        if kitchen.status == "published":
            raise PermissionDenied(f"kitchen {kitchen_id} belongs to another host")
        raise NotFound(f"kitchen {kitchen_id} not found", code="kitchen_not_found")
    return kitchen


class KitchenCommands:
    def __init__(
        self, processor: CommandProcessor, jurisdictions: JurisdictionCatalog, clock: Clock
    ) -> None:
        self._processor = processor
        self._jurisdictions = jurisdictions
        self._clock = clock

    def _state(self, kitchen: Kitchen) -> KitchenState:
        rules = self._jurisdictions.get(kitchen.jurisdiction)
        return KitchenState.of(kitchen, kitchen.compliance_problem(rules, self._clock()))

    def create_kitchen(
        self, command: CreateKitchen, context: CommandContext
    ) -> Executed[KitchenState]:
        host = require_role(context, "host")
        rules = self._jurisdictions.get(command.jurisdiction)

        def decide(unit: UnitOfWork) -> KitchenState:
            kitchen = Kitchen.create(
                host_id=host.user_id,
                name=command.name,
                description=command.description,
                city=command.city,
                jurisdiction=rules,
                address=command.address,
                hourly_rate_cents=command.hourly_rate_cents,
                capacity=command.capacity,
                amenities=command.amenities,
                instant_book=command.instant_book,
            )
            unit.add(kitchen)
            return self._state(kitchen)

        return self._processor.execute("create_kitchen", context, command, KitchenState, decide)

    def update_kitchen(
        self, command: UpdateKitchen, context: CommandContext
    ) -> Executed[KitchenState]:
        host = require_role(context, "host")

        def decide(unit: UnitOfWork) -> KitchenState:
            kitchen = load_owned_kitchen(unit, command.kitchen_id, host)
            kitchen.update(**command.model_dump(exclude={"kitchen_id"}))
            return self._state(kitchen)

        return self._processor.execute("update_kitchen", context, command, KitchenState, decide)

    def submit_kitchen(
        self, command: KitchenAction, context: CommandContext
    ) -> Executed[KitchenState]:
        host = require_role(context, "host")
        return self._run(
            "submit_kitchen",
            command,
            context,
            lambda unit: load_owned_kitchen(unit, command.kitchen_id, host),
            Kitchen.submit_for_review,
        )

    def approve_kitchen(
        self, command: KitchenAction, context: CommandContext
    ) -> Executed[KitchenState]:
        return self._moderate(
            "approve_kitchen", command, context, Kitchen.approve, self._hosted_loader
        )

    def reject_kitchen(
        self, command: KitchenActionWithReason, context: CommandContext
    ) -> Executed[KitchenState]:
        return self._moderate(
            "reject_kitchen", command, context, lambda kitchen: kitchen.reject(command.reason)
        )

    def suspend_kitchen(
        self, command: KitchenActionWithReason, context: CommandContext
    ) -> Executed[KitchenState]:
        return self._moderate(
            "suspend_kitchen", command, context, lambda kitchen: kitchen.suspend(command.reason)
        )

    def reinstate_kitchen(
        self, command: KitchenAction, context: CommandContext
    ) -> Executed[KitchenState]:
        return self._moderate(
            "reinstate_kitchen", command, context, Kitchen.reinstate, self._hosted_loader
        )

    def _moderate(
        self,
        command_name: str,
        command: KitchenAction | KitchenActionWithReason,
        context: CommandContext,
        change: Callable[[Kitchen], None],
        loader: Callable[[UUID], Callable[[UnitOfWork], Kitchen]] | None = None,
    ) -> Executed[KitchenState]:
        """An admin's lifecycle step on any kitchen (loaded by ``loader``: by default
        whatever its host)."""
        require_role(context, "admin")
        load = (loader or self._loader)(command.kitchen_id)
        return self._run(command_name, command, context, load, change)

    def attach_certificate(
        self, command: AttachCertificate, context: CommandContext
    ) -> Executed[CertificateState]:
        host = require_role(context, "host")

        def decide(unit: UnitOfWork) -> CertificateState:
            kitchen = load_owned_kitchen(unit, command.kitchen_id, host)
            rules = self._jurisdictions.get(kitchen.jurisdiction)
            check_certificate_current(command.expires_on, self._clock(), rules)
            certificate_id = uuid4()
            kitchen.attach_certificate(
                certificate_id=certificate_id,
                kind=command.kind,
                number=command.number,
                issued_on=command.issued_on,
                expires_on=command.expires_on,
                document_sha256=command.document_sha256,
            )
            return CertificateState.of(kitchen.id, kitchen.certificates[certificate_id])

        return self._processor.execute(
            "attach_certificate", context, command, CertificateState, decide
        )

    def verify_certificate(
        self, command: CertificateAction, context: CommandContext
    ) -> Executed[CertificateState]:
        require_role(context, "admin")
        return self._run_certificate(
            "verify_certificate",
            command,
            context,
            lambda kitchen: kitchen.verify_certificate(command.certificate_id),
        )

    def reject_certificate(
        self, command: CertificateAction, context: CommandContext
    ) -> Executed[CertificateState]:
        require_role(context, "admin")
        return self._run_certificate(
            "reject_certificate",
            command,
            context,
            lambda kitchen: kitchen.reject_certificate(
                command.certificate_id, command.reason or ""
            ),
        )

    def _loader(self, kitchen_id: UUID) -> Callable[[UnitOfWork], Kitchen]:
        return lambda unit: unit.get(Kitchen, kitchen_id, not_found_code="kitchen_not_found")

    def _hosted_loader(self, kitchen_id: UUID) -> Callable[[UnitOfWork], Kitchen]:
        """The kitchen, for a step that puts it on the market: refused once its host is
        erased (an erasure takes the host's kitchens off the market, and no one could
        confirm their bookings). The host is read, so an erasure committed meanwhile
        makes this step decide again."""

        def load(unit: UnitOfWork) -> Kitchen:
            kitchen = unit.get(Kitchen, kitchen_id, not_found_code="kitchen_not_found")
            host = unit.find(User, kitchen.host_id)
            if host is None or host.erased:
                raise StateConflict(
                    f"the host of kitchen {kitchen_id} was erased: it cannot be on the market",
                    code="host_erased",
                )
            return kitchen

        return load

    def _run(
        self,
        command_name: str,
        command: BaseModel,
        context: CommandContext,
        load: Callable[[UnitOfWork], Kitchen],
        change: Callable[[Kitchen], None],
    ) -> Executed[KitchenState]:
        def decide(unit: UnitOfWork) -> KitchenState:
            kitchen = load(unit)
            change(kitchen)
            return self._state(kitchen)

        return self._processor.execute(command_name, context, command, KitchenState, decide)

    def _run_certificate(
        self,
        command_name: str,
        command: CertificateAction,
        context: CommandContext,
        change: Callable[[Kitchen], None],
    ) -> Executed[CertificateState]:
        def decide(unit: UnitOfWork) -> CertificateState:
            kitchen = unit.get(Kitchen, command.kitchen_id, not_found_code="kitchen_not_found")
            change(kitchen)
            return CertificateState.of(kitchen.id, kitchen.certificates[command.certificate_id])

        return self._processor.execute(command_name, context, command, CertificateState, decide)
