"""What only the WSGI middleware does: a plain WSGI app, the environ key, replacing a response."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from support import SECRET, factory, set_cookies

from agentsession import SessionManager
from agentsession.adapters.wsgi import ENVIRON_KEY, AgentSessionWSGIMiddleware, environ_header
from agentsession.errors import StoreUnavailable
from agentsession.offline import user_messages_seen


def plain_wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """No framework at all."""
    if environ["PATH_INFO"] == "/started-then-failed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise StoreUnavailable("the store went away after start_response")
    if environ["PATH_INFO"] == "/bug":
        raise ValueError("a bug in the app")
    size = int(environ.get("CONTENT_LENGTH") or 0)
    text = json.loads(environ["wsgi.input"].read(size))["text"]
    reply = environ[ENVIRON_KEY].send(text)
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [reply.encode()]


@pytest.fixture
def manager() -> Any:
    manager = SessionManager(factory(), "memory://")
    yield manager
    manager.close()


def test_a_plain_wsgi_app(manager: SessionManager) -> None:
    app = AgentSessionWSGIMiddleware(plain_wsgi_app, manager, secret_key=SECRET)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        first = client.post("/", json={"text": "one"})
        assert user_messages_seen(first.text) == 1 and "HttpOnly" in set_cookies(first)[0]
        assert user_messages_seen(client.post("/", json={"text": "two"}).text) == 2


def test_an_error_after_start_response_replaces_the_response(manager: SessionManager) -> None:
    app = AgentSessionWSGIMiddleware(plain_wsgi_app, manager, secret_key=SECRET)
    calls: list[tuple[str, Any]] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        calls.append((status, exc_info))
        return lambda data: None

    environ = {
        "PATH_INFO": "/started-then-failed",
        "REQUEST_METHOD": "GET",
        "wsgi.url_scheme": "http",
    }
    body = b"".join(app(environ, start_response))
    assert [status for status, _ in calls] == ["200 OK", "503 Service Unavailable"]
    assert calls[1][1] is not None  # exc_info: PEP 3333's way to replace unsent headers
    assert json.loads(body)["code"] == "store_unavailable"


def test_other_errors_are_not_ours_to_answer(manager: SessionManager) -> None:
    app = AgentSessionWSGIMiddleware(plain_wsgi_app, manager, secret_key=SECRET)
    with pytest.raises(ValueError, match="a bug"):
        app({"PATH_INFO": "/bug", "REQUEST_METHOD": "GET"}, lambda *a: None)


def test_the_header_as_wsgi_sees_it() -> None:
    assert environ_header("X-Agent-Session") == "HTTP_X_AGENT_SESSION"
    assert environ_header("x-chat-id") == "HTTP_X_CHAT_ID"


def test_busy_status_is_409_or_429(manager: SessionManager) -> None:
    with pytest.raises(ValueError, match="409 or 429"):
        AgentSessionWSGIMiddleware(plain_wsgi_app, manager, secret_key=SECRET, busy_status=500)
