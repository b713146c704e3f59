"""Payment queries over the ``payments`` read model: a user's own top-ups and payouts,
and the admins' list of provider notifications.

Top-ups and payouts are their owner's alone, whatever the role: the owner is in each
query's WHERE, and one that is not the viewer's is answered exactly as one that does
not exist (404), so ids cannot be probed. Lists are newest first.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from aggregates.errors import InvalidRequest, NotFound, PermissionDenied
from aggregates.payment_notification import NotificationOutcome
from projections.database import ReadDatabase, Row, uuid_parameter
from projections.payments import PaymentsProjection
from queries.base import BATCH_ROWS, BatchRow, Page, PageRequest, Viewer, keyset_rows

TOP_UPS = PaymentsProjection.view("top_ups")
PAYOUTS = PaymentsProjection.view("payouts")
NOTIFICATIONS = PaymentsProjection.view("payment_notifications")


class TopUpSummary(BaseModel):
    """A top-up as its owner follows it. ``status``: ``requires_payment``,
    ``processing``, ``succeeded``, ``failed`` or ``canceled``; ``credited`` once the
    account has the money (with ``succeeded``)."""

    id: UUID
    owner_id: UUID
    amount_cents: int
    payment_method: str
    provider: str
    status: str
    payment_reference: str | None
    failure_code: str | None
    credited: bool
    requested_at: datetime
    updated_at: datetime
    position: int
    """The event-store position of the top-up's last event."""


class PayoutSummary(BaseModel):
    """A payout as its owner follows it: a host's payout (``method`` ``payout``, to
    ``destination``) or a refund to the card of top-up ``top_up_id`` (``refund``).
    ``status``: ``pending``, ``paid``, ``failed`` or ``canceled``."""

    id: UUID
    owner_id: UUID
    method: str
    amount_cents: int
    provider: str
    destination: str | None
    top_up_id: UUID | None
    payment_reference: str | None
    transfer_reference: str | None
    status: str
    failure_code: str | None
    requested_at: datetime
    updated_at: datetime
    position: int


class PaymentNotificationSummary(BaseModel):
    """A verified provider notification, as received, and what it changed
    (``outcome``)."""

    id: UUID
    provider: str
    event_id: str
    event_type: str
    subject: str | None
    subject_id: UUID | None
    reference: str | None
    status: str | None
    amount_cents: int | None
    currency: str | None
    failure_code: str | None
    outcome: str
    occurred_at: datetime
    received_at: datetime
    position: int


_TOP_UP_COLUMNS = (
    "id, owner_id, amount_cents, payment_method, provider, status, payment_reference, "
    "failure_code, credited, requested_at, updated_at, position"
)
_PAYOUT_COLUMNS = (
    "id, owner_id, method, amount_cents, provider, destination, top_up_id, "
    "payment_reference, transfer_reference, status, failure_code, requested_at, "
    "updated_at, position"
)
_NOTIFICATION_COLUMNS = (
    "id, provider, event_id, event_type, subject, subject_id, reference, status, "
    "amount_cents, currency, failure_code, outcome, occurred_at, received_at, position"
)
OUTCOMES = tuple(outcome.value for outcome in NotificationOutcome)


class PaymentQueries:
    def __init__(self, database: ReadDatabase) -> None:
        self._database = database

    def _id(self, value: UUID) -> Any:
        return uuid_parameter(self._database.dialect, value)

    def top_ups(self, viewer: Viewer, page: PageRequest | None = None) -> Page[TopUpSummary]:
        """The viewer's own top-ups, newest first."""
        rows, total, page = self._page(
            _TOP_UP_COLUMNS, TOP_UPS, "owner_id = %s", (self._id(viewer.user_id),), page
        )
        return Page[TopUpSummary](
            items=[TopUpSummary.model_validate(row) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    def top_up(self, viewer: Viewer, top_up_id: UUID) -> TopUpSummary:
        """One of the viewer's own top-ups; 404 (``top_up_not_found``) for any other."""
        with self._database.reading() as sql:
            row = sql.fetchone(
                f"SELECT {_TOP_UP_COLUMNS} FROM {TOP_UPS} WHERE id = %s AND owner_id = %s",
                (self._id(top_up_id), self._id(viewer.user_id)),
            )
        if row is None:
            raise NotFound(f"no top-up {top_up_id} of yours", code="top_up_not_found")
        return TopUpSummary.model_validate(row)

    def payouts(self, viewer: Viewer, page: PageRequest | None = None) -> Page[PayoutSummary]:
        """The viewer's own payouts and refunds, newest first."""
        rows, total, page = self._page(
            _PAYOUT_COLUMNS, PAYOUTS, "owner_id = %s", (self._id(viewer.user_id),), page
        )
        return Page[PayoutSummary](
            items=[PayoutSummary.model_validate(row) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    def payout(self, viewer: Viewer, payout_id: UUID) -> PayoutSummary:
        """One of the viewer's own payouts or refunds; 404 (``payout_not_found``) for
        any other."""
        with self._database.reading() as sql:
            row = sql.fetchone(
                f"SELECT {_PAYOUT_COLUMNS} FROM {PAYOUTS} WHERE id = %s AND owner_id = %s",
                (self._id(payout_id), self._id(viewer.user_id)),
            )
        if row is None:
            raise NotFound(f"no payout {payout_id} of yours", code="payout_not_found")
        return PayoutSummary.model_validate(row)

    def every_top_up(
        self, viewer: Viewer, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[TopUpSummary]:
        """All of the viewer's top-ups, oldest first, read ``batch_rows`` at a time."""
        for row in self._every(_TOP_UP_COLUMNS, TOP_UPS, viewer, batch_rows):
            yield TopUpSummary.model_validate(row)

    def every_payout(
        self, viewer: Viewer, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[PayoutSummary]:
        """All of the viewer's payouts and refunds, oldest first, read ``batch_rows`` at
        a time."""
        for row in self._every(_PAYOUT_COLUMNS, PAYOUTS, viewer, batch_rows):
            yield PayoutSummary.model_validate(row)

    def _every(self, columns: str, view: str, viewer: Viewer, batch_rows: int) -> Iterator[Row]:
        """Every row of ``view`` the viewer owns, by request time and id (neither ever
        changes: see :func:`queries.base.keyset_batches`)."""

        def batch(after: BatchRow | None) -> list[Row]:
            following, params = "", []
            if after is not None:
                following = "AND (requested_at, id) > (%s, %s) "
                params = [after["requested_at"], after["id"]]
            with self._database.reading() as sql:
                return sql.fetchall(
                    f"SELECT {columns} FROM {view} WHERE owner_id = %s {following}"
                    "ORDER BY requested_at, id LIMIT %s",
                    (self._id(viewer.user_id), *params, batch_rows),
                )

        return keyset_rows(batch, batch_rows)

    def notifications(
        self, viewer: Viewer, outcome: str | None = None, page: PageRequest | None = None
    ) -> Page[PaymentNotificationSummary]:
        """Every provider notification received (with ``outcome``, those only), newest
        first. Admins only (403); an unknown ``outcome`` is ``invalid_outcome`` (422)."""
        if not viewer.is_admin:
            raise PermissionDenied("only admins see payment notifications")
        if outcome is not None and outcome not in OUTCOMES:
            raise InvalidRequest(
                f"outcome is one of {', '.join(OUTCOMES)}", code="invalid_outcome", field="outcome"
            )
        where, params = ("outcome = %s", (outcome,)) if outcome is not None else ("TRUE", ())
        rows, total, page = self._page(
            _NOTIFICATION_COLUMNS, NOTIFICATIONS, where, params, page, newest="received_at"
        )
        return Page[PaymentNotificationSummary](
            items=[PaymentNotificationSummary.model_validate(row) for row in rows],
            total=total,
            limit=page.limit,
            offset=page.offset,
        )

    def _page(
        self,
        columns: str,
        view: str,
        where: str,
        params: tuple[Any, ...],
        page: PageRequest | None,
        *,
        newest: str = "requested_at",
    ) -> tuple[list[Row], int, PageRequest]:
        """One page of the rows of ``view`` matching ``where``, newest first by
        ``newest``, and their total from the same snapshot (counted alone past the
        end)."""
        page = page or PageRequest()
        with self._database.reading() as sql:
            rows = sql.fetchall(
                f"SELECT {columns}, count(*) OVER () AS total FROM {view} WHERE {where} "
                f"ORDER BY {newest} DESC, id DESC LIMIT %s OFFSET %s",
                (*params, page.limit, page.offset),
            )
            if rows:
                total = int(rows[0]["total"])
            elif page.offset:
                total = int(sql.scalar(f"SELECT count(*) FROM {view} WHERE {where}", params))
            else:
                total = 0
        return rows, total, page
