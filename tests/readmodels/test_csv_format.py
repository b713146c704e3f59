"""CSV cells a spreadsheet would run as formulas are written as text (OWASP CSV
injection guidance); plain numbers stay numbers."""

from __future__ import annotations

import csv
import io

import pytest
from pydantic import BaseModel

from queries.csv_format import spreadsheet_cell, to_csv


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://x.example")',
        "+1+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)",
        "\t=1+1",
        "\r=1+1",
        "-",
        "+1",  # a sign a number does not need: a spreadsheet computes it
    ],
)
def test_a_cell_that_starts_a_formula_is_written_as_text(text: str) -> None:
    assert spreadsheet_cell(text) == "'" + text


@pytest.mark.parametrize(
    "text", ["Sunset Commissary", "-12.50", "-3", "0.00", "120.00", "2030-01-07", "", "'=x"]
)
def test_any_other_cell_is_written_as_it_is(text: str) -> None:
    assert spreadsheet_cell(text) == text


class Row(BaseModel):
    name: str
    amount: int
    note: str | None


def test_every_cell_of_a_csv_goes_through_it() -> None:
    text = to_csv(
        [Row(name="@SUM(1+1)", amount=-5, note="=1+1"), Row(name="ok", amount=3, note=None)]
    )
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [
        ["name", "amount", "note"],
        ["'@SUM(1+1)", "-5", "'=1+1"],
        ["ok", "3", ""],
    ]
    assert to_csv([], Row) == "name,amount,note\r\n"
    assert to_csv([]) == ""
