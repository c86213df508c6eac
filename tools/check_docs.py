"""Check the docs beyond what ``mkdocs build --strict`` checks: every relative Markdown link of
README.md and docs/ resolves, docs/versions.md matches the noxfile, every page shows the one
default store, and no page speaks the project's internal language to users."""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


# words for how the code came about, or for the tracker, that mean nothing to a reader
JARGON = re.compile(
    r"field report|the issue\b|issue's|engineering log|\bBefore, a turn|target by target",
    re.IGNORECASE,
)
# store files of earlier versions: every page uses the one default, sqlite:///agentsession.db
OLD_STORE_FILES = re.compile(r"\bagents\.db\b|agentsession-demo\.db")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def broken_links() -> list[str]:
    problems = []
    for page in pages():
        for target, _ in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                problems.append(f"{page.relative_to(ROOT)}: broken link {target}")
    return problems


def wording() -> list[str]:
    problems = []
    for page in pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            where = f"{page.relative_to(ROOT)}:{number}"
            if match := JARGON.search(line):
                problems.append(f"{where}: {match.group(0)!r} speaks to the developers, not users")
            if match := OLD_STORE_FILES.search(line):
                problems.append(f"{where}: {match.group(0)} (the default is agentsession.db)")
    return problems


@cache  # nox registers sessions on import: load the noxfile once
def load_noxfile() -> Any:
    spec = importlib.util.spec_from_file_location("noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    noxfile = importlib.util.module_from_spec(spec)
    sys.modules["noxfile"] = noxfile  # dataclasses look their module up while it loads
    spec.loader.exec_module(noxfile)
    return noxfile


def stale_versions() -> list[str]:
    current = (ROOT / "docs" / "versions.md").read_text()
    expected = load_noxfile().render_versions()
    return [] if current == expected else ["docs/versions.md is stale: run `nox -s versions`"]


def main() -> int:
    problems = broken_links() + stale_versions() + wording()
    for problem in problems:
        print(problem)
    print(f"docs: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
