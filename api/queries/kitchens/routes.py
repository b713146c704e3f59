"""Kitchen queries over HTTP: the public search of bookable kitchens and one kitchen with
its compliance status, both through the query cache. (The admins' moderation list is in
``api.queries.admin.kitchens``; the hottest of these reads are answered before routing by
``api.queries.kitchens.fast_reads``.)"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response

from api.deps import (
    KitchenPagesDep,
    KitchenQueriesDep,
    KitchensReadModel,
    OptionalUser,
    PageParams,
)
from api.queries.kitchens.schemas import KitchenDetailOut, KitchenPage
from api.queries.kitchens.search import KitchenSearch
from api.queries.params import query_responses

router = APIRouter(prefix="/kitchens", tags=["kitchens"])

KitchenId = Annotated[UUID, Path(description="The kitchen's id.")]


@router.get(
    "",
    summary="Search bookable kitchens",
    description="Public. Published kitchens that are bookable — every certificate their "
    "jurisdiction requires is verified and valid (today; or through the end of the "
    "window) — matching every filter given. With `available_from` and `available_to` "
    "(together), kitchens whose operating hours do not cover the window, or with a "
    "pending or confirmed booking overlapping it, are left out. `q` matches all its "
    "words (stemmed) in the name, description, city and amenities. Sorted by `sort`: "
    "`name` (default), `rate_asc`, `rate_desc`, `newest`.",
    response_model=KitchenPage,
    responses=query_responses(422, 503),
)
def search_kitchens(
    kitchens: KitchenQueriesDep,
    consistency: KitchensReadModel,
    page: PageParams,
    search: Annotated[KitchenSearch, Query()],
) -> Response:
    found = kitchens.search(search.filters(), page, min_position=consistency.min_position)
    return consistency.response(KitchenPage.json_of(found), "application/json")


@router.get(
    "/{kitchen_id}",
    summary="Get a kitchen",
    description="Public for published kitchens. A kitchen in any other status (draft, "
    "pending_review, rejected, suspended) is visible to its host and to admins only; "
    "anyone else gets 404. Includes the kitchen's compliance status now: which "
    "required certificates are missing or expired.",
    response_model=KitchenDetailOut,
    responses=query_responses(401, 404, 422, 503),
)
def get_kitchen(
    kitchen_id: KitchenId,
    user: OptionalUser,
    kitchens: KitchenQueriesDep,
    consistency: KitchensReadModel,
    pages: KitchenPagesDep,
) -> Response:
    viewer = None if user is None else user.viewer
    detail, holds_from = kitchens.get(viewer, kitchen_id, min_position=consistency.min_position)
    page = KitchenDetailOut.json_of(detail)
    if pages is not None and detail.status == "published":
        pages.remember(kitchen_id, page, holds_from)
    return consistency.response(page, "application/json")
