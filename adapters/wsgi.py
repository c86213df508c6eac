"""WSGI middleware: a persistent AutoGen conversation on every request (Django, Falcon, Bottle, …).

from agentsession import SessionManager
from agentsession.adapters.wsgi import AgentSessionWSGIMiddleware

manager = SessionManager(build_agent, "sqlite:///agents.db")
application = AgentSessionWSGIMiddleware(application, manager, secret_key="change me")

def chat(environ, start_response):
    session = environ["agentsession.session"]
    reply = session.send(text)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from agentsession import _loop
from agentsession.errors import AgentSessionError
from agentsession.manager import SessionManager
from agentsession.messages import Message

from ._binding import CookieSettings, SessionBinding, TokenSigner, error_response

T = TypeVar("T")
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

ENVIRON_KEY = "agentsession.session"


class RequestSession:
    """The request's conversation (sync): the ``Session`` methods, resolved lazily."""

    def __init__(self, binding: SessionBinding) -> None:
        self._binding = binding

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return _loop.run(coro)

    def session_id(self) -> str:
        return self._run(self._binding.resolve())

    def send(self, text: str) -> str:
        return self._run(self._binding.send(text))

    def history(self) -> list[Message]:
        return self._run(self._binding.history())

    def metadata(self) -> dict[str, Any]:
        return self._run(self._binding.metadata())

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._run(self._binding.set_metadata(metadata))

    def reset(self) -> None:
        self._run(self._binding.reset())

    def delete(self) -> bool:
        return self._run(self._binding.delete())

    def rotate(self) -> str:
        return self._run(self._binding.rotate())


class SyncAdapter:
    """Reads the signed id from a WSGI environ and writes it back; shared by WSGI and Flask."""

    def __init__(
        self,
        manager: SessionManager,
        secret_key: str | bytes,
        cookie: CookieSettings | None = None,
        busy_status: int = 409,
    ) -> None:
        self.manager = manager
        self.cookie = cookie or CookieSettings()
        self.signer = TokenSigner(secret_key, self.cookie.max_age)
        self.busy_status = busy_status
        self._environ_header = "HTTP_" + self.cookie.header.upper().replace("-", "_")

    def _token(self, environ: Mapping[str, Any]) -> str | None:
        return self.cookie.token_from(environ.get(self._environ_header), environ.get("HTTP_COOKIE"))

    def bind(
        self, environ: Mapping[str, Any], read_owner: Callable[[Any], str | None] | None = None
    ) -> SessionBinding:
        """A lazy binding: nothing is read until the handler uses its session."""
        return SessionBinding(self.manager.engine, self.signer, environ, self._token, read_owner)

    def response_headers(self, binding: SessionBinding) -> list[tuple[str, str]]:
        if not binding.needs_cookie or binding.id is None:
            return []
        token = self.signer.sign(binding.id)
        return [("Set-Cookie", self.cookie.set_cookie_header(token)), (self.cookie.header, token)]


class AgentSessionWSGIMiddleware:
    def __init__(
        self,
        app: WSGIApp,
        manager: SessionManager,
        *,
        secret_key: str | bytes,
        cookie: CookieSettings | None = None,
        owner: Callable[[Environ], str | None] | None = None,
        busy_status: int = 409,
    ) -> None:
        self.app = app
        self.adapter = SyncAdapter(manager, secret_key, cookie, busy_status)
        self.owner = owner

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        binding = self.adapter.bind(environ, self.owner)
        environ[ENVIRON_KEY] = RequestSession(binding)

        def start_with_cookie(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start_response(
                status, [*headers, *self.adapter.response_headers(binding)], exc_info
            )

        try:
            return self.app(environ, start_with_cookie)
        except AgentSessionError as exc:
            answer = error_response(exc, self.adapter.busy_status)
            if answer is None:
                raise
            from http import HTTPStatus

            start_response(
                f"{answer.status} {HTTPStatus(answer.status).phrase}", list(answer.headers)
            )
            return [answer.body]
