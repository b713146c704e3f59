"""A funnel: concurrent callers' work done in groups, one group at a time.

Whichever caller finds no group in progress becomes the *leader*: it takes every item
queued so far (up to a limit) and hands them to ``handle_group`` at once — one
transaction for many, say — then passes leadership to the next waiting caller, if any.
By default no caller waits on a timer: a lone item is handled at once; groups form only
while a group is in progress. A funnel told which group to expect (callers that arrive
together, such as the runners one append wakes) lets a new leader wait a bounded moment
for the rest of it. Each caller gets its own item's outcome, or its own error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


@dataclass
class _Waiting(Generic[Item, Outcome]):
    item: Item
    wake: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    finished: bool = False
    outcome: Outcome | None = None
    error: BaseException | None = None

    def finish(self, outcome: Outcome | BaseException) -> None:
        if isinstance(outcome, BaseException):
            self.error = outcome
        else:
            self.outcome = outcome
        self.finished = True
        self.wake.set()

    def result(self) -> Outcome:
        assert self.finished
        if self.error is not None:
            raise self.error
        return self.outcome  # type: ignore[return-value]


class Funnel(Generic[Item, Outcome]):
    def __init__(
        self,
        handle_group: Callable[[Sequence[Item]], Sequence[Outcome | BaseException]],
        *,
        group_size_max: int,
        expected_group: Callable[[Sequence[Item]], int] | None = None,
        gather_s: float = 0.0,
    ) -> None:
        """``handle_group`` returns one outcome (or the error to raise) per item, in
        order; if it raises, every item of the group gets that error.
        ``expected_group``: given the items queued, how many a group should have; a new
        leader waits (at most ``gather_s``) until that many are queued."""
        assert group_size_max >= 1
        self._handle_group = handle_group
        self._group_size_max = group_size_max
        self._expected_group = expected_group
        self._gather_s = gather_s
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_Waiting[Item, Outcome]] = []
        self._leader_active = False
        self.groups_total = 0
        self.items_total = 0

    @property
    def queued(self) -> int:
        """Items waiting for a group (not counting the group in progress)."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: Item) -> Outcome:
        """``item``'s outcome once its group is handled (raises the item's error)."""
        waiting: _Waiting[Item, Outcome] = _Waiting(item)
        with self._lock:
            self._queue.append(waiting)
            self._arrived.notify_all()
            if not self._leader_active:
                self._leader_active = True
                waiting.leads = True
        while not waiting.leads:
            waiting.wake.wait()
            waiting.wake.clear()
            if waiting.finished:
                return waiting.result()
        self._lead()
        return waiting.result()

    def _lead(self) -> None:
        with self._lock:
            if self._expected_group is not None:
                deadline = time.monotonic() + self._gather_s
                while (
                    len(self._queue) < self._group_size_max
                    and len(self._queue) < self._expected_group([w.item for w in self._queue])
                    and (remaining := deadline - time.monotonic()) > 0
                ):
                    self._arrived.wait(remaining)
            group = self._queue[: self._group_size_max]
            del self._queue[: self._group_size_max]
        try:
            self.groups_total += 1
            self.items_total += len(group)
            try:
                outcomes = self._handle_group([waiting.item for waiting in group])
            except BaseException as error:
                for waiting in group:
                    waiting.finish(error)
                raise
            assert len(outcomes) == len(group)
            for waiting, outcome in zip(group, outcomes, strict=True):
                waiting.finish(outcome)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.wake.set()
                else:
                    self._leader_active = False
