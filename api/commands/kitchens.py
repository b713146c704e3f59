"""Kitchen commands over HTTP: a host lists a kitchen, edits it, submits it for review
and attaches compliance certificates. (Moderation is in ``api.commands.admin``.)"""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from api.commands.execution import execute
from api.deps import Command, KitchenCommandsDep
from api.schemas import (
    Day,
    MoneyIn,
    MoneyOut,
    PositionField,
    RequestBody,
    cents,
    kitchen_fields_out,
    money,
    problems,
)
from commands.kitchens import (
    AttachCertificate,
    CertificateState,
    CreateKitchen,
    KitchenAction,
    KitchenState,
    UpdateKitchen,
)

router = APIRouter(prefix="/kitchens", tags=["kitchens"])

KitchenId = Annotated[UUID, Path(description="The kitchen's id.")]

# Bounds on sizes only; the rules (lengths, ranges, known kinds) are the domain's, which
# answers 422 with a specific code.
TEXT_LENGTH_BOUND = 10_000
SHORT_TEXT_LENGTH_BOUND = 1_000
AMENITIES_BOUND = 200


class CertificateOut(BaseModel):
    """A compliance certificate attached to a kitchen."""

    id: UUID
    kitchen_id: UUID
    kind: str = Field(examples=["health_permit"])
    number: str = Field(examples=["HP-2030-0042"])
    issued_on: date
    expires_on: date = Field(
        description="Valid through 23:59:59 of this day in the kitchen's jurisdiction."
    )
    document_sha256: str
    status: str = Field(description="pending, verified, rejected or expired")
    rejection_reason: str | None
    position: PositionField

    @classmethod
    def of(cls, state: CertificateState, position: int) -> CertificateOut:
        return cls(**state.model_dump(), position=position)


class KitchenOut(BaseModel):
    """A kitchen as the write model has it after the command."""

    id: UUID
    host_id: UUID
    name: str = Field(examples=["Sunset Commissary"])
    description: str
    city: str = Field(examples=["Los Angeles"])
    jurisdiction: str = Field(examples=["los_angeles"])
    address: str
    hourly_rate: MoneyOut
    capacity: int = Field(examples=[8])
    amenities: list[str] = Field(examples=[["walk-in fridge", "convection oven"]])
    instant_book: bool
    status: str = Field(
        description="draft, pending_review, published, rejected or suspended",
        examples=["draft"],
    )
    status_reason: str | None = Field(description="Why it was rejected or suspended.")
    changed_since_approval: list[str] = Field(
        description="The fields edited since an admin last approved the kitchen (empty for "
        "one never approved). An edit of `address`, `city` or `capacity` sends a published "
        "kitchen back to `pending_review`; other edits stay live.",
        examples=[["description", "name"]],
    )
    compliance_problem: str | None = Field(
        description="Why it cannot be booked now as far as certificates go "
        "(`certificate_missing`, `certificate_expired`), or null.",
        examples=["certificate_missing"],
    )
    certificates: list[CertificateOut]
    version: int = Field(description="The kitchen aggregate's version.")
    position: PositionField

    @classmethod
    def of(cls, state: KitchenState, position: int) -> KitchenOut:
        fields = state.model_dump(
            exclude={"hourly_rate_cents", "certificates", "changed_since_approval"}
        )
        return cls(
            **fields,
            hourly_rate=money(state.hourly_rate_cents),
            changed_since_approval=kitchen_fields_out(state.changed_since_approval),
            certificates=[
                CertificateOut.of(certificate, position) for certificate in state.certificates
            ],
            position=position,
        )


class CreateKitchenBody(RequestBody):
    name: str = Field(max_length=SHORT_TEXT_LENGTH_BOUND, examples=["Sunset Commissary"])
    description: str = Field(
        default="", max_length=TEXT_LENGTH_BOUND, examples=["A clean commercial kitchen"]
    )
    city: str = Field(max_length=SHORT_TEXT_LENGTH_BOUND, examples=["Los Angeles"])
    jurisdiction: str = Field(
        max_length=SHORT_TEXT_LENGTH_BOUND,
        description="Whose rules apply: `los_angeles` or `san_francisco` (configurable).",
        examples=["los_angeles"],
    )
    address: str = Field(max_length=SHORT_TEXT_LENGTH_BOUND, examples=["1200 Sunset Blvd"])
    hourly_rate: MoneyIn
    capacity: int = Field(description="People at once, 1–50.", examples=[8])
    amenities: list[Annotated[str, Field(max_length=SHORT_TEXT_LENGTH_BOUND)]] = Field(
        default_factory=list, max_length=AMENITIES_BOUND, examples=[["walk-in fridge"]]
    )
    instant_book: bool = Field(
        default=False, description="Bookings are confirmed at once, without the host."
    )

    def to_command(self) -> CreateKitchen:
        return CreateKitchen(
            **self.model_dump(exclude={"hourly_rate"}), hourly_rate_cents=cents(self.hourly_rate)
        )


class UpdateKitchenBody(RequestBody):
    """Only the fields given change (null counts as not given)."""

    name: str | None = Field(default=None, max_length=SHORT_TEXT_LENGTH_BOUND)
    description: str | None = Field(default=None, max_length=TEXT_LENGTH_BOUND)
    city: str | None = Field(default=None, max_length=SHORT_TEXT_LENGTH_BOUND)
    address: str | None = Field(default=None, max_length=SHORT_TEXT_LENGTH_BOUND)
    hourly_rate: MoneyIn | None = Field(
        default=None,
        description="The new rate applies to bookings requested from now on; existing "
        "bookings keep their price.",
    )
    capacity: int | None = None
    amenities: list[Annotated[str, Field(max_length=SHORT_TEXT_LENGTH_BOUND)]] | None = Field(
        default=None, max_length=AMENITIES_BOUND
    )
    instant_book: bool | None = None

    def to_command(self, kitchen_id: UUID) -> UpdateKitchen:
        return UpdateKitchen(
            kitchen_id=kitchen_id,
            **self.model_dump(exclude={"hourly_rate"}),
            hourly_rate_cents=None if self.hourly_rate is None else cents(self.hourly_rate),
        )


class AttachCertificateBody(RequestBody):
    kind: str = Field(
        max_length=SHORT_TEXT_LENGTH_BOUND,
        description="health_permit, business_license, fire_inspection, "
        "liability_insurance or food_handler",
        examples=["health_permit"],
    )
    number: str = Field(max_length=SHORT_TEXT_LENGTH_BOUND, examples=["HP-2030-0042"])
    issued_on: Day = Field(examples=["2030-01-01"])
    expires_on: Day = Field(examples=["2031-12-31"])
    document_sha256: str = Field(
        max_length=SHORT_TEXT_LENGTH_BOUND,
        description="SHA-256 of the scanned document, 64 hex digits.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )


@router.post(
    "",
    status_code=201,
    summary="List a kitchen",
    description="Hosts only. The kitchen starts as a `draft`, visible to its host and "
    "admins; submit it for review when its certificates are attached.",
    responses=problems(401, 403, 422),
)
async def create_kitchen(
    body: CreateKitchenBody, kitchens: KitchenCommandsDep, context: Command, response: Response
) -> KitchenOut:
    return await execute(
        kitchens.create_kitchen, body.to_command(), context, response, KitchenOut.of
    )


@router.patch(
    "/{kitchen_id}",
    summary="Edit a kitchen",
    description="The kitchen's host only (others get 404). Fields left out stay as they "
    "are. A new hourly rate never changes the price of existing bookings. A new "
    "`address`, `city` or `capacity` sends a published kitchen back to `pending_review` "
    "(out of search, no new bookings, existing ones stand) until an admin approves it "
    "again; other edits stay live and show in the moderation queue as changed since "
    "approval.",
    responses=problems(401, 403, 404, 409, 422),
)
async def update_kitchen(
    kitchen_id: KitchenId,
    body: UpdateKitchenBody,
    kitchens: KitchenCommandsDep,
    context: Command,
    response: Response,
) -> KitchenOut:
    return await execute(
        kitchens.update_kitchen, body.to_command(kitchen_id), context, response, KitchenOut.of
    )


@router.post(
    "/{kitchen_id}/submit",
    summary="Submit a kitchen for review",
    description="The kitchen's host only. A `draft` or `rejected` kitchen becomes "
    "`pending_review`; an admin then approves or rejects it.",
    responses=problems(401, 403, 404, 409),
)
async def submit_kitchen(
    kitchen_id: KitchenId, kitchens: KitchenCommandsDep, context: Command, response: Response
) -> KitchenOut:
    return await execute(
        kitchens.submit_kitchen,
        KitchenAction(kitchen_id=kitchen_id),
        context,
        response,
        KitchenOut.of,
    )


@router.post(
    "/{kitchen_id}/certificates",
    status_code=201,
    summary="Attach a certificate",
    description="The kitchen's host only. The certificate is `pending` until an admin "
    "verifies it; a kitchen is bookable only while every certificate its jurisdiction "
    "requires is verified and not expired.",
    responses=problems(401, 403, 404, 409, 422),
)
async def attach_certificate(
    kitchen_id: KitchenId,
    body: AttachCertificateBody,
    kitchens: KitchenCommandsDep,
    context: Command,
    response: Response,
) -> CertificateOut:
    return await execute(
        kitchens.attach_certificate,
        AttachCertificate(kitchen_id=kitchen_id, **body.model_dump()),
        context,
        response,
        CertificateOut.of,
    )
