"""The house's layers point down: a module imports only from its own layer or below,
and no modules import each other in a loop.

From the bottom: the domain (``aggregates``); the event store and what it needs
(``prep_es.store``) beside the payment providers (``prep_es.payments``); the write side
(``commands``) beside the projections (``projections``); the query services
(``queries``); what a request needs, opened from the settings (``prep_es.services``);
the HTTP edge (``api``); and what composes the application at the top (the rest of
``prep_es``: app, CLI, server, demo). Every import counts, also one inside a function or
under ``TYPE_CHECKING``; imports are absolute, so that each names the module it reaches.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("aggregates", "prep_es", "commands", "projections", "queries", "api")
LAYERS: tuple[tuple[str, ...], ...] = (
    ("aggregates",),
    ("prep_es.store", "prep_es.payments"),
    ("commands", "projections"),
    ("queries",),
    ("prep_es.services",),
    ("api",),
    ("prep_es",),
)
"""Lowest first; a module belongs to the longest prefix that names it."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def layer_of(module: str) -> int:
    found = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(found)[1]


def imported(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The project's modules ``path`` imports, with the line of each import."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: imports are absolute here"
            assert node.module is not None
            # ``from package import module`` names a module; otherwise the package.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in known
                else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield name, node.lineno


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {
        module: {name for name, _ in imported(path, known) if name in known and name != module}
        for module, path in known.items()
    }


def test_every_module_has_a_layer() -> None:
    for module in modules():
        assert layer_of(module) >= 0


def test_no_import_runs_back_up() -> None:
    known = modules()
    upward = [
        f"{path.relative_to(ROOT)}:{line}: {module} imports {name}"
        for module, path in known.items()
        for name, line in imported(path, known)
        if layer_of(name) > layer_of(module)
    ]
    assert upward == []


def test_the_write_side_and_the_projections_do_not_import_each_other() -> None:
    """They stand side by side on one layer: each is built on the store alone."""
    known = modules()
    across = [
        f"{path.relative_to(ROOT)}:{line}: {module} imports {name}"
        for module, path in known.items()
        for name, line in imported(path, known)
        if {module.split(".")[0], name.split(".")[0]} == {"commands", "projections"}
    ]
    assert across == []


def test_no_modules_import_each_other_in_a_loop() -> None:
    graph = import_graph()
    done: set[str] = set()

    def loop_from(module: str, trail: list[str]) -> list[str] | None:
        if module in trail:
            return [*trail[trail.index(module) :], module]
        if module in done:
            return None
        for name in sorted(graph[module]):
            found = loop_from(name, [*trail, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        assert loop_from(module, []) is None


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("aggregates.booking", 0),
        ("prep_es.store.eventstore", 1),
        ("commands.bookings", 2),
        ("projections.runners", 2),
        ("queries.kitchens", 3),
        ("prep_es.services.container", 4),
        ("api.deps", 5),
        ("prep_es.app", 6),
    ],
)
def test_modules_belong_to_the_layer_their_folder_names(module: str, layer: int) -> None:
    assert layer_of(module) == layer
