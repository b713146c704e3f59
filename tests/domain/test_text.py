"""What shows as nothing: blanks refused anywhere in an email, and names that must have
something visible."""

from __future__ import annotations

import pytest

from aggregates.errors import InvalidRequest
from aggregates.text import has_visible_character, is_blank, is_invisible
from aggregates.user import normalize_email

BLANKS = [
    "\u3164",  # Hangul filler
    "\u115f",  # Hangul choseong filler
    "\u1160",  # Hangul jungseong filler
    "\uffa0",  # halfwidth Hangul filler
    "\u2800",  # braille pattern blank
    "\u034f",  # combining grapheme joiner
    "\u180e",  # Mongolian vowel separator
    "\u2060",  # word joiner
    "\u2064",  # invisible plus
    "\u206f",  # nominal digit shapes
    "\ufe00",  # variation selector 1
    "\ufe0f",  # variation selector 16
    "\u00ad",  # soft hyphen
    "\u200b",  # zero-width space
    "\ufeff",  # byte-order mark
    "\U000e0001",  # language tag
    "\U000e0100",  # variation selector 17
    "\U000e0fff",
]


@pytest.mark.parametrize("character", BLANKS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_blank_is_invisible(character: str) -> None:
    assert is_blank(character)
    assert is_invisible(character)


@pytest.mark.parametrize("character", ["\u0301", "\u20dd"], ids=["acute", "enclosing-circle"])
def test_a_combining_mark_alone_is_invisible_but_not_blank(character: str) -> None:
    assert is_invisible(character)
    assert not is_blank(character)


@pytest.mark.parametrize("character", ["a", "é", "한", "ㅎ", "⠁", "0", "@", "-"])
def test_what_shows_is_neither(character: str) -> None:
    assert not is_invisible(character)
    assert not is_blank(character)


@pytest.mark.parametrize(
    "text", ["\u3164\u3164", "\u2800\u2800", "\u034f\u034f", "\ufe0f", "\u0301\u0301", " \u3164 "]
)
def test_a_text_of_invisible_characters_has_nothing_visible(text: str) -> None:
    assert not has_visible_character(text)


@pytest.mark.parametrize("text", ["Ana", "\u3164Ana", "e\u0301", "한글", "\u2800x"])
def test_a_text_with_something_to_see_has_it(text: str) -> None:
    assert has_visible_character(text)


@pytest.mark.parametrize("blank", BLANKS, ids=lambda c: f"U+{ord(c):04X}")
def test_an_email_holding_a_blank_is_refused(blank: str) -> None:
    for email in (f"admin{blank}@demo.prep.example", f"ad{blank}min@demo.prep.example"):
        with pytest.raises(InvalidRequest) as caught:
            normalize_email(email)
        assert caught.value.code == "invalid_email"


def test_an_email_with_combining_marks_is_accepted() -> None:
    """Devanagari writes vowels as combining marks: such an address is real."""
    assert normalize_email("हिन्दी@example.com") == "हिन्दी@example.com"
