"""The test matrix: every AutoGen API break and framework version agentsession supports.

    nox -l                                  # the cells, as a table
    nox -s "autogen(agentchat-0.4.2)"       # one cell
    nox -t autogen                          # every AutoGen cell (also: -t framework)

The cells below are also the source of docs/versions.md (``nox -s versions`` rewrites it; a test
checks they agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "types", "docs", "autogen", "framework", "stores"]

ROOT = Path(__file__).parent
PYTHON = "3.11"


@dataclass(frozen=True)
class AutoGenCell:
    id: str
    family: str  # the family the cell proves ("legacy", "agentchat", "maf", "ag2", "both", "all")
    packages: tuple[str, ...]
    note: str
    clobbered: bool = False
    tests: tuple[str, ...] = ()  # default: FAMILY_TESTS

    @property
    def required(self) -> str:
        """The families the cell's tests must find installed (AGENTSESSION_REQUIRE_FAMILIES)."""
        return {"both": "legacy,agentchat", "all": ",".join(FAMILIES)}.get(self.family, self.family)


@dataclass(frozen=True)
class FrameworkCell:
    id: str
    packages: tuple[str, ...]
    tests: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class StoreCell:
    id: str
    packages: tuple[str, ...]
    note: str


FAMILIES = ("legacy", "agentchat", "maf", "ag2")
FAMILY_TESTS = (
    "tests/families",
    "tests/test_manager.py",
    "tests/test_turns.py",
    "tests/test_catch_up.py",
    "tests/test_messages.py",
)
# the next generations' cells: their family, its framework integration, migration checks
MAF_TESTS = (
    "tests/families",
    "tests/test_manager.py",
    "tests/test_catch_up.py",
    "tests/test_turns.py",
    "tests/integrations/test_maf_integration.py",
    "tests/test_migration.py",
)
AG2_TESTS = (
    "tests/families",
    "tests/test_manager.py",
    "tests/test_catch_up.py",
    "tests/test_turns.py",
    "tests/integrations/test_ag2_integration.py",
    "tests/test_migration.py",
)
CROSSING_TESTS = ("tests/families", "tests/test_migration.py")

AUTOGEN_CELLS = [
    AutoGenCell(
        "legacy-pyautogen-0.2.35",
        "legacy",
        ("pyautogen==0.2.35",),
        "Microsoft's last pyautogen 0.2",
    ),
    AutoGenCell(
        "legacy-autogen-agentchat-0.2.40",
        "legacy",
        ("autogen-agentchat==0.2.40",),
        "the legacy API under the new name",
    ),
    AutoGenCell("legacy-ag2-0.9.10", "legacy", ("ag2==0.9.10",), "AG2, newest 0.9"),
    AutoGenCell("legacy-autogen-0.14.1", "legacy", ("autogen==0.14.1",), "AG2 classic"),
    AutoGenCell(
        "agentchat-0.4.2", "agentchat", ("autogen-agentchat==0.4.2",), "oldest new-API release"
    ),
    AutoGenCell(
        "agentchat-0.4.9.3",
        "agentchat",
        ("autogen-agentchat==0.4.9.3",),
        "team state re-keyed; tool results need name/is_error (0.4.8)",
    ),
    AutoGenCell(
        "agentchat-0.5.7", "agentchat", ("autogen-agentchat==0.5.7",), "public model_context"
    ),
    AutoGenCell(
        "agentchat-0.6.4", "agentchat", ("autogen-agentchat==0.6.4",), "datetimes in dumped state"
    ),
    AutoGenCell("agentchat-0.7.5", "agentchat", ("autogen-agentchat==0.7.5",), "newest"),
    AutoGenCell(
        "agentchat-pyautogen-0.10.0",
        "agentchat",
        ("pyautogen==0.10.0",),
        "pyautogen as a proxy for the new API",
    ),
    AutoGenCell(
        "mixed-pyautogen-0.2.35-agentchat-0.7.5",
        "both",
        ("pyautogen==0.2.35", "autogen-agentchat==0.7.5"),
        "both families side by side",
    ),
    AutoGenCell(
        "maf-1.0.0",
        "maf",
        ("agent-framework-core==1.0.0",),
        "Agent Framework GA; __version__ is the 0.0.0 placeholder (read from the distribution)",
        tests=MAF_TESTS,
    ),
    AutoGenCell(
        "maf-1.12.1",
        "maf",
        ("agent-framework-core==1.12.1",),
        "the last release with the version placeholder and the class-only register_state_type",
        tests=MAF_TESTS,
    ),
    AutoGenCell(
        "maf-1.23.0",
        "maf",
        ("agent-framework-core==1.23.0",),
        "newest; SessionStore in core, register_state_type(type_id=...) (both from 1.13.0)",
        tests=MAF_TESTS,
    ),
    AutoGenCell(
        "ag2-1.0.0", "ag2", ("ag2==1.0.0",), "oldest AG2 v1 (`import ag2`)", tests=AG2_TESTS
    ),
    AutoGenCell(
        "ag2-1.2.1", "ag2", ("ag2==1.2.1",), "newest; AG2's own dead-turn repair", tests=AG2_TESTS
    ),
    AutoGenCell(
        "mixed-all-four",
        "all",
        (
            "pyautogen==0.2.35",
            "autogen-agentchat==0.7.5",
            "agent-framework-core==1.23.0",
            "ag2==1.2.1",
        ),
        "legacy, agentchat, maf and ag2 side by side: conversations cross between all four",
        tests=CROSSING_TESTS,
    ),
    AutoGenCell(
        "clobbered-pyautogen-0.2.35-autogen-agentchat-0.2.40",
        "legacy",
        ("pyautogen==0.2.35", "autogen-agentchat==0.2.40"),
        "two distributions in one autogen folder: doctor must flag it",
        clobbered=True,
    ),
]

# frameworks a cell does not install are skipped by the tests themselves
ADAPTER_TESTS = ("tests/adapters", "tests/test_examples.py", "tests/test_demo.py")
SERVER_TOOLS = ("httpx>=0.27", "uvicorn>=0.23", "gunicorn>=22")
FRAMEWORK_CELLS = [
    FrameworkCell(
        "flask-2.3",
        ("flask==2.3.3", "werkzeug==2.3.8", *SERVER_TOOLS),
        ADAPTER_TESTS,
        "oldest Flask",
    ),
    FrameworkCell(
        "flask-3.1",
        ("flask==3.1.3", *SERVER_TOOLS),
        ADAPTER_TESTS,
        "newest Flask",
    ),
    FrameworkCell(
        "starlette-0.37",
        ("starlette==0.37.2", "httpx>=0.27,<0.28", "uvicorn>=0.23"),
        ADAPTER_TESTS,
        "oldest Starlette",
    ),
    FrameworkCell(
        "starlette-1.10",
        ("starlette==1.10.0", *SERVER_TOOLS),
        ADAPTER_TESTS,
        "newest Starlette",
    ),
    FrameworkCell(
        "fastapi-0.165",
        ("fastapi==0.165.0", *SERVER_TOOLS),
        ADAPTER_TESTS,
        "newest FastAPI",
    ),
    FrameworkCell(
        "django-5.2",
        ("django==5.2.19", "flask>=2.3", *SERVER_TOOLS),
        ADAPTER_TESTS,
        "newest Django, through the WSGI middleware",
    ),
]

# the store drivers at the oldest releases pyproject.toml accepts (the full suite has the newest)
STORE_TESTS = ("tests/stores",)
# what the store tests drive besides the stores: the adapters' 503s over a frozen server
STORE_TEST_TOOLS = ("autogen-agentchat==0.7.5", "starlette>=0.37", "flask>=2.3", *SERVER_TOOLS)
STORE_CELLS = [
    StoreCell(
        "drivers-oldest",
        (
            "redis[hiredis]==5.0.1",
            "sqlalchemy==2.0.0",
            "psycopg[binary]==3.1.4",
            "pymysql==1.1.0",
            "cryptography==42.0.0",
        ),
        "the oldest accepted drivers (psycopg-binary 3.1.4: the first with Python 3.11 wheels), "
        "against the real servers, Cluster and Sentinel included",
    ),
]


def install_agentsession(session: nox.Session, *packages: str) -> None:
    """The package under test (editable) plus exactly the given pins; itsdangerous is the
    tests' reference for the token format, which agentsession writes without it."""
    session.install("-e", ".", "pytest>=8", "itsdangerous>=2.1", *packages)


@nox.session(python=PYTHON, tags=["autogen"])
@nox.parametrize("cell", AUTOGEN_CELLS, ids=[c.id for c in AUTOGEN_CELLS])
def autogen(session: nox.Session, cell: AutoGenCell) -> None:
    """One AutoGen distribution (or pair) installed; the families, engine and CLI tests."""
    if cell.clobbered:
        install_agentsession(session)
        for package in cell.packages:  # one after the other: the second overwrites the first
            session.install(package)
        session.run(
            "pytest", "tests/test_clobbered_install.py", env={"AGENTSESSION_EXPECT_CLOBBERED": "1"}
        )
        return
    install_agentsession(session, *cell.packages)
    env = {
        "AGENTSESSION_REQUIRE_FAMILIES": cell.required,
        "AGENTSESSION_TEST_STORES": "memory,sqlite",
    }
    session.run("pytest", "-q", *(cell.tests or FAMILY_TESTS), *session.posargs, env=env)


@nox.session(python=PYTHON, tags=["framework"])
@nox.parametrize("cell", FRAMEWORK_CELLS, ids=[c.id for c in FRAMEWORK_CELLS])
def framework(session: nox.Session, cell: FrameworkCell) -> None:
    """One web framework version with the agentchat family: the adapter tests."""
    install_agentsession(session, "autogen-agentchat==0.7.5", *cell.packages)
    # each cell says which family it installs (CI requires both for the full suite)
    env = {
        "AGENTSESSION_TEST_STORES": "memory,sqlite",
        "AGENTSESSION_REQUIRE_FAMILIES": "agentchat",
        "AGENTSESSION_REQUIRE_BROWSER": "0",  # the browser test runs in the full suite
    }
    session.run("pytest", "-q", *cell.tests, *session.posargs, env=env)


@nox.session(python=PYTHON, tags=["stores"])
@nox.parametrize("cell", STORE_CELLS, ids=[c.id for c in STORE_CELLS])
def stores(session: nox.Session, cell: StoreCell) -> None:
    """One set of store drivers: the store tests on every store, real servers included."""
    install_agentsession(session, *STORE_TEST_TOOLS, *cell.packages)
    env = {"AGENTSESSION_REQUIRE_FAMILIES": "agentchat", "AGENTSESSION_REQUIRE_BROWSER": "0"}
    session.run("pytest", "-q", *STORE_TESTS, *session.posargs, env=env)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The full suite with every extra: the README's test command."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")  # pinned: newer releases format more (e.g. code in Markdown)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def types(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy", "agentsession")
    session.run("mypy", "--strict", "adapters")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The docs site, as CI builds it: the checks of tools/check_docs.py, then
    ``mkdocs build --strict`` (every page in the nav, every link and anchor resolves, the API
    reference builds from the docstrings)."""
    session.install("-e", ".[docs]", "nox")
    session.run("python", "tools/check_docs.py")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python=PYTHON)
def versions(session: nox.Session) -> None:
    """Rewrite docs/versions.md from the cells above."""
    (ROOT / "docs" / "versions.md").write_text(render_versions())


# the libraries the benchmarks compare against, measured in the same run (docs/benchmarks.md)
BENCH_PEERS = (
    "openai-agents",
    "langgraph",
    "langgraph-checkpoint-sqlite",
    "starsessions",
    "flask-session",
    "flask-sqlalchemy",
)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The benchmarks (quick mode unless given arguments), peers included."""
    session.install("-e", ".[test]", "psutil", *BENCH_PEERS)
    session.run("python", "-m", "bench", *(session.posargs or ["--quick"]))


def render_versions() -> str:
    lines = [
        "# Supported versions",
        "",
        "Generated from `noxfile.py` by `nox -s versions`; `tests/test_noxfile.py` fails if they differ.",
        'Each row is a nox cell that CI runs (`nox -s "autogen(<cell>)"`).',
        "",
        "## AutoGen",
        "",
        "| cell | family | installs | why it is in the matrix |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{c.id}` | {c.family} | `{' '.join(c.packages)}` | {c.note} |" for c in AUTOGEN_CELLS
    ]
    lines += ["", "## Web frameworks", "", "| cell | installs | why |", "|---|---|---|"]
    lines += [f"| `{c.id}` | `{' '.join(c.packages)}` | {c.note} |" for c in FRAMEWORK_CELLS]
    lines += ["", "## Store drivers", "", "| cell | installs | why |", "|---|---|---|"]
    lines += [f"| `{c.id}` | `{' '.join(c.packages)}` | {c.note} |" for c in STORE_CELLS]
    lines += [
        "",
        "Python 3.11 on CI. Legacy pyautogen 0.2.x needs Python < 3.13; ag2 0.x and `autogen` 0.14 run on newer Pythons.",
        "The `ag2` distribution is `import autogen` (legacy) below 1.0 and `import ag2` (the ag2 family) from 1.0.",
        "",
    ]
    return "\n".join(lines)
