"""Query routes: they read read models only (``queries/``), never the event store's
aggregates, and answer with ``X-Prep-Position`` (see ``api.deps.read_model``)."""

from fastapi import APIRouter

from api.queries import accounts, admin, analytics, bookings, export, payments, users
from api.queries.kitchens import routes as kitchens

QUERY_ROUTERS: tuple[APIRouter, ...] = (
    kitchens.router,
    bookings.router,
    users.router,
    export.router,
    accounts.router,
    payments.router,
    *admin.ADMIN_ROUTERS,
    analytics.router,
)
"""Included one by one into the application (``prep_es.app``): a router nested in
another is matched again at each level of nesting, which cost more than the work of
most requests."""

__all__ = ["QUERY_ROUTERS"]
