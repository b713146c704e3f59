"""Admins moderate kitchens: the kitchens in each lifecycle status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from api.deps import AdminUser, KitchenModerationDep, KitchensReadModel, PageParams
from api.queries.kitchens.schemas import KitchenStatus, KitchenSummaryOut
from api.queries.params import query_responses
from api.schemas import PageOut, kitchen_fields_out, money
from queries.kitchens import KitchenUnderModeration

router = APIRouter(prefix="/admin", tags=["admin"])


class ModeratedKitchenOut(KitchenSummaryOut):
    """A kitchen as admins moderate it."""

    changed_since_approval: list[str] = Field(
        description="The fields its host edited since an admin last approved it (empty for "
        "a kitchen never approved, and once an admin approves it, or reinstates it unedited "
        "materially).",
        examples=[["description", "name"]],
    )
    status_changed_at: datetime

    @classmethod
    def of_moderated(cls, kitchen: KitchenUnderModeration) -> ModeratedKitchenOut:
        fields = kitchen.model_dump(
            include=set(cls.model_fields) - {"hourly_rate", "changed_since_approval"}
        )
        return cls(
            **fields,
            hourly_rate=money(kitchen.hourly_rate_cents),
            changed_since_approval=kitchen_fields_out(kitchen.changed_since_approval),
        )


class ModeratedKitchenPage(PageOut[ModeratedKitchenOut]):
    pass


@router.get(
    "/moderation/kitchens",
    summary="Kitchens by lifecycle status",
    description="Kitchens in any status — e.g. `pending_review` for those awaiting "
    "approval, among them published kitchens sent back by a material edit (address, "
    "city, capacity) — the longest in that status first. `status=published&"
    "changed_since_approval=true`: live kitchens whose hosts edited them since their "
    "approval; approving such a kitchen accepts the edits.",
    responses=query_responses(401, 403, 422, 503),
)
def moderation_queue(
    admin: AdminUser,
    kitchens: KitchenModerationDep,
    _: KitchensReadModel,
    page: PageParams,
    status: Annotated[
        KitchenStatus | None,
        Query(
            description="Only this status (all statuses if left out).", examples=["pending_review"]
        ),
    ] = None,
    changed_since_approval: Annotated[
        bool | None,
        Query(
            description="Only kitchens edited since their last approval (`true`) or not "
            "(`false`); both if left out.",
            examples=[True],
        ),
    ] = None,
) -> ModeratedKitchenPage:
    return ModeratedKitchenPage.of(
        kitchens.moderation(
            admin.viewer,
            status=status,
            changed_since_approval=changed_since_approval,
            page=page,
        ),
        ModeratedKitchenOut.of_moderated,
    )
