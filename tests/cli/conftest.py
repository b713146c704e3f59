"""Fixtures for the ``prep-es`` command line tests."""

from __future__ import annotations

import pytest

from tests.cli.running import RunCli, cli_runner


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> RunCli:
    """``prep-es`` on a fresh store of each backend in turn (SQLite, then PostgreSQL)."""
    return cli_runner(monkeypatch, capsys, database_url)
