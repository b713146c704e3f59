"""Passwords too common to accept (NIST SP 800-63B §5.1.1.2: refuse passwords found in
lists of commonly used or breached passwords).

The list ships with the package (``common-passwords.txt.gz``, one lower-case password a
line, 40,101 of them), nothing is fetched at run time. It is the union of two public
lists: the 20,000 common passwords Django ships (created by Royce Williams, BSD-3-Clause
with Django) and the 30,000 most frequent passwords zxcvbn ships (from Xato's corpus,
MIT), lower-cased and deduplicated.

Two views of it are kept in memory, each read once per process: the entries a password
allowed by the length rule could equal (a few hundred: ``user.check_password`` refuses
shorter ones before it asks here), and every entry's letter core (below), for passwords
that are a common one with digits or symbols added or removed around it
(``Password123!``, ``iloveyou1234``). The cores take about 3.5 MB per process.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib.resources import files
from typing import Final

LIST_RESOURCE: Final = "common-passwords.txt.gz"
CORE_LENGTH_MIN: Final = 4
"""Shorter cores (``abc`` of ``abc123``) are too short to mean a password was common."""


def letter_core(text: str) -> str:
    """``text`` without the characters other than letters at either end: ``password`` of
    ``Password123!`` (lower-cased already), ``iloveyou`` of ``1iloveyou1234``."""
    start = 0
    end = len(text)
    while start < end and not text[start].isalpha():
        start += 1
    while end > start and not text[end - 1].isalpha():
        end -= 1
    return text[start:end]


def _listed() -> list[str]:
    packed = files(__package__ or "aggregates").joinpath(LIST_RESOURCE).read_bytes()
    return gzip.decompress(packed).decode("utf-8").splitlines()


@cache
def common_passwords(length_min: int) -> frozenset[str]:
    """The listed passwords of at least ``length_min`` characters, lower case. Read from
    the package once per process."""
    return frozenset(password for password in _listed() if len(password) >= length_min)


@cache
def common_password_cores() -> frozenset[str]:
    """The :func:`letter_core` of every listed password, where it has at least
    :data:`CORE_LENGTH_MIN` characters. Read from the package once per process."""
    cores = (letter_core(password) for password in _listed())
    return frozenset(core for core in cores if len(core) >= CORE_LENGTH_MIN)
