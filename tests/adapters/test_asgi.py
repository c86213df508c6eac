"""The ASGI middleware with Starlette and FastAPI, in process (httpx's ASGI transport)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket
from support import SECRET, CountingStore, set_cookie_headers

from agentsession import AsyncSessionManager, new_session_id
from agentsession.adapters.asgi import AgentSessionMiddleware, get_session
from agentsession.offline import offline_agent_factory, user_messages_seen


def build_app(
    store: Any = "memory://", family: str | None = None, **options: Any
) -> tuple[AgentSessionMiddleware, AsyncSessionManager]:
    limits = {k: options.pop(k) for k in ("lock_timeout", "max_message_bytes") if k in options}
    manager = AsyncSessionManager(offline_agent_factory(family), store, **limits)

    async def chat(request: Request) -> Response:
        session = request.state.agent_session
        reply = await session.send((await request.json())["text"])
        return JSONResponse({"reply": reply, "id": await session.session_id()})

    async def history(request: Request) -> Response:
        messages = await get_session(request.scope).history()
        return JSONResponse([m.content for m in messages])

    async def rotate(request: Request) -> Response:
        return JSONResponse({"id": await get_session(request.scope).rotate()})

    async def plain(request: Request) -> Response:
        return PlainTextResponse("no session here")

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(await get_session(websocket.scope).send(text))
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/chat", chat, methods=["POST"]),
            Route("/history", history),
            Route("/rotate", rotate, methods=["POST"]),
            Route("/plain", plain),
            WebSocketRoute("/ws", ws),
        ]
    )
    return AgentSessionMiddleware(app, manager, secret_key=SECRET, **options), manager


def client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", **kwargs
    )


async def say(c: httpx.AsyncClient, text: str) -> httpx.Response:
    return await c.post("/chat", json={"text": text})


def test_one_client_keeps_one_conversation(family: str) -> None:
    app, _ = build_app(family=family)

    async def run() -> None:
        async with client(app) as c:
            first = await say(c, "hello")
            second = await say(c, "what did I say earlier?")
        assert first.status_code == second.status_code == 200
        assert first.json()["id"] == second.json()["id"]
        assert user_messages_seen(second.json()["reply"]) == 2
        assert "'hello'" in second.json()["reply"]
        cookie = set_cookie_headers(first.headers)[0]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie

    asyncio.run(run())


def test_two_clients_never_meet() -> None:
    app, _ = build_app()

    async def run() -> None:
        async with client(app) as alice, client(app) as bob:
            await say(alice, "alice's secret is 1")
            reply = (await say(bob, "what did I say earlier?")).json()["reply"]
            assert user_messages_seen(reply) == 1 and "secret" not in reply
            assert (await bob.get("/history")).json() == ["what did I say earlier?", reply]

    asyncio.run(run())


def forged_tokens(real_id: str) -> dict[str, str]:
    expired = URLSafeTimedSerializer(SECRET, salt="agentsession.session-id")
    return {
        "garbage": "%%%not-a-token%%%",
        "unsigned id": real_id,
        "tampered": URLSafeTimedSerializer(SECRET, salt="agentsession.session-id").dumps(real_id)[
            :-2
        ]
        + "xx",
        "wrong key": URLSafeTimedSerializer("another-key", salt="agentsession.session-id").dumps(
            real_id
        ),
        "expired": expired.dumps(real_id),  # checked with max_age below
        "signed but unknown": URLSafeTimedSerializer(SECRET, salt="agentsession.session-id").dumps(
            new_session_id()
        ),
    }


@pytest.mark.parametrize(
    "kind", ["garbage", "unsigned id", "tampered", "wrong key", "expired", "signed but unknown"]
)
def test_bad_tokens_start_a_fresh_conversation(kind: str) -> None:
    from agentsession.adapters._binding import CookieSettings

    max_age = 1 if kind == "expired" else 3600
    app, _ = build_app(cookie=CookieSettings(max_age=max_age))

    async def run() -> None:
        async with client(app) as victim:
            victim_id = (await say(victim, "victim's secret")).json()["id"]
        token = forged_tokens(victim_id)[kind]
        if kind == "expired":
            await asyncio.sleep(2.1)
        for carrier in ("cookie", "header"):
            extra = (
                {"cookies": {"agentsession": token}}
                if carrier == "cookie"
                else {"headers": {"X-Agent-Session": token}}
            )
            async with client(app, **extra) as attacker:
                response = await say(attacker, "what did I say earlier?")
            assert response.status_code == 200
            assert response.json()["id"] != victim_id
            assert user_messages_seen(response.json()["reply"]) == 1
            assert "secret" not in response.json()["reply"]

    asyncio.run(run())


def test_api_clients_use_the_header() -> None:
    app, _ = build_app()

    async def run() -> None:
        async with client(app) as c:
            first = await say(c, "one")
            token = first.headers["x-agent-session"]
        async with client(app, headers={"X-Agent-Session": token}) as api:  # no cookie jar shared
            reply = (await say(api, "two")).json()["reply"]
        assert user_messages_seen(reply) == 2

    asyncio.run(run())


def test_a_route_that_ignores_the_session_costs_nothing() -> None:
    store = CountingStore()
    app, _ = build_app(store)

    async def run() -> None:
        async with client(app) as c:
            await say(c, "hello")  # a real session cookie is sent along below
            before = store.calls
            response = await c.get("/plain")
        assert response.text == "no session here"
        assert store.calls == before
        assert set_cookie_headers(response.headers) == []
        assert "x-agent-session" not in response.headers

    asyncio.run(run())


def test_rotate_keeps_the_conversation_under_a_new_id() -> None:
    app, _ = build_app()

    async def run() -> None:
        async with client(app) as c:
            old = (await say(c, "before login")).json()["id"]
            old_token = c.cookies["agentsession"]
            new = (await c.post("/rotate")).json()["id"]
            assert new != old
            reply = (await say(c, "after login")).json()["reply"]
            assert user_messages_seen(reply) == 2
        async with client(app, cookies={"agentsession": old_token}) as stale:
            assert user_messages_seen((await say(stale, "old id?")).json()["reply"]) == 1

    asyncio.run(run())


def test_owner_binding_refuses_another_user() -> None:
    def owner(scope: Any) -> str | None:
        return dict(scope["headers"]).get(b"x-user", b"").decode() or None

    app, _ = build_app(owner=owner)

    async def run() -> None:
        async with client(app, headers={"X-User": "alice"}) as alice:
            await say(alice, "alice's secret")
            token = alice.cookies["agentsession"]
        async with client(app, headers={"X-User": "bob"}, cookies={"agentsession": token}) as bob:
            reply = (await say(bob, "what did I say earlier?")).json()["reply"]
        assert user_messages_seen(reply) == 1 and "secret" not in reply
        async with client(
            app, headers={"X-User": "alice"}, cookies={"agentsession": token}
        ) as again:
            assert user_messages_seen((await say(again, "me again")).json()["reply"]) == 2

    asyncio.run(run())


def test_errors_map_to_statuses_never_500() -> None:
    down, _ = build_app("sqlite:////nonexistent-dir/agentsession/down.db")
    small, _ = build_app(max_message_bytes=10)
    busy, manager = build_app(lock_timeout=0.2)

    async def run() -> None:
        async with client(down) as c:
            response = await say(c, "hello")
            assert response.status_code == 503 and "unavailable" in response.json()["error"]
            assert response.headers["retry-after"] == "5"
        async with client(small) as c:
            assert (await say(c, "x" * 11)).status_code == 413
        async with client(busy) as c:
            session_id = (await say(busy_client := c, "one")).json()["id"]
            token = await manager.store.acquire(session_id, 30)  # another worker's turn
            response = await say(busy_client, "two")
            assert response.status_code == 409 and "busy" in response.json()["error"]
            assert token is not None
            await manager.store.release(session_id, token)
            assert (await say(busy_client, "three")).status_code == 200

    asyncio.run(run())


def test_lifespan_passes_through_untouched() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        seen.append(scope["type"])
        assert "agent_session" not in scope

    app = AgentSessionMiddleware(
        inner, AsyncSessionManager(offline_agent_factory(), "memory://"), secret_key=SECRET
    )

    async def noop() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        return None

    asyncio.run(app({"type": "lifespan"}, noop, ignore))
    assert seen == ["lifespan"]


def test_websocket_gets_the_session_of_its_handshake_cookie() -> None:
    app, _ = build_app()
    with TestClient(app) as c:
        first = c.post("/chat", json={"text": "over http"})
        assert first.status_code == 200
        with c.websocket_connect("/ws") as ws:
            ws.send_text("over the websocket")
            reply = ws.receive_text()
    assert user_messages_seen(reply) == 2


def test_fastapi_dependency() -> None:
    pytest.importorskip("fastapi")
    from fastapi_app import build_fastapi

    api = build_fastapi()

    app = AgentSessionMiddleware(
        api, AsyncSessionManager(offline_agent_factory(), "memory://"), secret_key=SECRET
    )

    async def run() -> None:
        async with client(app) as c:
            await say(c, "one")
            assert user_messages_seen((await say(c, "two")).json()["reply"]) == 2

    asyncio.run(run())


def test_tokens_are_checked_without_touching_the_store_first() -> None:
    # a flood of forged cookies on a route that ignores the session costs no store I/O
    store = CountingStore()
    app, _ = build_app(store)

    async def run() -> None:
        for i in range(50):
            async with client(app, cookies={"agentsession": f"forged{i}"}) as c:
                assert (await c.get("/plain")).status_code == 200
        assert store.calls == 0

    asyncio.run(run())
