"""The WSGI middleware and the Flask extension, in process (werkzeug's and Flask's test clients)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Blueprint, Flask, request
from support import SECRET, CountingStore
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from agentsession import SessionManager
from agentsession.adapters.flask import AgentSession, current_session
from agentsession.adapters.wsgi import ENVIRON_KEY, AgentSessionWSGIMiddleware
from agentsession.offline import offline_agent_factory, user_messages_seen


def wsgi_app(store: Any = "memory://", **options: Any) -> AgentSessionWSGIMiddleware:
    limits = {k: options.pop(k) for k in ("max_message_bytes",) if k in options}
    manager = SessionManager(offline_agent_factory(), store, **limits)

    @Request.application  # type: ignore[arg-type]
    def app(req: Request) -> Response:
        if req.path == "/plain":
            return Response("no session here")
        session = req.environ[ENVIRON_KEY]
        reply = session.send(req.get_data(as_text=True))
        return Response(
            json.dumps({"reply": reply, "id": session.session_id()}), mimetype="application/json"
        )

    return AgentSessionWSGIMiddleware(app, manager, secret_key=SECRET, **options)


def test_wsgi_keeps_one_conversation_per_client() -> None:
    app = wsgi_app()
    alice, bob = Client(app), Client(app)
    alice.post("/", data="alice's secret")
    reply = alice.post("/", data="what did I say earlier?").json["reply"]
    assert user_messages_seen(reply) == 2 and "secret" in reply
    assert user_messages_seen(bob.post("/", data="hi").json["reply"]) == 1


def test_wsgi_tampered_cookie_is_a_fresh_conversation() -> None:
    app = wsgi_app()
    victim = Client(app)
    victim.post("/", data="secret")
    token = victim.get_cookie("agentsession").value
    attacker = Client(app)
    attacker.set_cookie("agentsession", token[:-3] + "abc")
    response = attacker.post("/", data="what did I say earlier?")
    assert response.status_code == 200 and user_messages_seen(response.json["reply"]) == 1


def test_wsgi_ignored_session_costs_nothing_and_errors_map() -> None:
    store = CountingStore()
    app = wsgi_app(store, max_message_bytes=20)
    c = Client(app)
    c.post("/", data="hello")
    before = store.calls
    plain = c.get("/plain")
    assert plain.text == "no session here" and store.calls == before
    assert "Set-Cookie" not in plain.headers
    too_big = c.post("/", data="x" * 21)
    assert too_big.status_code == 413 and "too large" in too_big.json["error"]


def test_wsgi_store_down_is_503() -> None:
    response = Client(wsgi_app("sqlite:////nonexistent-dir/agentsession/down.db")).post(
        "/", data="hello"
    )
    assert response.status_code == 503


def flask_app(family: str | None = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.secret_key = SECRET
    app.config["AGENTSESSION_STORE"] = "memory://"
    app.config.update(config)
    bp = Blueprint("chat", __name__, url_prefix="/bp")

    @bp.post("/chat")
    def chat() -> dict[str, Any]:
        return {"reply": current_session.send(request.get_json()["text"])}

    @app.get("/plain")
    def plain() -> str:
        return "no session here"

    @app.post("/rotate")
    def rotate() -> dict[str, Any]:
        return {"id": current_session.rotate()}

    extension = AgentSession(factory=offline_agent_factory(family))
    extension.init_app(app)  # the app-factory shape
    app.register_blueprint(bp)
    return app


def test_flask_extension_with_blueprint(family: str) -> None:
    app = flask_app(family)
    assert "agentsession" in app.extensions
    c = app.test_client()
    first = c.post("/bp/chat", json={"text": "hello"})
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    reply = c.post("/bp/chat", json={"text": "what did I say earlier?"}).json["reply"]
    assert user_messages_seen(reply) == 2 and "'hello'" in reply
    other = app.test_client()
    assert user_messages_seen(other.post("/bp/chat", json={"text": "hi"}).json["reply"]) == 1


def test_flask_config_keys_reach_the_cookie_and_limits() -> None:
    app = flask_app(
        AGENTSESSION_COOKIE_NAME="chat_id",
        AGENTSESSION_COOKIE_SECURE=True,
        AGENTSESSION_MAX_MESSAGE_BYTES=8,
    )
    c = app.test_client()
    ok = c.post("/bp/chat", json={"text": "short"})
    assert ok.headers["Set-Cookie"].startswith("chat_id=") and "Secure" in ok.headers["Set-Cookie"]
    assert c.post("/bp/chat", json={"text": "far too long"}).status_code == 413


def test_flask_route_without_session_sets_no_cookie_and_rotate_works() -> None:
    app = flask_app()
    c = app.test_client()
    assert "Set-Cookie" not in c.get("/plain").headers
    c.post("/bp/chat", json={"text": "before login"})
    old = c.get_cookie("agentsession").value
    c.post("/rotate")
    assert c.get_cookie("agentsession").value != old
    reply = c.post("/bp/chat", json={"text": "after login"}).json["reply"]
    assert user_messages_seen(reply) == 2


def test_flask_needs_a_secret() -> None:
    app = Flask(__name__)
    with pytest.raises(ValueError, match="secret_key"):
        AgentSession(app, factory=offline_agent_factory())
