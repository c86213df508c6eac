"""Flask extension: ``current_session`` is the request's persistent AutoGen conversation.

    from agentsession.adapters.flask import AgentSession, current_session

    agent_session = AgentSession(factory=build_agent)    # or AgentSession(app, factory=...)

    def create_app():
        app = Flask(__name__)
        app.config["AGENTSESSION_STORE"] = "sqlite:///agents.db"
        agent_session.init_app(app)
        return app

    @bp.post("/chat")
    def chat():
        return {"reply": current_session.send(request.json["message"])}

Config keys (``app.config``), each the keyword argument of the same name:
``AGENTSESSION_STORE``, ``AGENTSESSION_SECRET_KEY`` (default: ``app.secret_key``),
``AGENTSESSION_COOKIE_NAME``, ``AGENTSESSION_HEADER``, ``AGENTSESSION_COOKIE_MAX_AGE``,
``AGENTSESSION_COOKIE_PATH``, ``AGENTSESSION_COOKIE_DOMAIN``, ``AGENTSESSION_COOKIE_SECURE``,
``AGENTSESSION_COOKIE_SAMESITE``, ``AGENTSESSION_LOCK_TIMEOUT``,
``AGENTSESSION_MAX_MESSAGE_BYTES``, ``AGENTSESSION_MAX_MESSAGES``,
``AGENTSESSION_CACHE_SIZE``, ``AGENTSESSION_BUSY_STATUS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from flask import Flask, Response, current_app, g, request
from werkzeug.local import LocalProxy

from agentsession.errors import AgentSessionError
from agentsession.manager import AgentFactory, SessionManager

from ._binding import CookieSettings, SessionBinding, error_response
from .wsgi import RequestSession, SyncAdapter

EXTENSION = "agentsession"
_DEFAULTS: dict[str, Any] = {
    "AGENTSESSION_STORE": "sqlite:///agentsession.db",
    "AGENTSESSION_SECRET_KEY": None,
    "AGENTSESSION_COOKIE_NAME": "agentsession",
    "AGENTSESSION_HEADER": "X-Agent-Session",
    "AGENTSESSION_COOKIE_MAX_AGE": 14 * 24 * 3600,
    "AGENTSESSION_COOKIE_PATH": "/",
    "AGENTSESSION_COOKIE_DOMAIN": None,
    "AGENTSESSION_COOKIE_SECURE": False,
    "AGENTSESSION_COOKIE_SAMESITE": "Lax",
    "AGENTSESSION_LOCK_TIMEOUT": 30.0,
    "AGENTSESSION_MAX_MESSAGE_BYTES": 64 * 1024,
    "AGENTSESSION_MAX_MESSAGES": None,
    "AGENTSESSION_CACHE_SIZE": 256,
    "AGENTSESSION_BUSY_STATUS": 409,
}


class AgentSession:
    def __init__(
        self,
        app: Flask | None = None,
        *,
        factory: AgentFactory | None = None,
        owner: Callable[[], str | None] | None = None,
    ) -> None:
        self.factory = factory
        self.owner = owner
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if self.factory is None:
            raise ValueError("AgentSession needs factory=… (a function that builds the agent)")
        for key, value in _DEFAULTS.items():
            app.config.setdefault(key, value)
        config = app.config
        secret = config["AGENTSESSION_SECRET_KEY"] or app.secret_key
        if not secret:
            raise ValueError("set app.secret_key or AGENTSESSION_SECRET_KEY to sign session ids")
        manager = SessionManager(
            self.factory,
            config["AGENTSESSION_STORE"],
            lock_timeout=config["AGENTSESSION_LOCK_TIMEOUT"],
            max_message_bytes=config["AGENTSESSION_MAX_MESSAGE_BYTES"],
            max_messages=config["AGENTSESSION_MAX_MESSAGES"],
            cache_size=config["AGENTSESSION_CACHE_SIZE"],
        )
        cookie = CookieSettings(
            name=config["AGENTSESSION_COOKIE_NAME"],
            header=config["AGENTSESSION_HEADER"],
            max_age=config["AGENTSESSION_COOKIE_MAX_AGE"],
            path=config["AGENTSESSION_COOKIE_PATH"],
            domain=config["AGENTSESSION_COOKIE_DOMAIN"],
            secure=config["AGENTSESSION_COOKIE_SECURE"],
            samesite=config["AGENTSESSION_COOKIE_SAMESITE"],
        )
        app.extensions[EXTENSION] = _AppState(
            SyncAdapter(manager, secret, cookie, config["AGENTSESSION_BUSY_STATUS"]), self.owner
        )
        app.after_request(_add_cookie)
        app.register_error_handler(AgentSessionError, _answer_error)


class _AppState:
    def __init__(self, adapter: SyncAdapter, owner: Callable[[], str | None] | None) -> None:
        self.adapter = adapter
        self.owner = owner

    @property
    def manager(self) -> SessionManager:
        return self.adapter.manager


def _state() -> _AppState:
    try:
        return cast(_AppState, current_app.extensions[EXTENSION])
    except KeyError:
        raise RuntimeError("AgentSession.init_app(app) was not called for this app") from None


def _binding() -> SessionBinding:
    if "agentsession_binding" not in g:
        state = _state()
        owner = state.owner
        g.agentsession_binding = state.adapter.bind(
            request.environ, (lambda environ: owner()) if owner is not None else None
        )
    return cast(SessionBinding, g.agentsession_binding)


def _current_session() -> RequestSession:
    return RequestSession(_binding())


current_session: RequestSession = cast(RequestSession, LocalProxy(_current_session))


def _add_cookie(response: Response) -> Response:
    binding = g.get("agentsession_binding")
    if binding is not None:
        for name, value in _state().adapter.response_headers(binding):
            response.headers.add(name, value)
    return response


def _answer_error(exc: AgentSessionError) -> Any:
    answer = error_response(exc, _state().adapter.busy_status)
    if answer is None:
        raise exc
    return Response(answer.body, status=answer.status, headers=list(answer.headers))
