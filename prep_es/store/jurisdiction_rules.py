"""Where the jurisdiction rules come from: a TOML file, the packaged one
(``jurisdictions.toml`` beside this module) unless ``PREP_ES_JURISDICTIONS_FILE`` names
another. The domain is handed the parsed :class:`JurisdictionCatalog`; read models that
need the rules are built with the packaged ones, so a rebuild computes the same rows
whatever a process's settings."""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from pathlib import Path

from aggregates.jurisdictions import JurisdictionCatalog


def packaged_jurisdictions_path() -> Path:
    return Path(str(resources.files("prep_es.store").joinpath("jurisdictions.toml")))


def load_jurisdictions(path: Path) -> JurisdictionCatalog:
    with path.open("rb") as file:
        return JurisdictionCatalog.from_mapping(tomllib.load(file))


@functools.cache
def packaged_jurisdictions() -> JurisdictionCatalog:
    return load_jurisdictions(packaged_jurisdictions_path())
