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

import asyncio
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from functools import partial
from typing import Any, Literal
from urllib.parse import parse_qs

from agentsession.manager import AsyncSessionManager

from ._errors import MAPPED_ERRORS, ErrorAnswer, error_answer
from ._middleware import Middleware
from ._session import AsyncRequestSession
from ._sse import HEADERS, HEARTBEAT, frames, last_event
from ._tokens import Claim

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "agentsession.session"
STATE_KEY = "agent_session"

__all__ = [
    "SCOPE_KEY",
    "STATE_KEY",
    "AgentSessionMiddleware",
    "AsyncRequestSession",
    "EventStream",
    "get_session",
]


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


class EventStream:
    """A streamed turn as Server-Sent Events, an ASGI response: return it from a Starlette
    endpoint (FastAPI: ``agentsession.adapters.fastapi.EventStreamResponse``)::

        async def chat(request):
            text = (await request.json())["message"]
            return EventStream(get_session(request), text)

        async def resume(request):  # EventSource reconnects here with Last-Event-ID
            return EventStream.resume(get_session(request), request)

    Nothing is sent until the turn holds its conversation: an error before that (busy, store
    down, too large, bad input) is the same JSON answer as for any turn; an error after it is an
    ``error`` event. A client that disconnects leaves the turn to finish (``on_disconnect``).
    """

    def __init__(
        self,
        session: AsyncRequestSession,
        text: str | None = None,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        on_disconnect: Literal["finish", "cancel"] = "finish",
        after: int = -1,
        turn_id: str | None = None,
        heartbeat: float = HEARTBEAT,
        busy_status: int = 409,
    ) -> None:
        self.session = session
        self.text = text
        self.sender = sender
        self.idempotency_key = idempotency_key
        self.on_disconnect = on_disconnect
        self.after = after
        self.turn_id = turn_id
        self.heartbeat = heartbeat
        self.busy_status = busy_status

    @classmethod
    def resume(
        cls, session: AsyncRequestSession, connection: Mapping[str, Any], **options: Any
    ) -> EventStream:
        """The events a reconnecting client missed, then the rest: from its ``Last-Event-ID``
        header (what ``EventSource`` sends) or an ``?after=N`` query."""
        scope: Mapping[str, Any] = getattr(connection, "scope", connection)
        headers = dict(scope.get("headers", ()))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        turn_id, after = last_event(
            headers.get(b"last-event-id", b"").decode("latin-1") or None,
            (query.get("after") or [None])[-1],
        )
        return cls(session, None, after=after, turn_id=turn_id, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.text is not None:
            events = self.session.stream(
                self.text,
                sender=self.sender,
                idempotency_key=self.idempotency_key,
                on_disconnect=self.on_disconnect,
            )
        else:
            events = self.session.resume(self.after, turn_id=self.turn_id)
        try:
            first = await events.__anext__()
        except MAPPED_ERRORS as exc:
            answer = error_answer(exc, self.busy_status)
            if answer is None:
                raise
            await answer(scope, receive, send)
            return
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        chunks = frames(first, events, self.turn_id, self.heartbeat, self.busy_status)
        disconnected = asyncio.ensure_future(_disconnect(receive))
        try:
            while True:
                chunk = asyncio.ensure_future(_next_chunk(chunks))
                done, _ = await asyncio.wait({chunk, disconnected}, return_when=FIRST_COMPLETED)
                if chunk not in done:  # the client left: stop reading; the turn goes on
                    chunk.cancel()
                    await asyncio.wait([chunk])
                    return
                body = chunk.result()
                if body is None:
                    break
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            disconnected.cancel()
            await chunks.aclose()  # type: ignore[attr-defined]


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None
