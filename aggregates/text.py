"""What counts as text someone can see: names and addresses must have some, and an email
may hold nothing that shows as nothing; and the check of a free text field (a name, a
reason) that says so."""

from __future__ import annotations

import unicodedata
from typing import Final

from aggregates.errors import InvalidRequest

REASON_LENGTH_MAX: Final = 1000
"""A reason given for a decline, a cancellation, a rejection or a suspension."""

BLANK_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
"""Control and format characters (zero-width space U+200B, joiners, direction marks,
the byte-order mark) and spaces: none of them shows as anything on a page."""
COMBINING_CATEGORIES: Final = frozenset({"Mn", "Me"})
"""Combining marks: they show on the character before them, and alone as nothing."""

BLANK_RANGES: Final = (
    # Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters
    # a renderer shows as nothing, whatever their category (some are letters: Lo).
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),  # zero-width space, joiners, direction marks
    (0x202A, 0x202E),  # directional embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, directional isolates
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # byte-order mark
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # unassigned, default ignorable
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol formatting
    (0xE0000, 0xE0FFF),  # tags and variation selectors supplement
    # Not default ignorable, yet drawn as an empty cell.
    (0x2800, 0x2800),  # braille pattern blank
)
"""Code points that show as nothing whatever their Unicode category, inclusive ranges."""


def is_blank(character: str) -> bool:
    """Whether ``character`` shows as nothing wherever it stands: a space, a control or
    format character, or one of :data:`BLANK_RANGES` (a Hangul filler, the combining
    grapheme joiner, a variation selector, the braille blank). An email may hold none:
    ``admin`` with a Hangul filler U+3164 after it would look exactly like ``admin@…``."""
    if unicodedata.category(character) in BLANK_CATEGORIES:
        return True
    code = ord(character)
    return any(first <= code <= last for first, last in BLANK_RANGES)


def is_invisible(character: str) -> bool:
    """Whether ``character`` alone shows nothing: :func:`is_blank`, or a combining mark
    (which shows only on a character before it)."""
    return unicodedata.category(character) in COMBINING_CATEGORIES or is_blank(character)


def has_visible_character(text: str) -> bool:
    """``False`` for a text made only of invisible characters (see :func:`is_invisible`)
    — a name of zero-width spaces or Hangul fillers would list a kitchen or a user
    nobody can see or tell apart."""
    return not all(map(is_invisible, text))


def check_text(field: str, value: str, length_max: int, *, required: bool = True) -> str:
    """``value`` without surrounding whitespace; refused if longer than ``length_max``,
    empty when ``required``, or not empty but with nothing visible (zero-width spaces)."""
    value = value.strip()
    invisible = bool(value) and not has_visible_character(value)
    if (required and not value) or len(value) > length_max or invisible:
        low = 1 if required else 0
        raise InvalidRequest(
            f"{field} has {low} to {length_max} characters, some of them visible",
            code=f"invalid_{field}",
            field=field,
        )
    return value


def check_reason(reason: str) -> str:
    """A reason someone gives for a decision (a decline, a cancellation, a rejection, a
    suspension), checked as :func:`check_text`."""
    return check_text("reason", reason, REASON_LENGTH_MAX)
