"""Prep ES read side: projectors that follow the event store into read models.

``PROJECTIONS`` lists every projection the runners keep current."""

from projections.accounts import AccountsProjection
from projections.analytics import AnalyticsProjection
from projections.audit import AuditProjection
from projections.base import Projection
from projections.bookings import BookingsProjection
from projections.compliance import ComplianceProjection
from projections.kitchens import KitchensProjection
from projections.payments import PaymentsProjection
from projections.users import UsersProjection

PROJECTIONS: tuple[type[Projection], ...] = (
    AuditProjection,
    BookingsProjection,
    AccountsProjection,
    PaymentsProjection,
    AnalyticsProjection,
    KitchensProjection,
    ComplianceProjection,
    UsersProjection,
)

__all__ = ["PROJECTIONS", "Projection"]
