"""Query routes: they read read models only (``queries/``), never the event store's
aggregates, and answer with ``X-Prep-Position`` (see ``api.deps.read_model``)."""

from fastapi import APIRouter

from api.queries import accounts, admin, analytics, bookings, kitchens, users

query_router = APIRouter()
for _router in (
    users.router,
    kitchens.router,
    bookings.router,
    accounts.router,
    admin.router,
    analytics.router,
):
    query_router.include_router(_router)

__all__ = ["query_router"]
