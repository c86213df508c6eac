"""Every ```python block of README.md and of every page under docs/ runs as written.

The convention every page follows (docs/contributing.md repeats it for writers):

- The ``python`` blocks of one page run in order, in one namespace, like the cells of a
  notebook, in a fresh Python process whose working directory is a new, empty temporary
  directory (so ``sqlite:///agentsession.db`` is a new file there).
- A block that would need a real model chooses it from the environment and falls back to the
  offline model, visibly: ``if os.environ.get("OPENAI_API_KEY"): ... else:
  OfflineChatCompletionClient()``. The blocks run with every ``*_API_KEY``, ``*_ENDPOINT``,
  ``MODEL_PROVIDER`` and ``OLLAMA_*`` variable removed, so they take the offline branch.
- Secrets come from the environment as in production: the blocks run with ``SECRET_KEY`` set
  to 64 random hex digits (``export SECRET_KEY=...`` on a reader's machine).
- Stores are ``memory://`` or ``sqlite:///``; no block needs a server. A web app is exercised
  through its framework's test client (or httpx) in the block after it, never by serving it.
- Whatever is not meant to run is not a ``python`` block: shell commands are ``bash``, output
  is ``text``, configuration is ``toml`` or ``ini``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
REMOVED = re.compile(r"(_API_KEY|_ENDPOINT)$|^(MODEL_PROVIDER|OLLAMA_.*|AGENTSESSION_.*)$")

# exec each block under its own name, so a traceback says which page and line failed
# (in __main__'s own namespace, which Django's ROOT_URLCONF=__name__ imports)
RUNNER = """
import json as _json, sys as _sys
for _label, _code in _json.load(_sys.stdin):
    exec(compile(_code, _label, "exec"), globals())
"""


def python_blocks(page: Path) -> list[tuple[str, str]]:
    text = page.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start(1)) + 1
        # the leading newlines keep the block's line numbers those of the page
        blocks.append((f"{page.relative_to(ROOT)}", "\n" * (line - 1) + match.group(1)))
    return blocks


def pages_with_code() -> list[Path]:
    return [page for page in PAGES if python_blocks(page)]


@pytest.mark.slow
@pytest.mark.parametrize("page", pages_with_code(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_python_blocks_of_the_page_run(page: Path, tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not REMOVED.search(name)}
    env.update(SECRET_KEY=secrets.token_hex(32), PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(python_blocks(page)),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-4000:]}"


def test_the_pages_that_show_code_are_all_collected() -> None:
    # the README and the pages a newcomer reads first must have been found
    names = {str(p.relative_to(ROOT)) for p in pages_with_code()}
    assert {"README.md", "docs/getting-started.md", "docs/quickstart/flask.md"} <= names


def test_the_docs_speak_to_users_and_name_one_store_file() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import check_docs

    assert check_docs.wording() == []


def test_one_default_store_everywhere() -> None:
    """The engine, the CLI and the demo default to the same file, so `agentsession ls` after
    `agentsession demo` lists the demo's conversations (the docs are checked above)."""
    from agentsession import cli, manager

    pytest.importorskip("starlette")
    from agentsession.adapters import demo

    defaults = {manager.DEFAULT_STORE_URL, cli.DEFAULT_STORE, demo.DEFAULT_STORE}
    assert defaults == {"sqlite:///agentsession.db"}
