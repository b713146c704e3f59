"""What every benchmark reports, and how: figures (a value and its unit), ratios between
them and notes, printed as a table and written to ``bench/results/<name>.json`` with the
run's details (``meta``). A helper of the benchmarks, not one of them."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIRECTORY: Final = ROOT / "bench" / "results"


def run_meta(started: float) -> dict[str, Any]:
    """The details every results file gives: Python, CPUs, the run's wall time since
    ``started`` (``time.perf_counter()``) and when it was measured."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "wall_s": round(time.perf_counter() - started, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass
class Report:
    """One benchmark's results. ``name`` names its file under ``bench/results/``;
    ``targets`` says what each figure or ratio aims at (printed beside it)."""

    name: str
    targets: Mapping[str, str] = field(default_factory=dict)
    value_format: str = ",.3f"
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return RESULTS_DIRECTORY / f"{self.name}.json"

    def figure(self, name: str, value: float, unit: str) -> None:
        self.figures[name] = {"value": round(value, 4), "unit": unit}

    def ratio(self, name: str, numerator: float, denominator: float) -> None:
        self.ratios[name] = round(numerator / denominator, 4)

    def aim_of(self, name: str) -> str:
        """What the table prints after a figure: its target, if it has one."""
        return self.targets.get(name, "")

    def print_table(self) -> None:
        width = max(len(name) for name in [*self.figures, *self.ratios])
        print(f"\n{'figure':<{width}}  {'value':>12}  {'unit':<9} target")
        print(f"{'-' * width}  {'-' * 12}  {'-' * 9} ------")
        for name, figure in self.figures.items():
            value = format(figure["value"], self.value_format)
            print(f"{name:<{width}}  {value:>12}  {figure['unit']:<9} {self.aim_of(name)}")
        if self.ratios:
            print(f"\n{'ratio':<{width}}  {'value':>12}  target")
            print(f"{'-' * width}  {'-' * 12}  ------")
            for name, ratio in self.ratios.items():
                print(f"{name:<{width}}  {ratio:>12.3f}  {self.targets.get(name, '')}")
        for note in self.notes:
            print(f"note: {note}")

    def sections(self) -> dict[str, Any]:
        """The results file's sections before the notes and the meta."""
        return {"figures": self.figures, "ratios": self.ratios}

    def write(self, meta: dict[str, Any]) -> None:
        """Write the results file and say where (with the run's wall time from ``meta``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {**self.sections(), "notes": self.notes, "meta": meta}
        self.path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"\nwrote {self.path.relative_to(ROOT)} in {meta['wall_s']} s total")
