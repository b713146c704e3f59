"""A JSON value of an aggregate's state or an event's fields, as HTML: objects as nested
definition lists, lists as lists, ``none`` for null, amounts in cents with their
decimal form beside them, and the ids of aggregates (known by their field's name,
:data:`AGGREGATE_ID_FIELDS`) as links to their history. Every text is escaped.

Written in Python rather than as a template macro: the audit trail shows the fields of
every entry, and a macro call per value cost most of the page's time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Final
from urllib.parse import quote

from markupsafe import Markup, escape

from api.console.session import CONSOLE_PATH

CENTS_PER_UNIT: Final = 100
AGGREGATES_PATH: Final = f"{CONSOLE_PATH}/aggregates"

AGGREGATE_ID_FIELDS: Final = frozenset(
    {
        "id",
        "actor_id",
        "booking_id",
        "customer_id",
        "hold_id",
        "host_id",
        "kitchen_id",
        "owner_id",
        "payee_account_id",
        "payer_account_id",
        "payout_id",
        "subject_id",
        "top_up_id",
        "user_id",
    }
)
"""Fields of events and states that hold the id of an aggregate (a hold's id is its
booking's): their values are links to its history."""


def grouped_cents(cents: int) -> str:
    """Cents as a decimal amount for reading, its thousands grouped: ``123456`` →
    ``1,234.56`` (the API writes ``"1234.56"``: ``api.schemas.money``)."""
    return f"{Decimal(cents) / CENTS_PER_UNIT:,.2f}"


def history_link(
    aggregate_id: object, label: str | None = None, *, named: str | None = None
) -> Markup:
    """A link to the history of the aggregate ``aggregate_id`` (a booking, kitchen,
    user, account…), showing ``label``, or else the id itself; a screen reader hears
    "History of ``named``" before such an id. The one way the console writes such a
    link (a Jinja global): the id is URL-encoded in the path, every text escaped."""
    shown_id = str(aggregate_id)
    href = f"{AGGREGATES_PATH}/{quote(shown_id, safe='')}"
    if label is not None:
        return Markup(f'<a href="{href}">{escape(label)}</a>')
    spoken = (
        ""
        if named is None
        else f'<span class="visually-hidden">History of {escape(named)}: </span>'
    )
    return Markup(f'<a href="{href}" class="id">{spoken}{escape(shown_id)}</a>')


def value_html(shown: object, key: str | None = None) -> Markup:
    """``shown`` (a value of field ``key``) as HTML."""
    parts: list[str] = []
    _write(parts, shown, key)
    return Markup("".join(parts))


def _write(parts: list[str], shown: object, key: str | None) -> None:
    if shown is None:
        parts.append('<span class="none">none</span>')
    elif shown is True or shown is False:
        parts.append("true" if shown else "false")
    elif isinstance(shown, str):
        if not shown:
            parts.append('<span class="none">empty text</span>')
        elif key in AGGREGATE_ID_FIELDS:
            parts.append(history_link(shown))
        else:
            parts.append(str(escape(shown)))
    elif isinstance(shown, Mapping):
        _write_mapping(parts, shown)
    elif isinstance(shown, Sequence):
        _write_sequence(parts, shown, key)
    elif isinstance(shown, int) and key is not None and key.endswith("_cents"):
        parts.append(f'{shown} <span class="hint">({grouped_cents(shown)})</span>')
    else:
        parts.append(str(escape(shown)))


def _write_mapping(parts: list[str], shown: Mapping[object, object]) -> None:
    if not shown:
        parts.append('<span class="none">empty</span>')
        return
    parts.append('<dl class="nested">')
    for name, item in shown.items():
        parts.append(f"<dt>{escape(name)}</dt><dd>")
        _write(parts, item, str(name))
        parts.append("</dd>")
    parts.append("</dl>")


def _write_sequence(parts: list[str], shown: Sequence[object], key: str | None) -> None:
    if not shown:
        parts.append('<span class="none">empty list</span>')
        return
    parts.append('<ul class="nested">')
    for item in shown:
        parts.append("<li>")
        _write(parts, item, key)
        parts.append("</li>")
    parts.append("</ul>")
