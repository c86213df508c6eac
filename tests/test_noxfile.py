"""The nox matrix, docs/versions.md and the pyproject extras agree."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
pytest.importorskip("nox")

import check_docs  # noqa: E402


def extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        name: [Requirement(r) for r in reqs]
        for name, reqs in project["optional-dependencies"].items()
    }


def pins(packages: tuple[str, ...]) -> dict[str, Version]:
    found = {}
    for package in packages:
        requirement = Requirement(package)
        for spec in requirement.specifier:
            if spec.operator == "==":
                found[requirement.name.lower()] = Version(spec.version)
    return found


def test_versions_doc_is_generated_from_the_matrix() -> None:
    assert check_docs.stale_versions() == []


def test_docs_links_resolve() -> None:
    assert check_docs.broken_links() == []


def test_matrix_covers_the_issue() -> None:
    noxfile = check_docs.load_noxfile()
    families = [c.family for c in noxfile.AUTOGEN_CELLS]
    assert len(noxfile.AUTOGEN_CELLS) >= 10 and len(noxfile.FRAMEWORK_CELLS) >= 5
    assert families.count("legacy") >= 4 and families.count("agentchat") >= 6
    assert any(c.clobbered for c in noxfile.AUTOGEN_CELLS) and "both" in families
    # the next generations: maf 1.0.0, a middle release and the newest; ag2 oldest and newest 1.x;
    # legacy, agentchat and maf (and ag2) installed together
    maf = {
        pins(c.packages)["agent-framework-core"] for c in noxfile.AUTOGEN_CELLS if c.family == "maf"
    }
    assert Version("1.0.0") in maf and len(maf) >= 3
    ag2 = {pins(c.packages)["ag2"] for c in noxfile.AUTOGEN_CELLS if c.family == "ag2"}
    assert Version("1.0.0") in ag2 and len(ag2) >= 2
    mixed = [
        c
        for c in noxfile.AUTOGEN_CELLS
        if {"legacy", "agentchat", "maf"} <= set(c.required.split(","))
    ]
    assert mixed


def test_extras_admit_every_tested_version() -> None:
    noxfile = check_docs.load_noxfile()
    ranges = {
        req.name.lower(): req.specifier
        for name, reqs in extras().items()
        if name not in ("test", "dev", "demo")  # test pins one version; the demo repeats agentchat
        for req in reqs
    }
    for cell in [*noxfile.AUTOGEN_CELLS, *noxfile.FRAMEWORK_CELLS]:
        if getattr(cell, "clobbered", False):
            continue
        for name, version in pins(cell.packages).items():
            if name in ("werkzeug", "ag2", "autogen", "django"):  # no extra of their own
                continue
            if name == "pyautogen" and version >= Version("0.10"):
                continue  # pyautogen 0.10 is a proxy for agentchat, covered by the agentchat extra
            if name == "autogen-agentchat" and version < Version("0.4"):
                continue  # the legacy line under the new name: the legacy extra is pyautogen
            assert name in ranges, f"no extra declares {name}"
            assert ranges[name].contains(version, prereleases=True), (
                f"{name} {version} not in {ranges[name]}"
            )


def test_the_store_cell_installs_the_oldest_accepted_drivers() -> None:
    noxfile = check_docs.load_noxfile()
    (cell,) = noxfile.STORE_CELLS
    pinned = pins(cell.packages)
    floors = {}
    for name in ("redis", "postgresql", "mysql", "encryption"):
        for requirement in extras()[name]:
            (spec,) = (s for s in requirement.specifier if s.operator == ">=")
            floors[requirement.name.lower()] = (requirement.specifier, Version(spec.version))
    assert set(pinned) == set(floors)
    for package, version in pinned.items():
        specifier, floor = floors[package]
        assert version in specifier, package
        # psycopg-binary 3.1.0-3.1.3 have no Python 3.11 wheels: the oldest that installs
        assert version == floor or (package == "psycopg" and version.release[:2] == (3, 1))
