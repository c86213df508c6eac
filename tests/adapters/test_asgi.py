"""What only the ASGI middleware does: scopes, lifespan, websockets, both ways of installing it."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from typing import Any

import httpx
import pytest
from support import SECRET, Harness, counted, factory, set_cookies

from agentsession import AsyncSessionManager, open_store
from agentsession.errors import MessageTooLarge
from agentsession.offline import user_messages_seen

pytest.importorskip("starlette")

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from agentsession.adapters.asgi import (
    SCOPE_KEY,
    AgentSessionMiddleware,
    get_session,
)

Scope = dict[str, Any]


def manager(**options: Any) -> AsyncSessionManager:
    return AsyncSessionManager(factory(), counted(open_store("memory://")), **options)


def test_request_state_and_the_accessor_are_the_same_session() -> None:
    async def both(request: Request) -> Response:
        same = request.state.agent_session is get_session(request) is request.scope[SCOPE_KEY]
        return JSONResponse({"same": same})

    app = Starlette(routes=[Route("/", both)])
    app.add_middleware(AgentSessionMiddleware, manager=manager(), secret_key=SECRET)
    with TestClient(app) as client:
        assert client.get("/").json() == {"same": True}
    with pytest.raises(RuntimeError, match="not installed"):
        get_session({"type": "http"})


def test_a_request_and_its_session_are_freed_when_it_ends() -> None:
    # no reference cycle between the scope and its session: freed by reference counting,
    # not left for the cyclic collector (which costs every request a little)
    sessions: list[weakref.ref[Any]] = []

    async def inner(scope: Scope, receive: Any, send: Any) -> None:
        sessions.append(weakref.ref(scope[SCOPE_KEY]))
        if scope["path"] == "/use":
            await get_session(scope).history()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = AgentSessionMiddleware(inner, manager(), secret_key=SECRET)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    async def requests() -> None:
        for path in ("/plain", "/use"):
            headers = [(b"cookie", b"agentsession=whatever")]
            await app({"type": "http", "path": path, "headers": headers}, receive, send)

    gc.disable()
    try:
        asyncio.run(requests())
        assert len(sessions) == 2 and [ref() for ref in sessions] == [None, None]
    finally:
        gc.enable()


def test_lifespan_passes_through_untouched() -> None:
    seen: list[tuple[Scope, Any, Any]] = []

    async def inner(scope: Scope, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        return None

    store = counted(open_store("memory://"))
    app = AgentSessionMiddleware(inner, AsyncSessionManager(factory(), store), secret_key=SECRET)
    asyncio.run(app({"type": "lifespan"}, receive, send))
    scope, got_receive, got_send = seen[0]
    assert scope == {"type": "lifespan"} and got_receive is receive and got_send is send
    assert sum(store.calls.values()) == 0  # type: ignore[attr-defined]


def raw_app() -> Any:
    """A plain ASGI app, no framework: the middleware alone must map errors and set cookies."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/late-error":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise MessageTooLarge("raised after the response started")
        reply = await get_session(scope).send(json.loads(body)["text"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": reply.encode()})

    return app


def test_a_plain_asgi_app() -> None:
    app = AgentSessionMiddleware(raw_app(), manager(max_message_bytes=10), secret_key=SECRET)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = await client.post("/", json={"text": "one"})
            assert set_cookies(first) and user_messages_seen(first.text) == 1
            assert user_messages_seen((await client.post("/", json={"text": "two"})).text) == 2
            too_big = await client.post("/", json={"text": "x" * 11})
            assert too_big.status_code == 413 and too_big.json()["code"] == "message_too_large"
            # once a response has started it cannot be replaced: the error goes to the server
            with pytest.raises(MessageTooLarge):
                await client.post("/late-error", json={"text": "x"})

    asyncio.run(run())


@pytest.mark.parametrize("style", ["wrap", "middleware"])
@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_both_ways_of_installing_map_errors(style: str, kind: str) -> None:
    # wrapped around the app, errors would otherwise become Starlette's 500 before we see them
    harness = Harness(kind, max_message_bytes=10, style=style)
    try:
        client = harness.client()
        assert client.say("x" * 11).status_code == 413
        first = client.say("hello")
        assert first.status_code == 200 and set_cookies(first)
    finally:
        harness.close()


def websocket_app(**options: Any) -> Any:
    async def chat(websocket: WebSocket) -> None:
        session = get_session(websocket)
        if websocket.query_params.get("start") and not await session.exists():
            # a conversation begun on a websocket must exist before accept() to get a cookie
            await session.set_metadata({})
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(await session.send(text))

    async def http_chat(request: Request) -> Response:
        return Response(await get_session(request).send((await request.json())["text"]))

    routes = [WebSocketRoute("/ws", chat), Route("/chat", http_chat, methods=["POST"])]
    return AgentSessionMiddleware(Starlette(routes=routes), manager(**options), secret_key=SECRET)


def test_a_websocket_gets_the_session_of_its_handshake() -> None:
    app = websocket_app()
    with TestClient(app) as client:
        assert user_messages_seen(client.post("/chat", json={"text": "over http"}).text) == 1
        token = client.cookies["agentsession"]
        with client.websocket_connect("/ws") as ws:  # the cookie
            ws.send_text("over the websocket")
            assert user_messages_seen(ws.receive_text()) == 2
    with (
        TestClient(app) as api,
        api.websocket_connect("/ws", headers={"X-Agent-Session": token}) as ws,
    ):  # the header
        ws.send_text("an API client")
        assert user_messages_seen(ws.receive_text()) == 3


def test_a_conversation_begun_on_a_websocket_gets_its_cookie_on_accept() -> None:
    app = websocket_app()
    with TestClient(app) as client:
        with client.websocket_connect("/ws?start=1") as ws:
            handshake = dict(ws.extra_headers or [])
            ws.send_text("hello")
            assert user_messages_seen(ws.receive_text()) == 1
        cookie = handshake[b"set-cookie"].decode()
        assert "HttpOnly" in cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        with client.websocket_connect("/ws", cookies={"agentsession": token}) as ws:
            ws.send_text("hello again")
            assert user_messages_seen(ws.receive_text()) == 2


def test_a_websocket_error_closes_with_a_code_not_a_traceback() -> None:
    app = websocket_app(max_message_bytes=10)
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("x" * 11)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1009


def test_fastapi_dependency_on_a_websocket() -> None:
    pytest.importorskip("fastapi")
    from fastapi_app import build_fastapi

    api = build_fastapi()
    api.add_middleware(AgentSessionMiddleware, manager=manager(), secret_key=SECRET)
    with TestClient(api) as client:
        client.post("/chat", json={"text": "over http"})
        with client.websocket_connect("/ws") as ws:
            ws.send_text("over the websocket")
            assert user_messages_seen(ws.receive_text()) == 2


@pytest.mark.parametrize("style", ["wrap", "middleware"])
def test_the_apps_own_error_handlers_win(style: str) -> None:
    async def down(request: Request) -> Response:
        raise MessageTooLarge("too big")

    async def mine(request: Request, exc: Exception) -> Response:
        return JSONResponse({"mine": True}, status_code=400)

    app = Starlette(routes=[Route("/", down)], exception_handlers={MessageTooLarge: mine})
    if style == "wrap":
        wrapped: Any = AgentSessionMiddleware(app, manager(), secret_key=SECRET)
    else:
        app.add_middleware(AgentSessionMiddleware, manager=manager(), secret_key=SECRET)
        wrapped = app
    with TestClient(wrapped) as client:
        response = client.get("/")
    assert response.status_code == 400 and response.json() == {"mine": True}
