"""Fixtures shared by every test: the store matrix and the AutoGen family matrix.

Server-backed stores (Redis, PostgreSQL, MariaDB) skip with a reason when their server is
not reachable, unless ``AGENTSESSION_REQUIRE_SERVERS=1`` (set by ``.ci/run``), which turns
the skip into a failure so CI can never pass by silently skipping them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("AGENTSESSION_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "AGENTSESSION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("AGENTSESSION_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")

ALL_STORES = ["memory", "sqlite", "redis", "postgresql", "mariadb"]
# a nox cell that tests one AutoGen version runs on the embedded stores only
_chosen = os.environ.get("AGENTSESSION_TEST_STORES", "")
STORES = [s for s in ALL_STORES if not _chosen or s in _chosen.split(",")]
DURABLE_STORES = [s for s in STORES if s != "memory"]
SERVER_STORES = {"redis": REDIS_URL, "postgresql": POSTGRES_URL, "mariadb": MARIADB_URL}
FAMILIES = ["legacy", "agentchat", "maf", "ag2"]
FAMILY_MODULES = {
    "legacy": "autogen",
    "agentchat": "autogen_agentchat",
    "maf": "agent_framework",
    "ag2": "ag2",
}


def servers_required() -> bool:
    return os.environ.get("AGENTSESSION_REQUIRE_SERVERS", "") not in ("", "0", "false")


def _reachable(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    default = {"redis": 6379, "postgresql": 5432, "mysql": 3306}[parts.scheme.split("+")[0]]
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default), 1):
            return True
    except OSError:
        return False


def need_server(kind: str) -> str:
    """The server's URL, or skip (fail when servers are required) if it is unreachable."""
    url = SERVER_STORES[kind]
    if not _reachable(url):
        message = f"{kind} server not reachable at {url}"
        if servers_required():
            pytest.fail(f"{message} and AGENTSESSION_REQUIRE_SERVERS is set")
        pytest.skip(f"{message}; start it or set AGENTSESSION_TEST_{kind.upper()}")
    return url


def _with_query(url: str, **params: str) -> str:
    joiner = "&" if "?" in url else "?"
    return url + joiner + "&".join(f"{k}={v}" for k, v in params.items())


def make_store_url(kind: str, tmp_path: Path) -> str:
    """A store URL isolated for one test (own file, key prefix or table prefix)."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'agents.db'}"
    url = need_server(kind)
    tag = uuid.uuid4().hex[:10]
    if kind == "redis":
        return _with_query(url, prefix=f"agentsession-test-{tag}:")
    return _with_query(url, table_prefix=f"t{tag}_")


def drop_store(kind: str, url: str) -> None:
    """Remove what a test store left on its server (keys or tables of its own prefix)."""
    if kind not in SERVER_STORES:
        return
    from agentsession.stores import open_store

    async def drop() -> None:
        store: Any = open_store(url)
        try:
            await store.drop()
        finally:
            await store.close()

    asyncio.run(drop())


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store_kind: str, tmp_path: Path) -> Iterator[str]:
    url = make_store_url(store_kind, tmp_path)
    yield url
    drop_store(store_kind, url)


@pytest.fixture(params=DURABLE_STORES)
def durable_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def durable_store_url(durable_kind: str, tmp_path: Path) -> Iterator[str]:
    url = make_store_url(durable_kind, tmp_path)
    yield url
    drop_store(durable_kind, url)


def family_installed(name: str) -> bool:
    """True if the family's module is importable (for legacy: an autogen with ConversableAgent)."""
    if importlib.util.find_spec(FAMILY_MODULES[name]) is None:
        return False
    if name != "legacy":
        return True
    import autogen

    return hasattr(autogen, "ConversableAgent")


def families_required() -> set[str]:
    """Families that must be installed (``AGENTSESSION_REQUIRE_FAMILIES=legacy,agentchat,maf``)."""
    raw = os.environ.get("AGENTSESSION_REQUIRE_FAMILIES", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if not family_installed(name):
        if name in families_required():
            pytest.fail(f"the {name} AutoGen family is required but not installed")
        pytest.skip(f"the {name} AutoGen family is not installed in this environment")
    return name


@pytest.fixture(autouse=True)
def _no_cache_dir_in_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # legacy AutoGen may write ./.cache; keep every test's cwd in its own tmp dir
    monkeypatch.chdir(tmp_path)


# what a "slow" test starts: another Python, a web server, a database, a browser
_SLOW_PROGRAMS = ("python", "uvicorn", "gunicorn", "chromium", "redis-server", "pg_ctl", "postgres",
                  "mysqld", "mariadbd", "pgbouncer")  # fmt: skip


@pytest.fixture(autouse=True)
def _only_slow_tests_start_processes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytest -m "not slow"`` is the in-process subset: a test that starts a Python
    subprocess, a server or a browser must be marked ``@pytest.mark.slow``."""
    if request.node.get_closest_marker("slow") is not None:
        return
    import subprocess

    real_init = subprocess.Popen.__init__

    def checked_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        program = str(args if isinstance(args, (str, bytes, os.PathLike)) else args[0])
        if Path(program).name.startswith(_SLOW_PROGRAMS) or program == sys.executable:
            pytest.fail(f"{request.node.nodeid} starts {program}: mark it @pytest.mark.slow")
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", checked_init)
