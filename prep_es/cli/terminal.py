"""What every ``prep-es`` command shares at the terminal: the exit statuses, the error
that means bad usage, and JSON for machines."""

from __future__ import annotations

from typing import Any, Final

import orjson
from pydantic import BaseModel

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


class UsageError(Exception):
    """The arguments cannot work with this configuration (exit 2)."""


def print_json(value: BaseModel | dict[str, Any]) -> None:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
