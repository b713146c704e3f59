"""Admin queries over HTTP, one resource a module: users, kitchens awaiting moderation,
certificates and those about to expire, the ledger's trial balance, the payment
provider's notifications, the audit trail, an aggregate's history and its state at a
point, and the projections' progress. Admins only (403 for anyone else).

An aggregate's events and state are read from the event store itself (what the
aggregate is rebuilt from), not from a projection; every other route reads a read
model and waits for ``X-Prep-Min-Position`` on it.
"""

from fastapi import APIRouter

from api.queries.admin import (
    aggregates,
    audit,
    certificates,
    kitchens,
    ledger,
    payments,
    projections,
    users,
)

ADMIN_ROUTERS: tuple[APIRouter, ...] = (
    users.router,
    kitchens.router,
    certificates.router,
    ledger.router,
    payments.router,
    audit.router,
    aggregates.router,
    projections.router,
)
"""In the order their routes were written (and are documented); each is included
straight under the application, as every router is (see ``api.queries``)."""

__all__ = ["ADMIN_ROUTERS"]
