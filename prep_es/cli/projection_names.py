"""The projections by the names operators type (``all``: every one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from prep_es.cli.terminal import UsageError
from projections import PROJECTIONS, Projection

REBUILD_ALL: Final = "all"


def projection_names() -> list[str]:
    return [projection_class.name for projection_class in PROJECTIONS]


def _projection_named(name: str) -> type[Projection]:
    for projection_class in PROJECTIONS:
        if projection_class.name == name:
            return projection_class
    msg = f"no projection {name!r}; projections: {', '.join(projection_names())}"
    raise UsageError(msg)


def projections_named(names: Sequence[str]) -> list[type[Projection]]:
    """The projections ``names`` asks for (``all``: every one), in ``PROJECTIONS`` order."""
    wanted = set(projection_names()) if REBUILD_ALL in names else set(names)
    for name in sorted(wanted):
        _projection_named(name)
    return [projection_class for projection_class in PROJECTIONS if projection_class.name in wanted]
