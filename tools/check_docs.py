"""Check the docs: every relative Markdown link resolves, and docs/versions.md matches the noxfile."""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def broken_links() -> list[str]:
    problems = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target, _ in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                problems.append(f"{page.relative_to(ROOT)}: broken link {target}")
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
    problems = broken_links() + stale_versions()
    for problem in problems:
        print(problem)
    print(f"docs: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
