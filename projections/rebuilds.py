"""Sharing a rebuild of several projections among processes.

Rebuilding is CPU work, in Python (decoding events, building rows) and in the database.
One process runs its projections' runners in threads that share one event decoder, so
its Python work runs on one core at a time; several processes use several. Which
projections go together matters twice over: runners in one process decode each event
once between them, and the processes should finish together.

So projections are first put in *families* by the aggregate most of their events come
from (``Booking`` for bookings, analytics and kitchens: they decode the same events); a
projection applied by SQL alone (``records_every_event`` on PostgreSQL: nothing decoded)
is a family of its own. Then the families are dealt, the one with the most work first,
each to the process with the least work so far. A family's work is the events of its
projections' topics, an event applied by SQL counting ``SQL_APPLIED_SHARE``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from projections.base import Projection

SQL_APPLIED_SHARE = 0.25
"""An event applied by SQL costs about a quarter of a decoded one (the audit projection
against the others, rebuilt alone, in bench/projectors.py)."""


def _applied_by_sql(projection_class: type[Projection], sql_applied: bool) -> bool:
    return projection_class.records_every_event and sql_applied


def _family(
    projection_class: type[Projection], events_by_topic: Mapping[str, int], sql_applied: bool
) -> str:
    if _applied_by_sql(projection_class, sql_applied):
        return f"sql:{projection_class.name}"
    by_aggregate: Counter[str] = Counter()
    for topic in projection_class.topics():
        by_aggregate[topic.partition(".")[0]] += events_by_topic.get(topic, 0)
    aggregate, events = max(by_aggregate.items(), key=lambda item: (item[1], item[0]))
    return aggregate if events else f"empty:{projection_class.name}"


def _work(
    projection_class: type[Projection], events_by_topic: Mapping[str, int], sql_applied: bool
) -> float:
    events = sum(events_by_topic.get(topic, 0) for topic in projection_class.topics())
    return events * (SQL_APPLIED_SHARE if _applied_by_sql(projection_class, sql_applied) else 1)


def share_among_processes(
    projection_classes: Sequence[type[Projection]],
    events_by_topic: Mapping[str, int],
    processes: int,
    *,
    sql_applied: bool,
) -> list[list[type[Projection]]]:
    """``projection_classes`` in at most ``processes`` non-empty groups, one per process
    (see the module docstring). ``sql_applied``: whether projections that record every
    event are applied by SQL here. Each group keeps the order of ``projection_classes``."""
    assert processes > 0
    families: dict[str, list[type[Projection]]] = {}
    for projection_class in projection_classes:
        family = _family(projection_class, events_by_topic, sql_applied)
        families.setdefault(family, []).append(projection_class)
    work = {
        family: sum(_work(p, events_by_topic, sql_applied) for p in members)
        for family, members in families.items()
    }
    groups: list[list[type[Projection]]] = [[] for _ in range(min(processes, len(families)))]
    loads = [0.0] * len(groups)
    for family in sorted(families, key=lambda name: (-work[name], name)):
        least = loads.index(min(loads))
        groups[least] += families[family]
        loads[least] += work[family]
    order = {projection_class: index for index, projection_class in enumerate(projection_classes)}
    return [sorted(group, key=order.__getitem__) for group in groups if group]
