"""Secrets kept in files beside the embedded database (its JWT secret, its master key):
made once, readable by their owner alone."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

SECRET_FILE_MODE = 0o600


def read_or_create_secret_file(path: Path, make: Callable[[], str]) -> str:
    """The text of ``path``, written first with ``make()`` (mode 0600) if the file is
    absent, atomically: concurrent processes all end up with the text linked first."""
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(make())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_text()
