"""Pure ASGI middleware: a persistent AutoGen conversation on every request (Starlette, FastAPI, …).

from agentsession import AsyncSessionManager
from agentsession.adapters.asgi import AgentSessionMiddleware

manager = AsyncSessionManager(build_agent, "sqlite:///agents.db")
app = AgentSessionMiddleware(app, manager, secret_key="change me")

async def chat(request):
    session = request.state.agent_session      # or get_session(request.scope)
    return JSONResponse({"reply": await session.send(text)})
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from agentsession.errors import AgentSessionError
from agentsession.manager import AsyncSessionManager

from ._binding import CookieSettings, SessionBinding, TokenSigner, error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "agent_session"


AsyncRequestSession = SessionBinding
"""The request's conversation: ``send``, ``history``, ``metadata``, ``set_metadata``, ``reset``,
``delete``, ``rotate`` and ``session_id``, all awaited, resolved on first use."""


def get_session(scope: Scope) -> AsyncRequestSession:
    """The conversation attached to this request or websocket by ``AgentSessionMiddleware``."""
    try:
        session: AsyncRequestSession = scope[SCOPE_KEY]
    except KeyError:
        raise RuntimeError("AgentSessionMiddleware is not installed on this app") from None
    return session


class AgentSessionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        manager: AsyncSessionManager,
        *,
        secret_key: str | bytes,
        cookie: CookieSettings | None = None,
        owner: Callable[[Scope], str | None] | None = None,
        busy_status: int = 409,
    ) -> None:
        self.app = app
        self.manager = manager
        self.cookie = cookie or CookieSettings()
        self.signer = TokenSigner(secret_key, self.cookie.max_age)
        self.owner = owner
        self.busy_status = busy_status
        self._header = self.cookie.header.lower().encode("latin-1")
        # Starlette and FastAPI answer any exception with a 500 before it reaches an outer
        # middleware, so errors are mapped by a handler on the app itself where possible
        add_handler = getattr(app, "add_exception_handler", None)
        if add_handler is not None:
            add_handler(AgentSessionError, self._starlette_handler)

    async def _starlette_handler(self, request: Any, exc: Exception) -> Any:
        from starlette.responses import Response

        answer = (
            error_response(exc, self.busy_status) if isinstance(exc, AgentSessionError) else None
        )
        if answer is None:
            raise exc
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

    def _token(self, scope: Scope) -> str | None:
        header_token, cookie_header = None, None
        for name, value in scope.get("headers", ()):
            if name == self._header:
                header_token = value.decode("latin-1")
            elif name == b"cookie":
                cookie_header = value.decode("latin-1")
        return self.cookie.token_from(header_token, cookie_header)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        binding = SessionBinding(self.manager, self.signer, scope, self._token, self.owner)
        scope[SCOPE_KEY] = binding
        if "state" in scope:
            scope["state"][SCOPE_KEY] = binding
        else:
            scope["state"] = {SCOPE_KEY: binding}
        started = False

        async def send_with_cookie(message: Message) -> None:
            nonlocal started
            if not started and message["type"] in ("http.response.start", "websocket.accept"):
                started = True
                if binding.needs_cookie and binding.id is not None:
                    token = self.signer.sign(binding.id)
                    headers = list(message.get("headers", ()))
                    headers.append(
                        (b"set-cookie", self.cookie.set_cookie_header(token).encode("latin-1"))
                    )
                    headers.append((self._header, token.encode("latin-1")))
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        except AgentSessionError as exc:
            answer = error_response(exc, self.busy_status)
            if answer is None or started or scope["type"] != "http":
                raise
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": [(k.encode(), v.encode()) for k, v in answer.headers],
                }
            )
            await send({"type": "http.response.body", "body": answer.body})
