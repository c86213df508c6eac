"""Pure ASGI middleware: each request's persistent AutoGen conversation (Starlette, FastAPI, …).

from agentsession import AsyncSessionManager
from agentsession.adapters.asgi import AgentSessionMiddleware, get_session

manager = AsyncSessionManager(build_agent, "sqlite:///agentsession.db")
middleware = [Middleware(AgentSessionMiddleware, manager=manager, secret_key=SECRET)]
app = Starlette(routes=routes, middleware=middleware)
# or, around any ASGI app: app = AgentSessionMiddleware(app, manager, secret_key=SECRET)

async def chat(request):
    session = request.state.agent_session  # or get_session(request)
    return JSONResponse({"reply": await session.send(text)})
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from functools import partial
from typing import Any

from agentsession.manager import AsyncSessionManager

from ._errors import MAPPED_ERRORS, ErrorAnswer, error_answer
from ._middleware import Middleware
from ._session import AsyncRequestSession
from ._tokens import Claim

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "agentsession.session"
STATE_KEY = "agent_session"

__all__ = ["SCOPE_KEY", "STATE_KEY", "AgentSessionMiddleware", "AsyncRequestSession", "get_session"]


def get_session(connection: Mapping[str, Any]) -> AsyncRequestSession:
    """The conversation of this request or websocket: pass its scope or a Starlette request."""
    try:
        session: AsyncRequestSession = connection[SCOPE_KEY]  # a Starlette Request is a Mapping
    except KeyError:
        raise RuntimeError("AgentSessionMiddleware is not installed around this app") from None
    return session


class AgentSessionMiddleware(Middleware[ASGIApp, AsyncSessionManager, Scope]):
    """``AgentSessionMiddleware(app, manager, *, secret_key, cookie_name=…, header_name=…,
    max_age=…, cookie_path=…, cookie_domain=…, cookie_secure=…, cookie_samesite=…, owner=…,
    busy_status=…)``; ``owner(scope)`` names the request's user."""

    def _installed(self) -> None:
        self._header = self.ids.config.header_name.lower().encode("latin-1")
        # Starlette and FastAPI turn any exception into a 500 before an outer middleware sees
        # it: wrapped around such an app, answer from inside it (keeping the app's own handlers)
        handlers = getattr(self.app, "exception_handlers", None)
        add_handler = getattr(self.app, "add_exception_handler", None)
        if isinstance(handlers, dict) and callable(add_handler):
            for error in MAPPED_ERRORS:
                if error not in handlers:
                    add_handler(error, self._exception_handler)

    async def _exception_handler(self, connection: Any, exc: Exception) -> ErrorAnswer | None:
        answer = error_answer(exc, self.busy_status)
        if answer is None:  # not one of MAPPED_ERRORS: cannot happen, but never swallow
            raise exc
        if connection.scope["type"] == "websocket":
            # Starlette before 0.38 ignores what a websocket handler returns: close it here
            await connection.close(code=answer.websocket_code)
            return None
        return answer

    def _claim(self, headers: Iterable[tuple[bytes, bytes]]) -> Claim:
        header_token: str | None = None
        idempotency_key: str | None = None
        cookies: list[str] = []
        for name, value in headers:
            if name == self._header:
                header_token = value.decode("latin-1")
            elif name == b"cookie":
                cookies.append(value.decode("latin-1"))  # HTTP/2 may split the Cookie header
            elif name == b"idempotency-key":
                idempotency_key = value.decode("latin-1").strip() or None
        return self.ids.claim(header_token, "; ".join(cookies) or None, idempotency_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        # what every request pays: one small object and a plain function around send; the
        # headers are read, and the id checked, only when the handler uses its session. Without
        # owner= nothing the session holds refers back to the scope (which holds the session),
        # so a request's objects are freed when it ends, not later by the cyclic collector.
        owner = self.owner
        session = AsyncRequestSession(
            self.manager,
            partial(self._claim, scope.get("headers", ())),
            partial(owner, scope) if owner is not None else None,
        )
        scope[SCOPE_KEY] = session
        if "state" in scope:
            scope["state"][STATE_KEY] = session
        else:
            scope["state"] = {STATE_KEY: session}
        answered = False  # an http response started, or the websocket was closed

        def send_with_id(message: Message) -> Awaitable[None]:
            # not a coroutine: the server's send is awaited directly, no extra frame
            nonlocal answered
            kind = message["type"]
            if kind == "http.response.start" or kind == "websocket.accept":
                if session.needs_headers:
                    https = scope.get("scheme") in ("https", "wss")
                    extra = self.ids.response_headers(session, https)
                    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra]
                    message = {**message, "headers": [*message.get("headers", ()), *encoded]}
                answered = kind == "http.response.start" or answered
            elif kind == "websocket.close" or kind == "websocket.http.response.start":
                answered = True
            return send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except MAPPED_ERRORS as exc:
            answer = error_answer(exc, self.busy_status)
            if answer is None or answered:
                raise
            await answer(scope, receive, send_with_id)
