"""WSGI middleware: each request's persistent AutoGen conversation (Django, Falcon, Bottle, …).

from agentsession import SessionManager
from agentsession.adapters.wsgi import AgentSessionWSGIMiddleware

manager = SessionManager(build_agent, "sqlite:///agentsession.db")
application = AgentSessionWSGIMiddleware(application, manager, secret_key=SECRET)

def chat(environ, start_response):                # Django: request.environ[...]
    session = environ["agentsession.session"]
    reply = session.send(text)

The id is written when the app calls ``start_response``, so use the session before that
(every framework that builds a response object does).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from agentsession.manager import SessionManager

from ._errors import MAPPED_ERRORS, error_answer
from ._middleware import Middleware
from ._session import AsyncRequestSession, RequestSession
from ._sse import HEADERS, last_event, open_stream
from ._tokens import Claim, SessionIds

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ENVIRON_KEY = "agentsession.session"

__all__ = [
    "ENVIRON_KEY",
    "AgentSessionWSGIMiddleware",
    "RequestSession",
    "environ_header",
    "event_stream",
]


def environ_header(header_name: str) -> str:
    """Where WSGI puts request header ``header_name`` (``X-Agent-Session`` → ``HTTP_X_AGENT_SESSION``)."""
    return "HTTP_" + header_name.upper().replace("-", "_")


def is_https(environ: Environ) -> bool:
    return environ.get("wsgi.url_scheme") == "https"


def request_session(
    manager: SessionManager,
    ids: SessionIds,
    environ: Environ,
    owner: Callable[[], str | None] | None,
) -> RequestSession:
    """The lazy session of one WSGI request (also used by the Flask extension)."""

    def claim() -> Claim:  # read on the session's first use
        header = environ.get(environ_header(ids.config.header_name))
        key = environ.get("HTTP_IDEMPOTENCY_KEY", "").strip() or None
        return ids.claim(header, environ.get("HTTP_COOKIE"), key)

    return RequestSession(AsyncRequestSession(manager.engine, claim, owner))


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class AgentSessionWSGIMiddleware(Middleware[WSGIApp, SessionManager, Environ]):
    """``AgentSessionWSGIMiddleware(app, manager, *, secret_key, …)``: the ASGI middleware's
    options; ``owner(environ)`` names the request's user."""

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        owner = self.owner
        session = request_session(
            self.manager,
            self.ids,
            environ,
            (lambda: owner(environ)) if owner is not None else None,
        )
        environ[ENVIRON_KEY] = session
        https = is_https(environ)
        started = False

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal started
            started = True
            extra = self.ids.response_headers(session.async_session, https)
            return start_response(status, [*headers, *extra], exc_info)

        try:
            return self.app(environ, start_with_id)
        except MAPPED_ERRORS as exc:
            answer = error_answer(exc, self.busy_status)
            if answer is None:
                raise
            # exc_info replaces a response the app had started but not sent (PEP 3333)
            exc_info = sys.exc_info() if started else None
            start_with_id(status_line(answer.status), answer.all_headers, exc_info)
            return [answer.body]


def event_stream(
    environ: Environ, start_response: StartResponse, text: str | None = None, **options: Any
) -> Iterable[bytes]:
    """A streamed turn as Server-Sent Events, as a WSGI response; ``text=None`` resumes the
    conversation's stream after the request's ``Last-Event-ID`` (or ``?after=N``)::

        def app(environ, start_response):
            if environ["REQUEST_METHOD"] == "GET":  # EventSource reconnecting
                return event_stream(environ, start_response)
            return event_stream(environ, start_response, read_message(environ))

    Needs a server that sends each chunk as it comes (gunicorn with threads or gevent, waitress,
    uWSGI; not ``wsgiref``'s buffering). An error before the first event raises like any turn
    (the middleware answers it); one after it is an ``error`` event.
    """
    session: RequestSession = environ[ENVIRON_KEY]
    if text is None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        turn_id, after = last_event(
            environ.get("HTTP_LAST_EVENT_ID"), (query.get("after") or [None])[-1]
        )
        options = {"after": after, "turn_id": turn_id, **options}
    chunks = open_stream(session, text, **options)
    start_response("200 OK", list(HEADERS))
    return chunks
