"""Audit: one row per event — who, why, when, and what — for admins replaying history."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification

from aggregates.base import DomainEvent
from prep_es.store.redaction import ENVELOPE_FIELDS, REDACTED, SECRET_FIELDS, redact_secrets
from prep_es.store.serialization import CLASS_VERSION_KEY
from projections.base import Projection, fold_every_stored_event
from projections.database import Dialect, Sql

REDACT_FUNCTION = "prep_es_redact_secrets"
REDACT_FUNCTION_DDL = f"""
CREATE OR REPLACE FUNCTION {REDACT_FUNCTION}(value jsonb, secrets text[]) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    -- redact_secrets below, in SQL: every value under a secret's name, at any depth.
    IF jsonb_typeof(value) = 'object' THEN
        RETURN (SELECT coalesce(jsonb_object_agg(key, CASE WHEN key = ANY(secrets)
                    THEN to_jsonb('{REDACTED}'::text)
                    ELSE {REDACT_FUNCTION}(item, secrets) END), '{{}}'::jsonb)
                FROM jsonb_each(value) AS member(key, item));
    ELSIF jsonb_typeof(value) = 'array' THEN
        RETURN (SELECT coalesce(jsonb_agg({REDACT_FUNCTION}(item, secrets) ORDER BY n),
                    '[]'::jsonb)
                FROM jsonb_array_elements(value) WITH ORDINALITY AS element(item, n));
    END IF;
    RETURN value;
END
$$"""
STATE_ENVELOPE_FIELDS = ENVELOPE_FIELDS | {CLASS_VERSION_KEY}
"""What a stored state holds beside the event's own fields."""


def audit_payload(event: DomainEvent) -> dict[str, Any]:
    """The event's own fields (not its envelope), secrets redacted."""
    payload = event.model_dump(mode="json", exclude=set(ENVELOPE_FIELDS))
    return {name: redact_secrets(name, value) for name, value in payload.items()}


class AuditProjection(Projection):
    name: ClassVar[str] = "audit"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[str, ...]] = ("entries",)

    def create_tables(self, sql: Sql) -> None:
        entries = self.table("entries")
        sql.execute(
            f"CREATE TABLE {entries} ("
            f"position {self.column('int')} PRIMARY KEY, "
            f"recorded_at {self.column('time')} NOT NULL, "
            "aggregate_type text NOT NULL, "
            f"aggregate_id {self.column('id')} NOT NULL, "
            f"aggregate_version {self.column('int')} NOT NULL, "
            "event_type text NOT NULL, "
            f"actor_id {self.column('id')}, actor_role text, request_id text, "
            "correlation_id text, "
            f"payload {self.column('json')} NOT NULL)"
        )

    @classmethod
    def create_functions(cls, sql: Sql) -> None:
        if sql.dialect == "postgresql":
            sql.execute(REDACT_FUNCTION_DDL)

    def create_indexes(self, sql: Sql) -> None:
        entries = self.table("entries")
        for column in ("aggregate_id", "actor_id", "event_type", "recorded_at"):
            sql.execute(f"CREATE INDEX {entries}_{column} ON {entries} ({column}, position)")

    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("position", "int"),
        ("recorded_at", "time"),
        ("aggregate_type", "text"),
        ("aggregate_id", "id"),
        ("aggregate_version", "int"),
        ("event_type", "text"),
        ("actor_id", "id"),
        ("actor_role", "text"),
        ("request_id", "text"),
        ("correlation_id", "text"),
        ("payload", "json"),
    )

    def __init__(self, generation: int, dialect: Dialect) -> None:
        super().__init__(generation, dialect)
        self._rows: list[tuple[Any, ...]] = []

    def before_batch(self) -> None:
        super().before_batch()
        self._rows.clear()

    @fold_every_stored_event
    def _entry(self, notification: Notification, sql: Sql) -> datetime:
        """An entry from the stored event as recorded (not upcast), without decoding it
        into its class: the audit trail shows what was written. Every event type is
        followed, so this is the one fold."""
        state = orjson.loads(notification.state)
        metadata = state.get("metadata") or {}
        recorded_at = datetime.fromisoformat(state["timestamp"])
        payload = {
            name: redact_secrets(name, value)
            for name, value in state.items()
            if name not in STATE_ENVELOPE_FIELDS
        }
        actor_id = metadata.get("actor_id")
        topic = notification.topic
        self._rows.append(
            (
                notification.id,
                self.time_value(recorded_at),
                topic.partition(".")[0],
                self.id_value(UUID(str(notification.originator_id))),
                notification.originator_version,
                topic,
                None if actor_id is None else self.id_value(UUID(actor_id)),
                metadata.get("actor_role"),
                metadata.get("request_id"),
                metadata.get("correlation_id"),
                orjson.dumps(payload).decode(),
            )
        )
        return recorded_at

    def apply_stored_range(
        self, after: int, up_to: int, events_table: str, sql: Sql
    ) -> tuple[int, datetime | None]:
        """The rows :meth:`_entry` would build, built by PostgreSQL."""
        envelope = ", ".join(f"'{name}'" for name in sorted(STATE_ENVELOPE_FIELDS))
        may_hold_secret = " OR ".join(
            f"strpos(stored.text, '\"{name}\"') > 0" for name in sorted(SECRET_FIELDS)
        )
        secrets = ", ".join(f"'{name}'" for name in sorted(SECRET_FIELDS))
        row = sql.fetchone(
            f"WITH inserted AS (INSERT INTO {self.table('entries')} ("
            f"{', '.join(name for name, _ in self.COLUMNS)}) "
            "SELECT e.notification_id, (stored.state->>'timestamp')::timestamptz, "
            "split_part(e.topic, '.', 1), e.originator_id, e.originator_version, e.topic, "
            "(stored.state->'metadata'->>'actor_id')::uuid, "
            "stored.state->'metadata'->>'actor_role', "
            "stored.state->'metadata'->>'request_id', "
            "stored.state->'metadata'->>'correlation_id', "
            f"CASE WHEN {may_hold_secret} "
            f"THEN {REDACT_FUNCTION}(own.payload, ARRAY[{secrets}]) ELSE own.payload END "
            f"FROM {events_table} AS e "
            "CROSS JOIN LATERAL (SELECT convert_from(e.state, 'UTF8') AS text) AS raw "
            # OFFSET 0 keeps the planner from inlining the parse into each of the
            # state's seven uses: inlined, every row's JSON was parsed seven times.
            "CROSS JOIN LATERAL (SELECT raw.text, raw.text::jsonb AS state OFFSET 0) AS stored "
            f"CROSS JOIN LATERAL (SELECT stored.state - ARRAY[{envelope}] AS payload) AS own "
            "WHERE e.notification_id > %s AND e.notification_id <= %s "
            "ON CONFLICT (position) DO NOTHING RETURNING recorded_at) "
            "SELECT count(*) AS applied, max(recorded_at) AS recorded_at FROM inserted",
            (after, up_to),
        )
        assert row is not None
        return int(row["applied"]), row["recorded_at"]

    def after_batch(self, sql: Sql) -> None:
        """One multi-row insert per batch: a statement per event would cost more than
        everything else the projection does."""
        super().after_batch(sql)
        self.insert_rows(
            sql,
            "entries",
            self.COLUMNS,
            self._rows,
            on_conflict="ON CONFLICT (position) DO NOTHING",
        )
        self._rows.clear()
