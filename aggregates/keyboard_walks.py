"""Keyboard walks: passwords typed by moving a finger from key to neighbouring key
(``zxcvbnmasdfghjkl``, ``9ol8ik7uj6yh``, ``qweasdzxcqwe``), on the QWERTY, AZERTY and
QWERTZ layouts. A guesser enumerates these first (zxcvbn's "spatial" patterns), so the
password rules count them as no strength at all.
"""

from __future__ import annotations

from functools import cache
from typing import Final

Layout = tuple[tuple[str, ...], ...]
"""Rows of keys, top (digits) to bottom; each key is every character it types, lower
case (a letter's capital is folded away before a password is looked at)."""

QWERTY: Final[Layout] = (
    ("1!", "2@", "3#", "4$", "5%", "6^", "7&", "8*", "9(", "0)", "-_", "=+"),
    ("q", "w", "e", "r", "t", "y", "u", "i", "o", "p", "[{", "]}"),
    ("a", "s", "d", "f", "g", "h", "j", "k", "l", ";:", "'\""),
    ("z", "x", "c", "v", "b", "n", "m", ",<", ".>", "/?"),
)
AZERTY: Final[Layout] = (
    ("&1", "é2", '"3', "'4", "(5", "-6", "è7", "_8", "ç9", "à0", ")°", "=+"),
    ("a", "z", "e", "r", "t", "y", "u", "i", "o", "p", "^¨", "$£"),
    ("q", "s", "d", "f", "g", "h", "j", "k", "l", "m", "ù%"),
    ("w", "x", "c", "v", "b", "n", ",?", ";.", ":/", "!§"),
)
QWERTZ: Final[Layout] = (
    ("1!", '2"', "3§", "4$", "5%", "6&", "7/", "8(", "9)", "0=", "ß?", "´`"),
    ("q", "w", "e", "r", "t", "z", "u", "i", "o", "p", "ü", "+*"),
    ("a", "s", "d", "f", "g", "h", "j", "k", "l", "ö", "ä", "#'"),
    ("y", "x", "c", "v", "b", "n", "m", ",;", ".:", "-_"),
)
LAYOUTS: Final = (QWERTY, AZERTY, QWERTZ)
ROW_OFFSETS: Final = (0.0, 0.5, 0.75, 1.25)
"""How far right each row's first key sits, in key widths: the rows' stagger."""
NEIGHBOUR_DISTANCE_MAX: Final = 0.75
"""Keys in adjacent rows touch when their centres are at most this far apart across."""
WALK_RUN_LENGTH_MIN: Final = 3
"""Shorter runs of neighbouring keys (``as``, ``re``) occur in any word."""


@cache
def neighbours(layout: Layout) -> frozenset[tuple[str, str]]:
    """Every ordered pair of characters on touching keys of ``layout``: beside each other
    in a row, or diagonally in adjacent rows (``q``–``a``, ``s``–``e``, ``9``–``o``)."""
    keys = [
        (row, ROW_OFFSETS[row] + column, characters)
        for row, keys_of_row in enumerate(layout)
        for column, characters in enumerate(keys_of_row)
    ]
    pairs: set[tuple[str, str]] = set()
    for row, across, characters in keys:
        for other_row, other_across, other_characters in keys:
            beside = other_row == row and abs(other_across - across) == 1
            diagonal = (
                abs(other_row - row) == 1 and abs(other_across - across) <= NEIGHBOUR_DISTANCE_MAX
            )
            if beside or diagonal:
                pairs.update((one, other) for one in characters for other in other_characters)
    return frozenset(pairs)


def characters_off_walks(text: str) -> int:
    """How many characters of ``text`` lie outside runs of at least
    :data:`WALK_RUN_LENGTH_MIN` neighbouring keys (each step to a touching key, in any
    direction), on the layout where the fewest do."""
    return min(_off_walks(text, neighbours(layout)) for layout in LAYOUTS)


def _off_walks(text: str, touching: frozenset[tuple[str, str]]) -> int:
    off = 0
    run = 1
    for index in range(1, len(text) + 1):
        if index < len(text) and (text[index - 1], text[index]) in touching:
            run += 1
            continue
        if run < WALK_RUN_LENGTH_MIN:
            off += run
        run = 1
    return off
