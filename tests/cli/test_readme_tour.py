"""The README's tour with curl, run as a new user would: word for word, against
``prep-es serve`` over a database the demo filled (as ``make run`` leaves it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli.running import cli_runner
from tests.cli.test_serve import REPOSITORY, start_server

__all__ = ["start_server"]  # the fixture this module's test takes

TOUR_TIMEOUT_S = 120
TOUR_URL = "http://127.0.0.1:8000"
"""Where the tour expects the server (``make run``'s address)."""


def readme_tour() -> str:
    readme = (REPOSITORY / "README.md").read_text()
    found = re.search(r"### A tour with curl\n.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert found is not None, "the README has no tour"
    return found.group(1)


def test_the_readme_tour_runs_as_written(
    start_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the tour needs curl, which this machine does not have")
    database_url = f"sqlite:///{tmp_path / 'prep_es.db'}"
    demo = cli_runner(monkeypatch, capsys, database_url)("demo")
    assert demo.code == 0, demo.err
    server = start_server(database_url)
    tour = readme_tour()
    assert TOUR_URL in tour

    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tour.replace(TOUR_URL, server.url)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TOUR_TIMEOUT_S,
        check=False,
    )

    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}\n{server.log()}"
    assert '"name":"Echo Park Commissary"' in ran.stdout  # found by the search
    assert '"status":"cancelled"' in ran.stdout
    # Cancelled 30 days ahead: the whole hold (3 h at 48.00) goes back to the customer.
    assert '"refund":{"released":"144.00","captured":"0.00"}' in ran.stdout, ran.stdout
    # The account, read at the cancel's position, holds nothing any more.
    assert '"held":"0.00","available":"500.00"' in ran.stdout, ran.stdout
    assert "period_start,gmv,platform_revenue" in ran.stdout.replace(" ", "")
    # Corrected, then refused while the money is on the account, then erased.
    assert '"full_name":"Samuel Lee","role":"customer"' in ran.stdout, ran.stdout
    assert '"code":"erasure_blocked"' in ran.stdout, ran.stdout
    assert '"blockers":[{"kind":"balance","available":"500.00","held":"0.00"}]' in ran.stdout
    assert '"forced":false,"blockers":[]' in ran.stdout, ran.stdout
    # The history after the erasure: every name and email sealed, named as erased.
    assert '"email":null,"full_name":null' in ran.stdout, ran.stdout
    assert '"erased":true,"erased_fields":["email","full_name"]' in ran.stdout, ran.stdout
    assert "samuel@example.com" not in ran.stdout.split('"forced":false')[1]
