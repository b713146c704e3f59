"""Announcements: how a runner tells every process what a committed batch did.

In its batch's transaction, a runner notifies (PostgreSQL) its projection's new
position on ``POSITIONS_CHANNEL`` (``"<name>:<position>"``) and, first, the cache
dependencies the batch changed on ``CHANGES_CHANNEL``; in its own process it tells
listeners of both kinds directly, once the batch commits.
"""

from __future__ import annotations

from collections.abc import Callable

POSITIONS_CHANNEL = "prep_es_projections"
CHANGES_CHANNEL = "prep_es_changes"
"""Where a runner announces, in its batch's transaction, the cache dependencies the batch
changed (``"<position> <dependency> ..."``): processes that cache answers themselves hear
of changes made by a runner in another process."""
CHANGES_PAYLOAD_CHARS_MAX = 7000
"""Below PostgreSQL's 8000-byte NOTIFY limit: hints that do not fit are left out, and a
list of changes that does not fit is announced as everything."""
HINTS_SEPARATOR = "|"
"""In a change announcement (``<position> <dependency>… [| <hint>…]``), before the
projection's hints (see ``Projection.hints``)."""
EVERYTHING_CHANGED = "*"

PositionListener = Callable[[str, int], None]
ChangeListener = Callable[[list[str], int], None]
"""Told, after a batch commits, which cache dependencies it changed and its position."""
