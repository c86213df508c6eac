"""What only the Flask extension does: init_app, config keys, current_session, blueprints."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("flask")

from flask import Blueprint, Flask, g, request
from support import SECRET, factory

from agentsession.adapters.flask import AgentSession, current_session
from agentsession.errors import InvalidSecretKey
from agentsession.offline import user_messages_seen

chat = Blueprint("chat", __name__, url_prefix="/bp")


@chat.post("/chat")
def chat_view() -> dict[str, Any]:
    return {"reply": current_session.send(request.get_json()["text"])}


def create_app(extension: AgentSession, **config: Any) -> Flask:
    """The app-factory shape: one extension object, many apps."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, AGENTSESSION_STORE="memory://", **config)
    extension.init_app(app)
    app.register_blueprint(chat)
    return app


def say(client: Any, text: str) -> int | None:
    response = client.post("/bp/chat", json={"text": text})
    assert response.status_code == 200, response.text
    return user_messages_seen(response.json["reply"])


def token(client: Any) -> str:
    cookie = client.get_cookie("agentsession")
    assert cookie is not None
    return str(cookie.value)


def test_one_extension_many_apps() -> None:
    extension = AgentSession(factory=factory())
    first, second = create_app(extension), create_app(extension)
    assert first.extensions["agentsession"] is not second.extensions["agentsession"]
    client = first.test_client()
    assert say(client, "hello") == 1 and say(client, "again") == 2
    # same cookie, other app, other store: a fresh conversation
    other = second.test_client()
    other.set_cookie("agentsession", token(client))
    assert say(other, "hello?") == 1
    with first.app_context():
        assert extension.manager is first.extensions["agentsession"].manager


def test_config_keys_map_onto_the_keyword_arguments() -> None:
    extension = AgentSession(factory=factory(), cookie_name="from_kwarg", max_message_bytes=8)
    app = create_app(extension, AGENTSESSION_COOKIE_SECURE=True, AGENTSESSION_MAX_AGE=60)
    # the arguments became the app's defaults; keys set in app.config won
    assert app.config["AGENTSESSION_COOKIE_NAME"] == "from_kwarg"
    assert app.config["AGENTSESSION_HEADER_NAME"] == "X-Agent-Session"
    client = app.test_client()
    response = client.post("/bp/chat", json={"text": "short"})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("from_kwarg=") and "Secure" in cookie and "Max-Age=60" in cookie
    too_long = client.post("/bp/chat", json={"text": "far too long"})
    assert too_long.status_code == 413 and too_long.get_json()["code"] == "message_too_large"


def test_secret_key_and_factory_are_required() -> None:
    app = Flask(__name__)
    with pytest.raises(ValueError, match="secret_key"):
        AgentSession(app, factory=factory())
    with pytest.raises(ValueError, match="factory"):
        AgentSession(Flask(__name__))
    app = Flask(__name__)
    app.config["AGENTSESSION_SECRET_KEY"] = SECRET  # its own key; app.secret_key not needed
    extension = AgentSession(app, factory=factory(), store="memory://")
    with pytest.raises(RuntimeError, match="already"):
        extension.init_app(app)


def test_a_missing_or_short_secret_key_is_a_clear_error() -> None:
    unset = Flask(__name__)
    unset.config["AGENTSESSION_SECRET_KEY"] = None  # os.environ.get() of an unset variable
    with pytest.raises(InvalidSecretKey, match="AGENTSESSION_SECRET_KEY") as caught:
        AgentSession(unset, factory=factory(), store="memory://")
    assert "secrets.token_hex(32)" in str(caught.value)
    for short in ("dev", b"0123456789"):
        app = Flask(__name__)
        app.secret_key = short
        with pytest.raises(InvalidSecretKey, match="at least 32 bytes"):
            AgentSession(app, factory=factory(), store="memory://")
    app = Flask(__name__)
    app.config["AGENTSESSION_SECRET_KEY"] = "tiny"
    with pytest.raises(ValueError, match="at least 32 bytes"):  # InvalidSecretKey is a ValueError
        AgentSession(app, factory=factory(), store="memory://")


def test_current_session_needs_a_request() -> None:
    with pytest.raises(RuntimeError):
        current_session.history()


def test_one_session_per_request_even_inside_an_app_context() -> None:
    # `g` lives as long as the app context; a test (or a CLI task) may push one around many
    # requests. The session lives in the request's environ, so clients still never meet.
    app = create_app(AgentSession(factory=factory()))
    with app.app_context():
        alice, bob = app.test_client(), app.test_client()
        assert say(alice, "alice here") == 1
        assert say(bob, "bob here") == 1
        assert say(alice, "me again") == 2


def test_owner_gets_the_request_after_before_request_ran() -> None:
    # like Flask-Login: the user is known only once the app's own hooks have run
    extension = AgentSession(factory=factory(), owner=lambda req: g.get("user"))
    app = create_app(extension)

    @app.before_request
    def login() -> None:
        g.user = request.headers.get("X-User")

    alice = app.test_client()
    alice.post("/bp/chat", json={"text": "alice's secret"}, headers={"X-User": "alice"})
    mallory = app.test_client()
    mallory.set_cookie("agentsession", token(alice))
    response = mallory.post("/bp/chat", json={"text": "earlier?"}, headers={"X-User": "mallory"})
    assert user_messages_seen(response.get_json()["reply"]) == 1


def test_the_apps_own_error_handlers_win() -> None:
    from agentsession.errors import MessageTooLarge

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, AGENTSESSION_STORE="memory://")
    app.register_error_handler(MessageTooLarge, lambda exc: ({"mine": True}, 400))
    AgentSession(app, factory=factory(), max_message_bytes=4)
    app.register_blueprint(chat)
    response = app.test_client().post("/bp/chat", json={"text": "far too long"})
    assert response.status_code == 400 and response.json == {"mine": True}
