"""The audit trail for admins: who did what, why and when, oldest first.

Reads the ``audit`` projection (one row per event, secrets already redacted by
:func:`projections.audit.audit_payload`). Pages are keyset pages: ask for the entries
after a position; a page says where the next one starts (``next_after_position``), or
``None`` when there is nothing after it. Entries never change and positions only
grow, so paging neither skips nor repeats an entry, whatever is appended meanwhile.

The projection keeps each event's personal fields sealed as they are stored (see
:mod:`prep_es.store.personal_cipher`), so that erasing a person needs nothing of it: they
are opened here, as they are read, with the store's data keys. A field whose subject was
erased reads ``null``, and its entry says ``erased`` and names it in ``erased_fields``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
from pydantic import BaseModel

from aggregates.account import account_id_for
from aggregates.errors import InvalidRequest, PermissionDenied
from prep_es.store.personal_cipher import SUBJECT_KEY, PersonalDataCipher, is_envelope
from prep_es.store.redaction import shown_erased_fields
from projections.audit import AuditProjection
from projections.database import ReadDatabase, Row, uuid_from_row, uuid_parameter
from queries.base import BATCH_ROWS, BatchRow, Viewer, keyset_batches

AUDIT_LIMIT_DEFAULT: Final = 100
AUDIT_LIMIT_MAX: Final = 100
EVENT_TYPE_LENGTH_MAX: Final = 200

ENTRIES = AuditProjection.view("entries")


class AuditEntry(BaseModel):
    position: int
    recorded_at: datetime
    aggregate_type: str
    aggregate_id: UUID
    aggregate_version: int
    event_type: str
    actor_id: UUID | None
    actor_role: str | None
    request_id: str | None
    correlation_id: str | None
    payload: dict[str, Any]
    erased: bool
    """Some personal field of ``payload`` reads ``None``: its subject was erased."""
    erased_fields: list[str]
    """Those fields, by name (secrets read ``"***"`` either way and are not named)."""


class OwnAuditEntry(AuditEntry):
    """An entry of what a person did, as their own record: their personal fields
    opened, anyone else's left ``None`` and named in ``withheld_fields``."""

    withheld_fields: list[str]


class EntryAboutPerson(OwnAuditEntry):
    """An entry of an event of a person's own user or account, whoever caused it, as
    their record: their personal fields opened, anyone else's withheld (as in
    :class:`OwnAuditEntry`), and someone else who caused it shown by role only."""

    actor_withheld: bool
    """Someone else caused it: ``actor_id``, ``request_id`` and ``correlation_id`` are
    ``None``, ``actor_role`` says who they were (an ``admin``, a ``host``)."""


class AuditPage(BaseModel):
    items: list[AuditEntry]
    limit: int
    next_after_position: int | None
    """Pass as ``after_position`` for the next page; ``None`` on the last page."""


class AuditQueries:
    def __init__(self, database: ReadDatabase, personal: PersonalDataCipher) -> None:
        self._database = database
        self._personal = personal

    def _time(self, value: datetime) -> datetime | str:
        """As the projection stores it: on SQLite fixed-width UTC text, so text order is
        time order."""
        utc = value.astimezone(UTC)
        if self._database.dialect == "postgresql":
            return utc
        return utc.isoformat(timespec="microseconds")

    def entries(
        self,
        viewer: Viewer,
        aggregate_id: UUID | None = None,
        actor_id: UUID | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_position: int | None = None,
        limit: int = AUDIT_LIMIT_DEFAULT,
    ) -> AuditPage:
        """Admins only. Entries matching every filter given, oldest first: of one
        aggregate, by one actor, of one event type (its topic, e.g.
        ``Booking.BookingRequested``), recorded from ``since`` through ``until`` (both
        included), after ``after_position``; at most ``limit`` (1–100)."""
        if not viewer.is_admin:
            raise PermissionDenied("the audit trail is for admins")
        if not 1 <= limit <= AUDIT_LIMIT_MAX:
            raise InvalidRequest(f"limit is between 1 and {AUDIT_LIMIT_MAX}", code="invalid_limit")
        if after_position is not None and after_position < 0:
            raise InvalidRequest("after_position is at least 0", code="invalid_after_position")
        for moment in (since, until):
            if moment is not None and moment.utcoffset() is None:
                raise InvalidRequest("a time needs a UTC offset", code="naive_datetime")
        if since is not None and until is not None and since > until:
            raise InvalidRequest("since must not be after until", code="invalid_range")
        if event_type is not None and len(event_type) > EVENT_TYPE_LENGTH_MAX:
            raise InvalidRequest("event_type is too long", code="invalid_event_type")

        conditions = ["position > %s"]
        params: list[Any] = [after_position or 0]
        if aggregate_id is not None:
            conditions.append("aggregate_id = %s")
            params.append(uuid_parameter(self._database.dialect, aggregate_id))
        if actor_id is not None:
            conditions.append("actor_id = %s")
            params.append(uuid_parameter(self._database.dialect, actor_id))
        if event_type is not None:
            conditions.append("event_type = %s")
            params.append(event_type)
        if since is not None:
            conditions.append("recorded_at >= %s")
            params.append(self._time(since))
        if until is not None:
            conditions.append("recorded_at <= %s")
            params.append(self._time(until))
        # One row more than the page: whether it exists says if there is a next page.
        params.append(limit + 1)
        with self._database.reading() as sql:
            rows = sql.fetchall(
                f"SELECT {ENTRY_COLUMNS} FROM {ENTRIES} WHERE {' AND '.join(conditions)} "
                "ORDER BY position LIMIT %s",
                params,
            )
        items = [entry for entry, _ in entries_from_rows(rows[:limit], self._personal)]
        more = len(rows) > limit
        return AuditPage(
            items=items,
            limit=limit,
            next_after_position=items[-1].position if more else None,
        )

    def every_entry_caused_by(
        self, viewer: Viewer, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[OwnAuditEntry]:
        """Every entry of what the viewer did (they are its actor), oldest first, read
        ``batch_rows`` at a time: the viewer's own record, so only their own personal
        fields are opened (see :class:`OwnAuditEntry`)."""
        actor = uuid_parameter(self._database.dialect, viewer.user_id)

        def batch(after: BatchRow | None) -> list[Row]:
            with self._database.reading() as sql:
                return sql.fetchall(
                    f"SELECT {ENTRY_COLUMNS} FROM {ENTRIES} WHERE actor_id = %s "
                    "AND position > %s ORDER BY position LIMIT %s",
                    (actor, 0 if after is None else after["position"], batch_rows),
                )

        for rows in keyset_batches(batch, batch_rows):
            for entry, withheld in entries_from_rows(rows, self._personal, subject=viewer.user_id):
                yield OwnAuditEntry(**entry.model_dump(), withheld_fields=withheld)

    def every_entry_about(
        self, viewer: Viewer, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[EntryAboutPerson]:
        """Every entry of an event of the viewer's user (their registration, every name,
        email and password change, role change, deactivation, token revocation) and of
        their account, whoever caused it, oldest first, read ``batch_rows`` at a time:
        what is recorded about the viewer, as their record (see
        :class:`EntryAboutPerson`). Those the viewer caused are among
        :meth:`every_entry_caused_by`'s too."""
        dialect = self._database.dialect
        user, account = (
            uuid_parameter(dialect, aggregate_id)
            for aggregate_id in (viewer.user_id, account_id_for(viewer.user_id))
        )
        # Each aggregate's next rows by its own index, then the first of both: no scan of
        # anyone else's entries, however many there are.
        of_one = (
            f"SELECT {ENTRY_COLUMNS} FROM {ENTRIES} WHERE aggregate_id = %s AND position > %s "
            "ORDER BY position LIMIT %s"
        )
        query = (
            f"SELECT {ENTRY_COLUMNS} FROM (SELECT * FROM ({of_one}) AS of_user UNION ALL "
            f"SELECT * FROM ({of_one}) AS of_account) AS about ORDER BY position LIMIT %s"
        )

        def batch(after: BatchRow | None) -> list[Row]:
            position = 0 if after is None else after["position"]
            with self._database.reading() as sql:
                return sql.fetchall(
                    query,
                    (user, position, batch_rows, account, position, batch_rows, batch_rows),
                )

        for rows in keyset_batches(batch, batch_rows):
            for entry, withheld in entries_from_rows(rows, self._personal, subject=viewer.user_id):
                someone_else = entry.actor_id not in (None, viewer.user_id)
                shown = entry.model_dump()
                if someone_else:
                    shown.update(actor_id=None, request_id=None, correlation_id=None)
                yield EntryAboutPerson(
                    **shown, withheld_fields=withheld, actor_withheld=someone_else
                )


ENTRY_COLUMNS = (
    "position, recorded_at, aggregate_type, aggregate_id, aggregate_version, event_type, "
    "actor_id, actor_role, request_id, correlation_id, payload"
)


def open_payload(
    personal: PersonalDataCipher,
    payload: dict[str, Any],
    aggregate_id: UUID,
    aggregate_version: int,
    *,
    subject: UUID | None = None,
) -> tuple[list[str], list[str]]:
    """Open, in place, the sealed personal fields of a payload as the audit projection
    keeps it; the names of those erased (now ``None``) and, when only ``subject``'s may
    be opened, of those about someone else (``None`` too, never opened)."""
    sealed = {name: value for name, value in payload.items() if is_envelope(value)}
    if not sealed:
        return [], []
    withheld: list[str] = []
    if subject is not None:
        for name, envelope in list(sealed.items()):
            if envelope[SUBJECT_KEY] != str(subject):
                del sealed[name]
                payload[name] = None
                withheld.append(name)
    erased = personal.open_event(sealed, aggregate_id, aggregate_version)
    payload.update(sealed)
    return shown_erased_fields(erased), sorted(withheld)


def entries_from_rows(
    rows: list[dict[str, Any]], personal: PersonalDataCipher, *, subject: UUID | None = None
) -> list[tuple[AuditEntry, list[str]]]:
    """Entries from their rows (:data:`ENTRY_COLUMNS`), their personal fields opened,
    each with the names of those withheld as someone else's (see :func:`open_payload`).
    The keys of every person named in them are read at once, not one query each."""
    payloads = [_payload(row["payload"]) for row in rows]
    personal.keys.prefetch(
        UUID(str(value[SUBJECT_KEY]))
        for payload in payloads
        for value in payload.values()
        if is_envelope(value) and (subject is None or value[SUBJECT_KEY] == str(subject))
    )
    return [
        _entry(row, payload, personal, subject) for row, payload in zip(rows, payloads, strict=True)
    ]


def _payload(stored: Any) -> dict[str, Any]:
    return orjson.loads(stored) if isinstance(stored, str | bytes) else dict(stored)


def _entry(
    row: dict[str, Any],
    payload: dict[str, Any],
    personal: PersonalDataCipher,
    subject: UUID | None,
) -> tuple[AuditEntry, list[str]]:
    aggregate_id = uuid_from_row(row["aggregate_id"])
    aggregate_version = int(row["aggregate_version"])
    erased, withheld = open_payload(
        personal, payload, aggregate_id, aggregate_version, subject=subject
    )
    recorded_at = row["recorded_at"]
    entry = AuditEntry(
        position=int(row["position"]),
        recorded_at=(
            datetime.fromisoformat(recorded_at) if isinstance(recorded_at, str) else recorded_at
        ),
        aggregate_type=row["aggregate_type"],
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        event_type=row["event_type"],
        actor_id=None if row["actor_id"] is None else uuid_from_row(row["actor_id"]),
        actor_role=row["actor_role"],
        request_id=row["request_id"],
        correlation_id=row["correlation_id"],
        payload=payload,
        erased=bool(erased),
        erased_fields=erased,
    )
    return entry, withheld
