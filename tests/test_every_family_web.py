"""Every family behind every web adapter, the examples and the demo: the same two-turn
conversation through a real framework, the second turn seeing the first."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from agentsession.offline import user_messages_seen

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ASGI = ["starlette_app", "fastapi_app"]
WSGI = [("flask_app", "app")]  # Django configures its settings once per process: test_examples.py


def load(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, family: str) -> ModuleType:
    monkeypatch.setenv("AGENTSESSION_STORE", f"sqlite:///{tmp_path / 'example.db'}")
    monkeypatch.setenv("AGENTSESSION_FAMILY", family)
    monkeypatch.setenv("SECRET_KEY", "e" * 64)  # the examples refuse to start without one
    spec = importlib.util.spec_from_file_location(
        f"example_{name}_{family}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


async def asgi_turns(app: object, *bodies: dict[str, str]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        return [await client.post("/chat", json=body) for body in bodies]


@pytest.mark.parametrize("name", ASGI)
def test_asgi_examples(
    family: str, name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip(name.removesuffix("_app"))
    app = load(name, monkeypatch, tmp_path, family).app
    _, second = asyncio.run(
        asgi_turns(app, {"message": "hello"}, {"message": "what did I say earlier?"})
    )
    assert second.status_code == 200, second.text
    reply = second.json()["reply"]
    assert user_messages_seen(reply) == 2 and "'hello'" in reply


@pytest.mark.parametrize(("name", "attribute"), WSGI)
def test_wsgi_examples(
    family: str, name: str, attribute: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip(name.removesuffix("_app"))
    app = getattr(load(name, monkeypatch, tmp_path, family), attribute)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://example") as client:
        client.post("/chat", json={"message": "hello"})
        second = client.post("/chat", json={"message": "what did I say earlier?"})
    assert second.status_code == 200, second.text
    assert user_messages_seen(second.json()["reply"]) == 2


def test_the_demo(family: str, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from agentsession.adapters import demo

    app = demo.create_app(f"sqlite:///{tmp_path / 'demo.db'}", family)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            await client.post("/api/send", json={"text": "hello"})
            return await client.post("/api/send", json={"text": "what did I say earlier?"})

    second = asyncio.run(run())
    assert second.status_code == 200, second.text
    assert user_messages_seen(second.json()["reply"]) == 2
    assert f"{family} family" in asyncio.run(_page(app))


async def _page(app: object) -> str:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        return (await client.get("/")).text


@pytest.mark.parametrize(("name", "module"), [("maf_app", "agent_framework"), ("ag2_app", "ag2")])
def test_the_framework_integration_examples(
    name: str, module: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip(module)
    pytest.importorskip("fastapi" if name == "maf_app" else "starlette")
    app = load(name, monkeypatch, tmp_path, "").app
    (first,) = asyncio.run(asgi_turns(app, {"message": "hello"}))
    conversation = first.json()["conversation"]
    (second,) = asyncio.run(
        asgi_turns(app, {"message": "what did I say earlier?", "conversation": conversation})
    )
    assert second.status_code == 200, second.text
    assert user_messages_seen(second.json()["reply"]) == 2
    (other,) = asyncio.run(asgi_turns(app, {"message": "who am I?"}))  # a new conversation
    assert user_messages_seen(other.json()["reply"]) == 1
