"""Who is told how commands go (metrics), and the observer that does nothing."""

from __future__ import annotations

from typing import Protocol


class CommandObserver(Protocol):
    """Told how commands go, for metrics. Called from the threads that run commands."""

    def command_finished(self, command_name: str, outcome: str) -> None:
        """``outcome``: ``ok``, ``replayed`` (an idempotency key's stored result), or
        the code of the domain error that refused it (``concurrency_conflict`` once
        the retries ran out)."""

    def command_conflicted(self, command_name: str) -> None:
        """An attempt lost a write race: the event store refused a stale version."""

    def command_retried(self, command_name: str, reason: str) -> None:
        """Another attempt starts on fresh state; ``reason``: ``write_conflict``
        (after a lost race) or ``stale_copy`` (a decision made on a cached copy is
        made again)."""


class IgnoreCommands:
    """The observer that does nothing."""

    def command_finished(self, command_name: str, outcome: str) -> None:
        pass

    def command_conflicted(self, command_name: str) -> None:
        pass

    def command_retried(self, command_name: str, reason: str) -> None:
        pass
