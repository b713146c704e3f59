"""The clock commands read "now" from: passed in, so tests and benches fix it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Clock = Callable[[], datetime]
