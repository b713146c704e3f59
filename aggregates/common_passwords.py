"""Passwords too common to accept (NIST SP 800-63B §5.1.1.2: refuse passwords found in
lists of commonly used or breached passwords).

The list ships with the package (``common-passwords.txt.gz``, one lower-case password a
line, 40,101 of them), nothing is fetched at run time. It is the union of two public
lists: the 20,000 common passwords Django ships (created by Royce Williams, BSD-3-Clause
with Django) and the 30,000 most frequent passwords zxcvbn ships (from Xato's corpus,
MIT), lower-cased and deduplicated.

Only the entries a password allowed by the length rule could equal are kept in memory
(a few hundred, not forty thousand strings in every worker): ``user.check_password``
refuses shorter ones before it asks here.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib.resources import files
from typing import Final

LIST_RESOURCE: Final = "common-passwords.txt.gz"


@cache
def common_passwords(length_min: int) -> frozenset[str]:
    """The listed passwords of at least ``length_min`` characters, lower case. Read from
    the package once per process."""
    packed = files(__package__ or "aggregates").joinpath(LIST_RESOURCE).read_bytes()
    listed = gzip.decompress(packed).decode("utf-8").splitlines()
    return frozenset(password for password in listed if len(password) >= length_min)
