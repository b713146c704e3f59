"""Prep ES read side: projectors that follow the event store into read models.

``PROJECTIONS`` lists every projection the runners keep current."""

from projections.audit import AuditProjection
from projections.base import Projection

PROJECTIONS: tuple[type[Projection], ...] = (AuditProjection,)

__all__ = ["PROJECTIONS", "Projection"]
