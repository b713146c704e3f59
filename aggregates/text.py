"""What counts as text someone can see: names and addresses must have some."""

from __future__ import annotations

import unicodedata
from typing import Final

INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
"""Control and format characters (zero-width space U+200B, joiners, direction marks,
the byte-order mark) and spaces: none of them shows as anything on a page."""


def has_visible_character(text: str) -> bool:
    """``False`` for a text made only of whitespace, spaces and invisible format
    characters — a name of zero-width spaces would list a kitchen or a user nobody can
    see or tell apart."""
    return any(unicodedata.category(character) not in INVISIBLE_CATEGORIES for character in text)
