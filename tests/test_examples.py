"""Every example app answers two turns of one conversation (in process, through its framework).

The examples also run under real servers in ``tests/adapters/test_servers.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from servers import EXAMPLE_SECRET

from agentsession.offline import user_messages_seen

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = ["flask_app", "starlette_app", "fastapi_app", "django_app"]


def load(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str | None = EXAMPLE_SECRET
) -> ModuleType:
    monkeypatch.setenv("AGENTSESSION_STORE", f"sqlite:///{tmp_path / 'example.db'}")
    if name == "django_app":  # settings.configure() runs once per process: undo it afterwards
        from django.conf import settings
        from django.utils.functional import empty

        monkeypatch.setitem(settings.__dict__, "_wrapped", empty)
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


def two_turns(client: httpx.Client) -> str:
    assert client.post("/chat", json={"message": "hello"}).status_code == 200
    response = client.post("/chat", json={"message": "what did I say earlier?"})
    assert response.status_code == 200, response.text
    return str(response.json()["reply"])


@pytest.mark.parametrize("name", ["starlette_app", "fastapi_app"])
def test_asgi_examples(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip(name.removesuffix("_app"))
    app = load(name, monkeypatch, tmp_path).app

    async def run() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
            await client.post("/chat", json={"message": "hello"})
            response = await client.post("/chat", json={"message": "what did I say earlier?"})
            assert response.status_code == 200, response.text
            return str(response.json()["reply"])

    reply = asyncio.run(run())
    assert user_messages_seen(reply) == 2 and "'hello'" in reply


@pytest.mark.parametrize(
    ("name", "attribute"), [("flask_app", "app"), ("django_app", "application")]
)
def test_wsgi_examples(
    name: str, attribute: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip(name.removesuffix("_app"))
    app = getattr(load(name, monkeypatch, tmp_path), attribute)
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://example") as client:
        reply = two_turns(client)
        if name == "flask_app":
            assert client.get("/history").json()["messages"][0] == "hello"
    assert user_messages_seen(reply) == 2 and "'hello'" in reply


@pytest.mark.parametrize("name", NAMES)
def test_an_example_without_a_secret_key_refuses_to_start(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip(name.removesuffix("_app"))
    for missing in (None, ""):
        with pytest.raises(SystemExit, match="SECRET_KEY") as caught:
            load(name, monkeypatch, tmp_path, secret=missing)
        assert "secrets.token_hex(32)" in str(caught.value)


BAD_BODIES = [
    {"content": b"not json", "headers": {"Content-Type": "application/json"}},
    {"json": {}},
    {"json": {"text": "the wrong field"}},
    {"json": {"message": 42}},
    {"json": ["message"]},
    {"content": b""},
]


@pytest.mark.parametrize("name", NAMES)
def test_an_example_answers_a_bad_body_with_400(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip(name.removesuffix("_app"))
    module = load(name, monkeypatch, tmp_path)
    expected = 422 if name == "fastapi_app" else 400  # FastAPI's own status for a bad body

    async def statuses() -> list[int]:
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
            return [(await client.post("/chat", **body)).status_code for body in BAD_BODIES]

    if name in ("starlette_app", "fastapi_app"):
        got = asyncio.run(statuses())
    else:
        app = module.app if name == "flask_app" else module.application
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://example") as c:
            got = [c.post("/chat", **body).status_code for body in BAD_BODIES]
    assert got == [expected] * len(BAD_BODIES)
