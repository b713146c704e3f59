"""The difference between two states of an aggregate: what each kind of change looks
like, and, for any two JSON states, that making the changes to the first gives the
second."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from queries.state_diff import FieldChange, same_value, state_diff

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
KEYS = st.text(max_size=6)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)
STATES = st.dictionaries(KEYS, JSON_VALUES, max_size=6)


def apply_diff(before: Mapping[str, Any], changes: Iterable[FieldChange]) -> dict[str, Any]:
    """``before`` with ``changes`` made to a copy of it: for the changes
    ``state_diff`` found between ``before`` and some ``after``, a state equal to
    ``after`` (key order aside)."""
    state: dict[str, Any] = copy.deepcopy(dict(before))
    for change in changes:
        parent: Any = state
        for key in change.path[:-1]:
            parent = parent[key]
        assert isinstance(parent, dict), change.path
        last = change.path[-1]
        if change.kind == "removed":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(change.after)
    return state


def kinds(changes: list[FieldChange]) -> list[tuple[str, str, Any, Any]]:
    return [(change.field, change.kind, change.before, change.after) for change in changes]


def test_a_first_version_adds_every_field() -> None:
    after = {"id": "b-1", "status": "pending", "holds": {"h": 5}}
    assert kinds(state_diff({}, after)) == [
        ("id", "added", None, "b-1"),
        ("status", "added", None, "pending"),
        ("holds", "added", None, {"h": 5}),
    ]


def test_changed_removed_and_added_fields_in_the_states_order() -> None:
    before = {"version": 2, "status": "confirmed", "notes": "late", "guests": 2}
    after = {"version": 3, "status": "cancelled", "guests": 2, "reason": "sick"}
    assert kinds(state_diff(before, after)) == [
        ("version", "changed", 2, 3),
        ("status", "changed", "confirmed", "cancelled"),
        ("notes", "removed", "late", None),
        ("reason", "added", None, "sick"),
    ]


def test_objects_differ_by_dotted_path_and_lists_whole() -> None:
    before = {
        "certificates": {"c1": {"status": "pending", "number": "7"}},
        "amenities": ["oven", "fridge"],
    }
    after = {
        "certificates": {"c1": {"status": "verified", "number": "7"}, "c2": {"status": "pending"}},
        "amenities": ["fridge"],
    }
    assert kinds(state_diff(before, after)) == [
        ("certificates.c1.status", "changed", "pending", "verified"),
        ("certificates.c2", "added", None, {"status": "pending"}),
        ("amenities", "changed", ["oven", "fridge"], ["fridge"]),
    ]


def test_a_change_of_type_is_a_change_of_the_whole_value() -> None:
    assert kinds(state_diff({"a": 1}, {"a": True})) == [("a", "changed", 1, True)]
    assert kinds(state_diff({"a": 1}, {"a": 1.0})) == [("a", "changed", 1, 1.0)]
    assert kinds(state_diff({"a": {"b": 1}}, {"a": None})) == [("a", "changed", {"b": 1}, None)]
    assert kinds(state_diff({"a": [1]}, {"a": [True]})) == [("a", "changed", [1], [True])]


def test_a_key_with_a_dot_stays_one_key() -> None:
    (change,) = state_diff({"a": {"b.c": 1}}, {"a": {"b.c": 2}})
    assert change.path == ("a", "b.c") and change.field == "a.b.c"
    assert apply_diff({"a": {"b.c": 1}}, [change]) == {"a": {"b.c": 2}}


@given(STATES, STATES)
def test_applying_the_diff_to_before_gives_after(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    changes = state_diff(before, after)
    assert same_value(apply_diff(before, changes), after)
    assert len({change.path for change in changes}) == len(changes)


@given(STATES)
def test_a_state_does_not_differ_from_itself(state: dict[str, Any]) -> None:
    assert state_diff(state, state) == []


@given(STATES, STATES)
def test_applying_leaves_before_as_it_was(before: dict[str, Any], after: dict[str, Any]) -> None:
    kept = repr(before)
    apply_diff(before, state_diff(before, after))
    assert repr(before) == kept
