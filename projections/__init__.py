"""Prep ES read side: projectors that follow the event store into read models.

``PROJECTIONS`` lists every projection the runners keep current."""

from projections.accounts import AccountsProjection
from projections.audit import AuditProjection
from projections.base import Projection
from projections.bookings import BookingsProjection

PROJECTIONS: tuple[type[Projection], ...] = (
    AuditProjection, BookingsProjection, AccountsProjection
)

__all__ = ["PROJECTIONS", "Projection"]
