"""Which event fields hold personal data, and whose.

A field declared ``Personal[str]`` (or ``Personal[str] | None``, or ``Personal[dict[...]]``)
holds data about one person, its *subject*: the store encrypts it with that person's data
key, and erasing the person destroys the key. The subject of an event's personal fields is
named once per event class by ``PERSONAL_SUBJECT``:

- ``"actor"`` (the default): whoever caused the event (``metadata.actor_id``), as for the
  reason a host types when declining a booking;
- the name of one of the event's own ``UUID`` fields (``"customer_id"``), or
  ``"originator_id"`` when the aggregate is the person (``User``).

An event whose subject is absent (no actor, say a sweep) falls back to its aggregate's id.

A field may be about several people at once (a command's stored answer naming both the
host who declined and the customer's notes): ``PERSONAL_JOINT_SUBJECTS`` names a
``list[UUID]`` field of further subjects, and the field is sealed so that it opens only
while every one of them still has a key.

Once the key is gone, a personal field reads as ``None`` whatever its declared type, and
the event lists it in ``erased_fields``: readers of events that may be erased (projections
rebuilding, the audit trail) check that list, never the ciphertext.

Snapshots hold an aggregate's attributes, not its events' fields: an aggregate with
personal attributes lists them in ``PERSONAL_ATTRIBUTES`` and names the attribute holding
their subject in ``PERSONAL_SUBJECT_ATTRIBUTE``.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Final, TypeVar, Union

from pydantic import BaseModel, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core.core_schema import ValidationInfo

ERASED_CONTEXT: Final = {"erased": True}
"""The validation context under which a personal field may be ``None`` though its type
says otherwise: the store validates an event whose key is gone with it."""

ACTOR_SUBJECT: Final = "actor"
ORIGINATOR_SUBJECT: Final = "originator_id"


@dataclass(frozen=True)
class PersonalData:
    """The mark of a personal field (see the module's docstring)."""


def _erased_or_valid(
    value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
) -> Any:
    if value is None and info.context is not None and info.context.get("erased"):
        return None
    return handler(value)


T = TypeVar("T")

if typing.TYPE_CHECKING:
    Personal = Annotated[T, PersonalData()]
else:

    class Personal:
        """``Personal[str]``: ``str``, marked personal (see the module's docstring)."""

        def __class_getitem__(cls, item: Any) -> Any:
            return Annotated[item, PersonalData(), WrapValidator(_erased_or_valid)]


def _is_personal(annotation: Any) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return any(isinstance(mark, PersonalData) for mark in annotation.__metadata__)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(_is_personal(member) for member in typing.get_args(annotation))
    return False


@cache
def personal_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The names of ``model``'s personal fields, in declaration order."""
    return tuple(
        name
        for name, field in model.model_fields.items()
        if any(isinstance(mark, PersonalData) for mark in field.metadata)
        or _is_personal(field.annotation)
    )


def personal_joint_subjects_field(model: type[BaseModel]) -> str | None:
    """The name of the ``list[UUID]`` field naming further subjects, if any."""
    joint: str | None = getattr(model, "PERSONAL_JOINT_SUBJECTS", None)
    assert joint is None or joint in model.model_fields, (model, joint)
    return joint


def personal_subject_field(model: type[BaseModel]) -> str:
    """The name of the field whose value is the subject of ``model``'s personal fields
    (``"actor"`` for ``metadata.actor_id``)."""
    subject: str = getattr(model, "PERSONAL_SUBJECT", ACTOR_SUBJECT)
    assert subject in (ACTOR_SUBJECT, ORIGINATOR_SUBJECT) or subject in model.model_fields, (
        model,
        subject,
    )
    return subject
