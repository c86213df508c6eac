"""Flask extension: ``current_session`` is the request's persistent AutoGen conversation.

from agentsession.adapters.flask import AgentSession, current_session

agent_session = AgentSession(factory=build_agent)     # or AgentSession(app, factory=...)

def create_app():
    app = Flask(__name__)
    app.config["AGENTSESSION_STORE"] = "sqlite:///agentsession.db"
    agent_session.init_app(app)
    app.register_blueprint(chat_blueprint)
    return app

@chat_blueprint.post("/chat")
def chat():
    return {"reply": current_session.send(request.json["message"])}

Every keyword argument but ``factory`` and ``owner`` is also a config key: ``store`` is
``AGENTSESSION_STORE``, ``cookie_secure`` is ``AGENTSESSION_COOKIE_SECURE``, and so on. A key
set in ``app.config`` wins over the argument; ``secret_key`` defaults to ``app.secret_key``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

from flask import Flask, Request, Response, current_app, request, stream_with_context
from werkzeug.local import LocalProxy

from agentsession.errors import InvalidSecretKey
from agentsession.manager import DEFAULT_STORE_URL, AgentFactory, SessionManager
from agentsession.stores import Store

from ._errors import MAPPED_ERRORS, check_busy_status, error_answer
from ._session import RequestSession
from ._sse import HEADERS, last_event, open_stream
from ._tokens import (
    COOKIE_NAME,
    HEADER_NAME,
    MAKE_A_SECRET,
    MAX_AGE,
    MIN_SECRET_BYTES,
    IdConfig,
    SecretKey,
    SessionIds,
)
from .wsgi import ENVIRON_KEY, is_https, request_session

EXTENSION = "agentsession"
_ENGINE_OPTIONS = (
    "lock_timeout",
    "lease_ttl",
    "max_message_bytes",
    "max_messages",
    "cache_size",
    "history_cache",
)

__all__ = ["AgentSession", "current_session", "event_stream"]


def config_key(option: str) -> str:
    return "AGENTSESSION_" + option.upper()


class _AppState:
    """What ``init_app`` set up for one app, in ``app.extensions["agentsession"]``."""

    def __init__(
        self,
        manager: SessionManager,
        ids: SessionIds,
        owner: Callable[[Request], str | None] | None,
        busy_status: int,
    ) -> None:
        self.manager = manager
        self.ids = ids
        self.owner = owner
        self.busy_status = busy_status


class AgentSession:
    def __init__(
        self,
        app: Flask | None = None,
        *,
        factory: AgentFactory | None = None,
        owner: Callable[[Request], str | None] | None = None,
        store: Store | str = DEFAULT_STORE_URL,
        secret_key: SecretKey | None = None,
        cookie_name: str = COOKIE_NAME,
        header_name: str = HEADER_NAME,
        max_age: int | None = MAX_AGE,
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        cookie_secure: bool | None = None,
        cookie_samesite: str = "lax",
        busy_status: int = 409,
        lock_timeout: float | None = None,
        lease_ttl: float | None = None,
        max_message_bytes: int | None = None,
        max_messages: int | None = None,
        cache_size: int | None = None,
        history_cache: int | None = None,
    ) -> None:
        self.factory = factory
        self.owner = owner
        # None for an engine option means the engine's own default
        self.defaults: dict[str, Any] = {
            "store": store,
            "secret_key": secret_key,
            "cookie_name": cookie_name,
            "header_name": header_name,
            "max_age": max_age,
            "cookie_path": cookie_path,
            "cookie_domain": cookie_domain,
            "cookie_secure": cookie_secure,
            "cookie_samesite": cookie_samesite,
            "busy_status": busy_status,
            "lock_timeout": lock_timeout,
            "lease_ttl": lease_ttl,
            "max_message_bytes": max_message_bytes,
            "max_messages": max_messages,
            "cache_size": cache_size,
            "history_cache": history_cache,
        }
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if self.factory is None:
            raise ValueError("AgentSession needs factory=… (a function that builds the agent)")
        if EXTENSION in app.extensions:
            raise RuntimeError("AgentSession.init_app was already called for this app")
        for name, value in self.defaults.items():
            app.config.setdefault(config_key(name), value)
        option = {name: app.config[config_key(name)] for name in self.defaults}
        secret = option["secret_key"] or app.secret_key
        if not secret:
            raise InvalidSecretKey(
                "set app.secret_key or AGENTSESSION_SECRET_KEY to sign session ids (a secret_key "
                f"of at least {MIN_SECRET_BYTES} bytes). Make one with: {MAKE_A_SECRET}"
            )
        engine_options = {k: option[k] for k in _ENGINE_OPTIONS if option[k] is not None}
        config = IdConfig(**{f.name: option[f.name] for f in dataclasses.fields(IdConfig)})
        app.extensions[EXTENSION] = _AppState(
            SessionManager(self.factory, option["store"], **engine_options),
            SessionIds(secret, config),
            self.owner,
            check_busy_status(option["busy_status"]),
        )
        app.after_request(_hand_back_id)
        own_handlers = app.error_handler_spec.get(None, {}).get(None, {})
        for error in MAPPED_ERRORS:
            if error not in own_handlers:  # the app's own handlers win
                app.register_error_handler(error, _answer_error)

    @property
    def manager(self) -> SessionManager:
        """The current app's ``SessionManager`` (needs an app context), for admin work."""
        return _state().manager


def _state() -> _AppState:
    try:
        return cast(_AppState, current_app.extensions[EXTENSION])
    except KeyError:
        raise RuntimeError("AgentSession.init_app(app) was not called for this app") from None


def _get_session() -> RequestSession:
    # kept in the WSGI environ, which lives exactly as long as the request (``g`` can outlive it)
    session = request.environ.get(ENVIRON_KEY)
    if session is None:
        state = _state()
        owner = state.owner
        current = cast(Request, request._get_current_object())  # type: ignore[attr-defined]
        session = request_session(
            state.manager,
            state.ids,
            request.environ,
            (lambda: owner(current)) if owner is not None else None,
        )
        request.environ[ENVIRON_KEY] = session
    return cast(RequestSession, session)


current_session = cast(RequestSession, LocalProxy(_get_session))
"""The conversation of the current request (created lazily; no store I/O until used)."""


def _hand_back_id(response: Response) -> Response:
    session = request.environ.get(ENVIRON_KEY)
    if isinstance(session, RequestSession):
        https = is_https(request.environ)
        for name, value in _state().ids.response_headers(session.async_session, https):
            response.headers.add(name, value)
    return response


def _answer_error(exc: Exception) -> Response:
    answer = error_answer(exc, _state().busy_status)
    if answer is None:  # only MAPPED_ERRORS are registered
        raise exc
    return Response(answer.body, status=answer.status, headers=answer.all_headers)


def event_stream(text: str | None = None, **options: Any) -> Response:
    """The current request's streamed turn as Server-Sent Events; ``text=None`` resumes the
    conversation's stream after the request's ``Last-Event-ID`` (or ``?after=N``)::

        @app.post("/chat/stream")
        def chat():
            return event_stream(request.get_json()["message"])

        @app.get("/chat/stream")
        def resume():  # EventSource reconnecting
            return event_stream()

    The turn starts in the view, so an error before its first event is the usual JSON answer;
    the cookie goes out with the stream's headers.
    """
    session = _get_session()
    if text is None:
        turn_id, after = last_event(request.headers.get("Last-Event-ID"), request.args.get("after"))
        options = {"after": after, "turn_id": turn_id, **options}
    options.setdefault("busy_status", _state().busy_status)
    chunks = open_stream(session, text, **options)
    response = Response(stream_with_context(chunks), headers=dict(HEADERS))
    return response
