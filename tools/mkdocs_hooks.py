"""MkDocs hooks for the docs site (``mkdocs.yml``: ``hooks:``).

- The package's ``adapters/`` folder is imported as ``agentsession.adapters`` (the build backend
  maps it), which mkdocstrings cannot follow: a tree of links under ``build/docs-src`` shows
  it the package as it is installed.
- ``PENDING_PAGES`` are in the nav while another branch writes them: a checkout without one gets
  a placeholder page instead of a broken build. Only these pages; any other missing page fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
SOURCE_TREE = ROOT / "build" / "docs-src" / "agentsession"

PENDING_PAGES = {
    "security.md": "# Security\n\nThis page is being written: cookies, CSRF and SameSite, owner "
    "binding and id rotation are described in [the web adapters](adapters.md) meanwhile.\n",
}


@event_priority(100)  # before mkdocstrings reads its search paths
def on_config(config: Any, **kwargs: Any) -> Any:
    SOURCE_TREE.mkdir(parents=True, exist_ok=True)
    for stale in SOURCE_TREE.iterdir():  # a module that was removed or renamed since
        if not stale.exists():
            stale.unlink()
    for entry in [*(ROOT / "agentsession").iterdir(), ROOT / "adapters"]:
        if entry.name == "__pycache__":
            continue
        link = SOURCE_TREE / entry.name
        if not link.is_symlink():
            link.symlink_to(entry)
    return config


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    for name, text in PENDING_PAGES.items():
        if files.get_file_from_path(name) is None:
            files.append(File.generated(config, name, content=text))
    return files
