"""Running ``prep-es`` in-process: ``main([...])`` with the environment it reads
(``PREP_ES_*``) pointed at one database, output captured."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from prep_es.cli import main
from tests.support import master_key_environment


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


RunCli = Callable[..., Ran]


def isolate_environment(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    """Only ``PREP_ES_DATABASE_URL`` (and on PostgreSQL the master key): the shell
    running the tests must not leak in."""
    for name in list(os.environ):
        if name.upper().startswith("PREP_ES_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PREP_ES_DATABASE_URL", database_url)
    for name, value in master_key_environment(database_url).items():
        monkeypatch.setenv(name, value)


def cli_runner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> RunCli:
    """Run ``prep-es ARGS...`` in-process against ``database_url``."""
    isolate_environment(monkeypatch, database_url)

    def run(*arguments: str) -> Ran:
        capsys.readouterr()
        code = main(list(arguments))
        captured = capsys.readouterr()
        return Ran(code=code, out=captured.out, err=captured.err)

    return run
