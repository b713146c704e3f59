"""The inventory of personal data: every event field that can hold text is either marked
``Personal`` where the event is declared, or listed in ``NOT_PERSONAL`` with the reason it
is not; nothing is listed that is not there; and the table renders it all."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, ClassVar, Literal
from uuid import UUID

import pytest
from pydantic import BaseModel

import aggregates
from aggregates.base import AggregateSnapshot, DomainEvent
from aggregates.personal import (
    NOT_PERSONAL,
    Personal,
    event_classes,
    inventory,
    inventory_markdown,
    personal_fields,
    personal_subject_field,
    text_fields,
)

REASON_LENGTH_MAX = 100


def inventory_problems(aggregate_classes: tuple[type[Any], ...]) -> list[str]:
    """What the inventory of ``aggregate_classes`` lacks or holds too many of, one line
    each, naming the field."""
    entries = inventory(aggregate_classes)
    problems = [
        f"{entry.key} can hold text: mark it Personal[...] where the event is declared, "
        "or list it in aggregates.personal.NOT_PERSONAL with why it is not personal"
        for entry in entries
        if not entry.personal and not entry.explanation
    ]
    not_personal = {entry.key for entry in entries if not entry.personal}
    personal = {entry.key for entry in entries if entry.personal}
    problems += [
        f"NOT_PERSONAL lists {key}, which is marked Personal"
        for key in sorted(personal & set(NOT_PERSONAL))
    ]
    problems += [
        f"NOT_PERSONAL lists {key}, which is no text field of any event"
        for key in sorted(set(NOT_PERSONAL) - not_personal - personal)
    ]
    return problems


def all_declared_events() -> set[str]:
    """The topic of every event class defined in the domain's modules, however declared
    (but snapshots, which hold an aggregate's attributes: see ``PERSONAL_ATTRIBUTES``)."""
    found: set[str] = set()
    pending: list[type[Any]] = [DomainEvent]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        topic = getattr(cls, "TOPIC", None)
        if (
            cls.__module__.startswith("aggregates.")
            and isinstance(topic, str)
            and not issubclass(cls, AggregateSnapshot)
        ):
            found.add(topic)
    return found


def test_every_text_field_of_every_event_is_personal_or_says_why_not() -> None:
    assert inventory_problems(aggregates.AGGREGATE_CLASSES) == []


def test_the_walk_finds_every_event_the_domain_declares() -> None:
    walked = {str(cls.TOPIC) for cls in event_classes(aggregates.AGGREGATE_CLASSES)}  # type: ignore[attr-defined]
    assert walked == all_declared_events()
    assert {"User.UserRegistered", "Booking.BookingDeclined", "User.UserErased"} <= walked


def test_the_reasons_are_short_and_said() -> None:
    for key, reason in NOT_PERSONAL.items():
        assert reason.strip() == reason and reason, key
        assert len(reason) <= REASON_LENGTH_MAX, key


def test_what_the_issue_names_personal_is_marked_personal() -> None:
    personal = {entry.key for entry in inventory(aggregates.AGGREGATE_CLASSES) if entry.personal}
    assert {
        "User.UserRegistered.email",
        "User.UserRegistered.full_name",
        "User.UserRegistered.password_hash",
        "User.EmailChanged.email",
        "User.FullNameChanged.full_name",
        "User.PasswordChanged.password_hash",
        "User.PasswordRehashed.password_hash",
        "Booking.BookingRequested.notes",
        "Booking.BookingDeclined.reason",
        "Booking.BookingCancelled.reason",
        "IdempotencyRecord.IdempotencyKeyRecorded.result",
    } <= personal


def test_every_personal_field_names_a_subject_that_is_a_person_id() -> None:
    for event_class in event_classes(aggregates.AGGREGATE_CLASSES):
        if not personal_fields(event_class):
            continue
        subject = personal_subject_field(event_class)
        if subject not in ("actor", "originator_id"):
            annotation = event_class.model_fields[subject].annotation
            assert annotation in (UUID, UUID | None), (event_class, subject)


def test_a_snapshotted_aggregate_with_personal_events_seals_its_attributes() -> None:
    """Snapshots hold attributes, not event fields: an aggregate whose events carry
    personal fields and that is snapshotted must name its personal attributes."""
    for aggregate_class in aggregates.SNAPSHOTTING_INTERVALS:
        personal = [
            name
            for event_class in event_classes([aggregate_class])
            for name in personal_fields(event_class)
        ]
        if personal:
            assert set(personal) <= set(aggregate_class.PERSONAL_ATTRIBUTES), aggregate_class


# --- the check itself, on an aggregate made up here ----------------------------------------


class Mood(enum.StrEnum):
    GLAD = "glad"


class Address(BaseModel):
    street: str
    number: int


class Made:
    """An aggregate's events as the walk sees them (plain models: nothing registered)."""

    class Said(BaseModel):
        TOPIC: ClassVar[str] = "Made.Said"
        words: str
        maybe: str | None
        tags: list[str]
        extra: dict[str, int]
        anything: Any
        mood: Mood
        kind: Literal["a", "b"]
        where: Address
        count: int
        flag: bool
        when: UUID | None
        secret: Personal[str]
        private_note: Personal[str] | None

    class Counted(BaseModel):
        TOPIC: ClassVar[str] = "Made.Counted"
        count: int


def test_the_check_names_every_unlisted_text_field() -> None:
    assert text_fields(Made.Said) == [
        "words",
        "maybe",
        "tags",
        "extra",
        "anything",
        "mood",
        "kind",
        "where.street",
        "secret",
        "private_note",
    ]
    problems = inventory_problems((Made,))
    named = [problem.split()[0] for problem in problems if "can hold text" in problem]
    assert named == [
        f"Made.Said.{name}"
        for name in ("words", "maybe", "tags", "extra", "anything", "mood", "kind", "where.street")
    ]
    # Every NOT_PERSONAL entry of the real domain's events is stale for this one.
    stale = [key for key in NOT_PERSONAL if not key.startswith("metadata.")]
    assert len(problems) == len(named) + len(stale)


def test_the_check_names_a_stale_or_contradicting_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = {
        **{key: reason for key, reason in NOT_PERSONAL.items() if key.startswith("metadata.")},
        "Made.Said.words": "said",
        "Made.Said.maybe": "said",
        "Made.Said.tags": "said",
        "Made.Said.extra": "said",
        "Made.Said.anything": "said",
        "Made.Said.mood": "a code",
        "Made.Said.kind": "a code",
        "Made.Said.where.street": "said",
        "Made.Said.secret": "contradicts the mark",
        "Made.Said.gone": "was renamed",
        "Made.Counted.count": "not text",
    }
    monkeypatch.setattr("aggregates.personal.NOT_PERSONAL", listed)
    monkeypatch.setitem(globals(), "NOT_PERSONAL", listed)
    assert sorted(inventory_problems((Made,))) == [
        "NOT_PERSONAL lists Made.Counted.count, which is no text field of any event",
        "NOT_PERSONAL lists Made.Said.gone, which is no text field of any event",
        "NOT_PERSONAL lists Made.Said.secret, which is marked Personal",
    ]


def test_the_table_has_a_row_per_field() -> None:
    table = inventory_markdown(aggregates.AGGREGATE_CLASSES)
    lines = table.splitlines()
    assert lines[0] == "| Event | Field | Personal | Subject, or why not personal |"
    assert len(lines) == 2 + len(inventory(aggregates.AGGREGATE_CLASSES))
    assert (
        "| `User.UserRegistered` | `email` | yes | subject: the aggregate's own person |" in lines
    )
    assert "| `Booking.BookingRequested` | `notes` | yes | subject: customer_id |" in lines
    assert (
        "| `Kitchen.KitchenCreated` | `address` | no | a licensed business's public listing |"
        in lines
    )
    assert "**not inventoried**" not in table
    made = inventory_markdown((Made,))
    assert "| `Made.Said` | `words` | no | **not inventoried** |" in made


DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "personal-data.md"
TABLE_START = "<!-- inventory: generated by aggregates.personal.inventory_markdown -->\n"
TABLE_END = "\n<!-- end of inventory -->"


def test_the_personal_data_page_shows_the_inventory_as_the_code_has_it() -> None:
    """Regenerate the table with ``python -c "import aggregates; from aggregates.personal
    import inventory_markdown; print(inventory_markdown(aggregates.AGGREGATE_CLASSES))"``."""
    page = DOCS_PAGE.read_text()
    shown = page.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    assert shown == inventory_markdown(aggregates.AGGREGATE_CLASSES).rstrip("\n")
