"""CSV for downloads (``Accept: text/csv``), safe to open in a spreadsheet.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or a
carriage return before one) as a formula: a kitchen named ``=HYPERLINK("http://x")`` would
become a link in an analyst's sheet. Every cell written here goes through
:func:`spreadsheet_cell`, which, as the OWASP CSV injection guidance says, puts a single
quote before such a cell so that it is shown as the text it is. A cell that is a plain
number (``-12.50``) is left alone: it cannot be a formula, and it stays a number.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel

FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def spreadsheet_cell(text: str) -> str:
    """``text`` as a cell no spreadsheet runs as a formula."""
    if text.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def to_csv(rows: Sequence[BaseModel], model: type[BaseModel] | None = None) -> str:
    """CSV text (RFC 4180: a header row, CRLF line ends, quoting where needed) of read
    models of one type: one column per field, in declaration order. ``None`` is an
    empty cell; dates and UUIDs are written as in JSON. Without rows: the header row
    of ``model``, or nothing when no model is given."""
    if not rows and model is None:
        return ""
    model = model or type(rows[0])
    assert all(type(row) is model for row in rows), "rows of one read model"
    fields = list(model.model_fields)
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\r\n")
    writer.writerow([spreadsheet_cell(field) for field in fields])
    for row in rows:
        values = row.model_dump(mode="json")
        writer.writerow([_cell(values[field]) for field in fields])
    return output.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    assert not isinstance(value, dict | list), "CSV rows are flat"
    return spreadsheet_cell(str(value))
