"""An erasure's leads for tests that drive the command handlers without a running read
side: the read models it reads, brought up to the event store's head on the spot, then
the same queries the API's reader asks."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from commands.erasure import ErasureLeads
from prep_es.services.readside import ReadSide
from prep_es.store.eventstore import PrepApplication
from projections.bookings import BookingsProjection
from projections.generations import ensure_ready
from projections.kitchens import KitchensProjection
from projections.payments import PaymentsProjection
from projections.runners import ProjectionRunner
from queries.erasure import ErasureLeadQueries

LEAD_READ_MODELS = (KitchensProjection, BookingsProjection, PaymentsProjection)


@dataclass(frozen=True)
class CaughtUpLeads:
    app: PrepApplication
    read_side: ReadSide

    def leads(self, user_id: UUID, *, position: int) -> ErasureLeads:
        database = self.read_side.write_database
        for projection in LEAD_READ_MODELS:
            ensure_ready(database, projection)
            ProjectionRunner(projection, self.app, database).catch_up()
        return ErasureLeadQueries(self.read_side.query_database).leads(user_id)
