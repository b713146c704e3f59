"""Admin commands over HTTP: kitchen moderation, certificate review, projection
rebuilds. (Role and active changes of users are in ``api.commands.users``.)"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.commands.execution import execute
from api.commands.kitchens import CertificateOut, KitchenId, KitchenOut
from api.deps import AdminUser, Command, KitchenCommandsDep, ServicesDep
from api.schemas import REASON_LENGTH_BOUND, RequestBody, problems
from commands.kitchens import CertificateAction, KitchenAction, KitchenActionWithReason

router = APIRouter(prefix="/admin", tags=["admin"])

CertificateId = Annotated[UUID, Path(description="The certificate's id.")]
ProjectionName = Annotated[
    str,
    Path(
        max_length=100,
        description="audit, bookings, accounts, analytics, kitchens, compliance or users",
    ),
]


class ReasonRequiredBody(RequestBody):
    reason: str = Field(
        max_length=REASON_LENGTH_BOUND,
        description="Shown to the host; 1 to 1000 characters.",
        examples=["The health permit number does not match the document"],
    )


class RebuildAccepted(BaseModel):
    """A new generation of the projection is being built from position 0; the current
    one keeps serving queries until the new one has caught up and switches in."""

    projection: str = Field(examples=["bookings"])
    generation: int = Field(description="The generation being built.", examples=[2])
    state: Literal["building"] = "building"


@router.post(
    "/kitchens/{kitchen_id}/approve",
    summary="Approve a kitchen",
    description="Admins only. A kitchen `pending_review` becomes `published`; a "
    "published kitchen edited since its approval stays published, its edits accepted "
    "(`changed_since_approval` is emptied). Any other kitchen: 409.",
    responses=problems(401, 403, 404, 409),
)
async def approve_kitchen(
    kitchen_id: KitchenId, kitchens: KitchenCommandsDep, context: Command, response: Response
) -> KitchenOut:
    return await execute(
        kitchens.approve_kitchen,
        KitchenAction(kitchen_id=kitchen_id),
        context,
        response,
        KitchenOut.of,
    )


@router.post(
    "/kitchens/{kitchen_id}/reject",
    summary="Reject a kitchen",
    description="Admins only. A kitchen `pending_review` becomes `rejected`, with the "
    "reason; its host may edit it and submit it again.",
    responses=problems(401, 403, 404, 409, 422),
)
async def reject_kitchen(
    kitchen_id: KitchenId,
    body: ReasonRequiredBody,
    kitchens: KitchenCommandsDep,
    context: Command,
    response: Response,
) -> KitchenOut:
    return await execute(
        kitchens.reject_kitchen,
        KitchenActionWithReason(kitchen_id=kitchen_id, reason=body.reason),
        context,
        response,
        KitchenOut.of,
    )


@router.post(
    "/kitchens/{kitchen_id}/suspend",
    summary="Suspend a kitchen",
    description="Admins only. A `published` kitchen becomes `suspended`, with the reason: "
    "hidden from the public and not bookable until reinstated.",
    responses=problems(401, 403, 404, 409, 422),
)
async def suspend_kitchen(
    kitchen_id: KitchenId,
    body: ReasonRequiredBody,
    kitchens: KitchenCommandsDep,
    context: Command,
    response: Response,
) -> KitchenOut:
    return await execute(
        kitchens.suspend_kitchen,
        KitchenActionWithReason(kitchen_id=kitchen_id, reason=body.reason),
        context,
        response,
        KitchenOut.of,
    )


@router.post(
    "/kitchens/{kitchen_id}/reinstate",
    summary="Reinstate a kitchen",
    description="Admins only. A `suspended` kitchen is `published` again — unless its "
    "`address`, `city` or `capacity` was edited since its approval: then it goes to "
    "`pending_review`, for an admin to approve or reject as it now stands.",
    responses=problems(401, 403, 404, 409),
)
async def reinstate_kitchen(
    kitchen_id: KitchenId, kitchens: KitchenCommandsDep, context: Command, response: Response
) -> KitchenOut:
    return await execute(
        kitchens.reinstate_kitchen,
        KitchenAction(kitchen_id=kitchen_id),
        context,
        response,
        KitchenOut.of,
    )


@router.post(
    "/kitchens/{kitchen_id}/certificates/{certificate_id}/verify",
    summary="Verify a certificate",
    description="Admins only. A `pending` certificate becomes `verified`: it counts "
    "toward the kitchen's compliance until it expires.",
    responses=problems(401, 403, 404, 409),
)
async def verify_certificate(
    kitchen_id: KitchenId,
    certificate_id: CertificateId,
    kitchens: KitchenCommandsDep,
    context: Command,
    response: Response,
) -> CertificateOut:
    return await execute(
        kitchens.verify_certificate,
        CertificateAction(kitchen_id=kitchen_id, certificate_id=certificate_id),
        context,
        response,
        CertificateOut.of,
    )


@router.post(
    "/kitchens/{kitchen_id}/certificates/{certificate_id}/reject",
    summary="Reject a certificate",
    description="Admins only. A `pending` certificate becomes `rejected`, with the reason.",
    responses=problems(401, 403, 404, 409, 422),
)
async def reject_certificate(
    kitchen_id: KitchenId,
    certificate_id: CertificateId,
    body: ReasonRequiredBody,
    kitchens: KitchenCommandsDep,
    context: Command,
    response: Response,
) -> CertificateOut:
    return await execute(
        kitchens.reject_certificate,
        CertificateAction(kitchen_id=kitchen_id, certificate_id=certificate_id, reason=body.reason),
        context,
        response,
        CertificateOut.of,
    )


@router.post(
    "/projections/{name}/rebuild",
    status_code=202,
    summary="Rebuild a projection",
    description="Admins only. Starts building a new generation of the read model from "
    "position 0, in whichever process runs that projection; queries keep reading the "
    "current generation until the new one has caught up, then switch at once. Follow it "
    "in `GET /api/v1/admin/projections`. Asking again while a rebuild is under way "
    "answers the generation already building.",
    responses=problems(401, 403, 404),
)
async def rebuild_projection(
    name: ProjectionName, admin: AdminUser, services: ServicesDep, response: Response
) -> RebuildAccepted:
    generation = await run_in_threadpool(services.request_rebuild, name)
    response.headers["Location"] = "/api/v1/admin/projections"
    return RebuildAccepted(projection=name, generation=generation)
