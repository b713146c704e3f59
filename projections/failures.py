"""A projection's failure to apply an event: where (name, position, topic) and why."""

from __future__ import annotations

import traceback


class ProjectionFailed(Exception):
    """A projection could not apply the event at ``position``."""

    def __init__(self, name: str, position: int, topic: str, error: str) -> None:
        super().__init__(f"projection {name} failed at position {position} ({topic}): {error}")
        self.name = name
        self.position = position
        self.topic = topic
        self.error = error

    @classmethod
    def of(cls, name: str, position: int, topic: str, error: BaseException) -> ProjectionFailed:
        """The failure ``error`` (its type and message, no stack) caused."""
        return cls(name, position, topic, "".join(traceback.format_exception_only(error)).strip())
