"""The team example apps and ``agentsession demo --team``, in process through their frameworks."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from conftest import family_installed

from agentsession.offline import replies_seen, user_messages_seen

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str | None
) -> ModuleType:
    monkeypatch.setenv("AGENTSESSION_STORE", f"sqlite:///{tmp_path / 'team.db'}")
    if secret is None:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("SECRET_KEY", secret)
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def check_turns(replies: list[dict[str, Any]]) -> None:
    first, second = replies
    assert [s["speaker"] for s in first["turn"]] == ["user", "writer", "critic"]
    assert second["speaker"] == "critic"
    assert user_messages_seen(second["reply"]) == 2
    assert replies_seen(second["reply"], "writer") == 2


def test_the_fastapi_team_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    if not family_installed("agentchat"):
        pytest.skip("the agentchat family is not installed")
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        load("team_fastapi_app", monkeypatch, tmp_path, None)
    app = load("team_fastapi_app", monkeypatch, tmp_path, "s" * 32).app

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
            bad = await client.post("/chat", content=b"not json")
            first = await client.post("/chat", json={"message": "hello"})
            second = await client.post("/chat", json={"message": "and now?"})
            return [bad, first, second]

    bad, first, second = asyncio.run(run())
    assert bad.status_code == 400
    check_turns([first.json(), second.json()])


def test_the_flask_group_chat_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("flask")
    if not family_installed("legacy"):
        pytest.skip("the legacy AutoGen family is not installed")
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        load("team_flask_app", monkeypatch, tmp_path, None)
    app = load("team_flask_app", monkeypatch, tmp_path, "s" * 32).app
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://example") as client:
        assert client.post("/chat", json={"message": 3}).status_code == 400
        replies = [client.post("/chat", json={"message": t}).json() for t in ("hello", "and now?")]
        history = client.get("/history").json()["messages"]
    check_turns(replies)
    assert [m["speaker"] for m in history] == ["user", "writer", "critic"] * 2


def test_the_demo_in_team_mode(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from agentsession.adapters import demo
    from agentsession.offline import installed_family

    app = demo.create_app(f"sqlite:///{tmp_path / 'demo.db'}", installed_family(), team=True)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            await client.post("/api/send", json={"text": "hello"})
            second = await client.post("/api/send", json={"text": "and now?"})
            page = await client.get("/")
            return [second, page]

    second, page = asyncio.run(run())
    history = second.json()["history"]
    assert [m["name"] for m in history] == ["user", "writer", "critic"] * 2
    assert replies_seen(second.json()["reply"], "writer") == 2
    assert "<b>critic</b>" in page.text and "offline team" in page.text


def test_demo_team_option_is_on_the_command_line() -> None:
    from agentsession.cli import build_parser

    args = build_parser().parse_args(["demo", "--team"])
    assert args.team is True
