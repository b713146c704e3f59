"""What every console template keeps to, read from their sources: tables scroll in the
one focusable wrapper, named by their caption."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import api.console

TEMPLATES: Final = Path(api.console.__file__).parent / "templates"


def sources() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(TEMPLATES.glob("*.html"))}


def test_every_table_scrolls_in_the_wrapper_named_by_its_caption() -> None:
    for name, source in sources().items():
        if name == "macros.html":
            continue  # where the wrapper is written, once
        assert 'class="table-wrap"' not in source, name
        tables = source.count("<table")
        assert source.count("{% call table_wrap(") == tables, name
        assert len(re.findall(r'<caption id="[^"]+">', source)) == tables, name
