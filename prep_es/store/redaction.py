"""What is never shown to people: secrets inside events and states, and the envelope
fields that are shown apart from an event's own payload. The one rule for the audit
trail, replay and time travel.

Personal fields whose subject was erased (see ``aggregates.personal``) are shown as
``null`` and named in an ``erased_fields`` list beside the payload — except secrets,
which read ``"***"`` whether erased or not and are never named: that a password hash
was erased says nothing a reader may use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REDACTED = "***"
SECRET_FIELDS = frozenset({"password_hash"})
ENVELOPE_FIELDS = frozenset(
    {"originator_id", "originator_version", "originator_topic", "timestamp", "metadata"}
)


def redact_secrets(name: str, value: Any) -> Any:
    """``value`` (a field named ``name``) with every secret inside it replaced: the one
    rule for everything that shows events or state to people."""
    if name in SECRET_FIELDS:
        return REDACTED
    if isinstance(value, dict):
        return {key: redact_secrets(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_secrets("", item) for item in value]
    return value


def shown_erased_fields(erased: Iterable[str]) -> list[str]:
    """The erased fields a reader is told of, sorted: every one but the secrets."""
    return sorted(set(erased) - SECRET_FIELDS)
