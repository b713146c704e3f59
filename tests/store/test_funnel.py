"""The funnel under group commit and shared projection commits: groups, outcomes,
errors, and a leader that waits (boundedly) for the group it expects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from prep_es.store.funnel import Funnel
from tests.waiting import wait_until


def doubled(items: Sequence[int]) -> list[int | BaseException]:
    return [ValueError(f"no {item}") if item < 0 else item * 2 for item in items]


def arrived(funnel: Funnel[int, int], count: int) -> Callable[[], bool]:
    """Whether ``count`` items have reached ``funnel`` (queued, or taken into a group)."""
    return lambda: funnel.queued + funnel.items_total >= count


def submit_in_threads(
    funnel: Funnel[int, int], items: list[int], *, one_at_a_time: bool
) -> list[object]:
    """Each item submitted from a thread of its own once the item before has reached the
    funnel (queued, or taken into a group) or, ``one_at_a_time``, once it was handled;
    the outcomes, in order."""
    outcomes: list[object] = [None] * len(items)

    def submit(index: int) -> None:
        try:
            outcomes[index] = funnel.submit(items[index])
        except ValueError as error:
            outcomes[index] = error

    threads = []
    for index in range(len(items)):
        thread = threading.Thread(target=submit, args=(index,))
        thread.start()
        threads.append(thread)
        if one_at_a_time:
            thread.join(10)
            continue
        wait_until(arrived(funnel, index + 1), 10, f"item {index} in the funnel")
    for thread in threads:
        thread.join(10)
    return outcomes


def test_a_leader_waits_for_the_group_it_expects_then_each_caller_gets_its_own_outcome() -> None:
    funnel: Funnel[int, int] = Funnel(
        doubled, group_size_max=8, expected_group=lambda queued: 3, gather_s=5.0
    )
    outcomes = submit_in_threads(funnel, [1, -2, 3], one_at_a_time=False)
    assert outcomes[0] == 2 and outcomes[2] == 6
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "no -2"
    assert (funnel.groups_total, funnel.items_total) == (1, 3)


def test_a_leader_waits_no_longer_than_its_gathering_time() -> None:
    funnel: Funnel[int, int] = Funnel(
        doubled, group_size_max=8, expected_group=lambda queued: 5, gather_s=0.05
    )
    started = time.monotonic()
    assert funnel.submit(4) == 8
    assert 0.05 <= time.monotonic() - started < 2.0
    assert funnel.groups_total == 1


def test_without_an_expected_group_a_lone_item_is_handled_at_once() -> None:
    funnel: Funnel[int, int] = Funnel(doubled, group_size_max=8)
    outcomes = submit_in_threads(funnel, [1, 2, 3], one_at_a_time=True)
    assert outcomes == [2, 4, 6]
    assert funnel.groups_total == 3
