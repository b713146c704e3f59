"""What one version of an aggregate changed: the difference between two of its states
(as :func:`prep_es.store.replay.aggregate_state` gives them: JSON values), field by
field. Pure: no I/O, no clock.

Objects are compared key by key, as deep as they nest, so a change inside one reads
as the dotted path of what changed (a kitchen's ``certificates.<id>.status``), not as
the whole object twice. Lists are compared whole: an item inserted at the front
would otherwise read as every item after it changed, which is not what happened. A
value whose type changes (a number becoming text, an object becoming ``null``) is a
change of the whole value.

Values are equal only when their types are too: ``1``, ``1.0`` and ``true`` are three
values to a reader of a state, though Python finds them equal.

A path is a tuple of keys, so a key holding a dot stays one key; the dotted text of a
path (:attr:`FieldChange.field`) is for reading only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

ChangeKind = Literal["added", "changed", "removed"]
CHANGE_KINDS: Final[tuple[ChangeKind, ...]] = ("added", "changed", "removed")


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: added (``before`` is ``None``), removed (``after`` is
    ``None``), or changed from ``before`` to ``after``."""

    path: tuple[str, ...]
    kind: ChangeKind
    before: Any
    after: Any

    def __post_init__(self) -> None:
        assert self.path, "a change names the field it is of"
        assert self.kind in CHANGE_KINDS, self.kind

    @property
    def field(self) -> str:
        """The path as text: keys joined by dots (``holds.<id>``)."""
        return ".".join(self.path)


def same_value(first: Any, second: Any) -> bool:
    """Whether two JSON values are the same value, their types included (``1`` is not
    ``1.0`` nor ``true``), however deep."""
    if type(first) is not type(second):
        return False
    if isinstance(first, Mapping):
        return first.keys() == second.keys() and all(
            same_value(first[key], second[key]) for key in first
        )
    if isinstance(first, list | tuple):
        return len(first) == len(second) and all(
            same_value(one, other) for one, other in zip(first, second, strict=True)
        )
    return bool(first == second)


def state_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[FieldChange]:
    """The changes that turn ``before`` into ``after`` (see the module's docstring):
    fields in ``before``'s order, then those only ``after`` has, in its order. Empty
    when the states are the same; every field of ``after`` added when ``before`` is
    empty (an aggregate's first version)."""
    return list(_changes((), before, after))


def _changes(
    prefix: tuple[str, ...], before: Mapping[str, Any], after: Mapping[str, Any]
) -> Iterable[FieldChange]:
    for key, old in before.items():
        path = (*prefix, key)
        if key not in after:
            yield FieldChange(path, "removed", old, None)
            continue
        new = after[key]
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            yield from _changes(path, old, new)
        elif not same_value(old, new):
            yield FieldChange(path, "changed", old, new)
    for key, new in after.items():
        if key not in before:
            yield FieldChange((*prefix, key), "added", None, new)
