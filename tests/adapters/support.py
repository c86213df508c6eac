"""The same small chat app behind each adapter, driven through one sync test client.

Every adapter test runs against ``Harness``: ASGI apps through httpx's ``ASGITransport`` on a
loop owned by the harness, WSGI and Flask apps through httpx's ``WSGITransport``. Each app has
the same routes and reads the user for owner binding from an ``X-User`` header.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from agentsession import AsyncSessionManager, SessionManager, Store, open_store
from agentsession import _loop as bridge
from agentsession.offline import installed_family, offline_agent_factory

T = TypeVar("T")

SECRET = "test-secret-key-of-at-least-32-bytes"
ADAPTERS = ["starlette", "fastapi", "wsgi", "flask"]
_NEEDS = {"starlette": "starlette", "fastapi": "fastapi", "wsgi": "werkzeug", "flask": "flask"}
ENGINE_OPTIONS = ("lock_timeout", "max_message_bytes", "max_messages")


@functools.cache
def family() -> str:
    """The installed AutoGen family, detected once (detection reads every installed package)."""
    return installed_family()


def factory() -> Callable[[], Any]:
    return offline_agent_factory(family())


def counted(store: Store) -> Store:
    """Instrument a real store: ``store.calls`` counts every call to its async methods."""
    calls: Counter[str] = Counter()
    for name, method in inspect.getmembers(store, inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue

        def wrap(method: Any = method, name: str = name) -> Any:
            @functools.wraps(method)
            async def call(*args: Any, **kwargs: Any) -> Any:
                calls[name] += 1
                return await method(*args, **kwargs)

            return call

        setattr(store, name, wrap())
    store.calls = calls  # type: ignore[attr-defined]
    return store


def store_calls(store: Store) -> int:
    return sum(store.calls.values())  # type: ignore[attr-defined]


def need_adapter(kind: str) -> None:
    if importlib.util.find_spec(_NEEDS[kind]) is None:
        pytest.skip(f"{_NEEDS[kind]} is not installed: the {kind} adapter cannot be tested")


class Client:
    """A sync face over an httpx client (async for ASGI apps), with its own cookie jar."""

    def __init__(self, harness: Harness, client: httpx.Client | httpx.AsyncClient) -> None:
        self.harness = harness
        self.http = client

    @property
    def cookies(self) -> httpx.Cookies:
        return self.http.cookies

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if isinstance(self.http, httpx.AsyncClient):
            return self.harness.run(self.http.request(method, path, **kwargs))
        return self.http.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def say(self, text: str, **kwargs: Any) -> httpx.Response:
        return self.post("/chat", json={"text": text}, **kwargs)


class Harness:
    """One adapter around one app and one store, and the clients that talk to it."""

    def __init__(self, kind: str, store: Store | str = "memory://", **options: Any) -> None:
        need_adapter(kind)
        self.kind = kind
        self.store = open_store(store) if isinstance(store, str) else store
        engine = {k: options.pop(k) for k in ENGINE_OPTIONS if k in options}
        build = options.pop("factory", None) or factory()
        self.asgi = kind in ("starlette", "fastapi")
        self._loop = asyncio.new_event_loop() if self.asgi else None
        if self.asgi:
            self.manager: Any = AsyncSessionManager(build, self.store, **engine)
            self.app = build_asgi(kind, self.manager, **options)
        elif kind == "wsgi":
            self.manager = SessionManager(build, self.store, **engine)
            self.app = build_wsgi(self.manager, **options)
        else:
            self.app = build_flask(self.store, engine, build, **options)
            with self.app.app_context():
                self.manager = self.app.extensions["agentsession"].manager
        self._clients: list[httpx.Client | httpx.AsyncClient] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop the app's engine lives on."""
        if self._loop is not None:
            return self._loop.run_until_complete(coro)
        return bridge.run(coro)

    def client(self, *, https: bool = False, headers: Any = None, cookies: Any = None) -> Client:
        base_url = f"{'https' if https else 'http'}://testserver"
        http: httpx.Client | httpx.AsyncClient
        if self.asgi:
            transport = httpx.ASGITransport(app=self.app)
            http = httpx.AsyncClient(
                transport=transport, base_url=base_url, headers=headers, cookies=cookies
            )
        else:
            http = httpx.Client(
                transport=httpx.WSGITransport(app=self.app),
                base_url=base_url,
                headers=headers,
                cookies=cookies,
            )
        self._clients.append(http)
        return Client(self, http)

    def calls(self) -> int:
        return store_calls(self.store)

    def close(self) -> None:
        for http in self._clients:
            if isinstance(http, httpx.AsyncClient):
                self.run(http.aclose())
            else:
                http.close()
        if self._loop is not None:
            self._loop.run_until_complete(self.manager.aclose())
            self._loop.close()
        else:
            self.manager.close()


# -- the app, once per adapter -----------------------------------------------------------


def build_asgi(kind: str, manager: AsyncSessionManager, **options: Any) -> Any:
    from agentsession.adapters.asgi import AgentSessionMiddleware

    style = options.pop("style", "middleware")
    options.setdefault("owner", asgi_owner)
    options.setdefault("secret_key", SECRET)
    if kind == "fastapi":
        from fastapi_app import build_fastapi

        app: Any = build_fastapi()
    else:
        app = build_starlette()
    if style == "wrap":  # AgentSessionMiddleware(app, ...) around the finished app
        return AgentSessionMiddleware(app, manager, **options)
    app.add_middleware(AgentSessionMiddleware, manager=manager, **options)
    return app


def asgi_owner(scope: Any) -> str | None:
    return dict(scope["headers"]).get(b"x-user", b"").decode() or None


def build_starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from agentsession.adapters.asgi import EventStream, get_session

    async def chat(request: Request) -> Response:
        session = request.state.agent_session
        reply = await session.send((await request.json())["text"])
        return JSONResponse({"reply": reply, "id": await session.session_id()})

    async def history(request: Request) -> Response:
        messages = await get_session(request).history()
        return JSONResponse({"messages": [m.content for m in messages]})

    async def rotate(request: Request) -> Response:
        return JSONResponse({"id": await get_session(request).rotate()})

    async def delete(request: Request) -> Response:
        return JSONResponse({"deleted": await get_session(request).delete()})

    async def plain(request: Request) -> Response:
        return PlainTextResponse("no session here")

    async def stream(request: Request) -> Any:
        if request.method == "GET":  # EventSource reconnecting
            return EventStream.resume(get_session(request), request)
        return EventStream(get_session(request), (await request.json())["text"])

    return Starlette(
        routes=[
            Route("/stream", stream, methods=["GET", "POST"]),
            Route("/chat", chat, methods=["POST"]),
            Route("/history", history),
            Route("/rotate", rotate, methods=["POST"]),
            Route("/delete", delete, methods=["POST"]),
            Route("/plain", plain),
        ]
    )


def build_wsgi(manager: SessionManager, **options: Any) -> Any:
    import json

    from werkzeug.wrappers import Request, Response

    from agentsession.adapters.wsgi import ENVIRON_KEY, AgentSessionWSGIMiddleware, event_stream

    def answer(data: object) -> Response:
        return Response(json.dumps(data), mimetype="application/json")

    @Request.application
    def chat_app(request: Request) -> Response:
        session = request.environ[ENVIRON_KEY]
        if request.path == "/chat":
            reply = session.send(request.get_json()["text"])
            return answer({"reply": reply, "id": session.session_id()})
        if request.path == "/history":
            return answer({"messages": [m.content for m in session.history()]})
        if request.path == "/rotate":
            return answer({"id": session.rotate()})
        if request.path == "/delete":
            return answer({"deleted": session.delete()})
        return Response("no session here")

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/stream":  # plain WSGI: the helper is the response
            if environ["REQUEST_METHOD"] == "GET":
                return event_stream(environ, start_response)
            body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            return event_stream(environ, start_response, body["text"])
        return chat_app(environ, start_response)

    options.setdefault("owner", lambda environ: environ.get("HTTP_X_USER"))
    options.setdefault("secret_key", SECRET)
    return AgentSessionWSGIMiddleware(app, manager, **options)


def build_flask(
    store: Store, engine: dict[str, Any], build: Callable[..., Any], **options: Any
) -> Any:
    from flask import Blueprint, Flask, request

    from agentsession.adapters.flask import AgentSession, current_session, event_stream

    app = Flask(__name__)
    app.secret_key = SECRET
    bp = Blueprint("chat", __name__)

    @bp.post("/chat")
    def chat() -> dict[str, Any]:
        reply = current_session.send(request.get_json()["text"])
        return {"reply": reply, "id": current_session.session_id()}

    @bp.get("/history")
    def history() -> dict[str, Any]:
        return {"messages": [m.content for m in current_session.history()]}

    @bp.post("/rotate")
    def rotate() -> dict[str, Any]:
        return {"id": current_session.rotate()}

    @bp.post("/delete")
    def delete() -> dict[str, Any]:
        return {"deleted": current_session.delete()}

    @app.get("/plain")
    def plain() -> str:
        return "no session here"

    @bp.route("/stream", methods=["GET", "POST"])
    def stream() -> Any:
        if request.method == "GET":
            return event_stream()
        return event_stream(request.get_json()["text"])

    options.setdefault("owner", lambda req: req.headers.get("X-User"))
    owner: Callable[..., Any] = options.pop("owner")
    extension = AgentSession(factory=build, owner=owner, store=store, **engine)
    for name, value in options.items():  # through app.config, as Flask users configure it
        app.config[f"AGENTSESSION_{name.upper()}"] = value
    extension.init_app(app)
    app.register_blueprint(bp)
    return app


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def cookie_token(response: httpx.Response, name: str = "agentsession") -> str | None:
    """The token a response's Set-Cookie hands out, if any."""
    for cookie in set_cookies(response):
        pair = cookie.split(";", 1)[0]
        if pair.startswith(f"{name}="):
            return pair.split("=", 1)[1]
    return None
