"""Starlette + agentsession: ``uvicorn examples.starlette_app:app``.

Needs ``SECRET_KEY`` (32 bytes or more) in the environment; it refuses to start without one:
``export SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')"``.
"""

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentsession import AsyncSessionManager
from agentsession.adapters.asgi import AgentSessionMiddleware, EventStream, get_session
from agentsession.offline import offline_agent_factory

SECRET_KEY = os.environ.get("SECRET_KEY")
if not SECRET_KEY:  # never a default: a known key lets anyone forge ids
    raise SystemExit(
        "set SECRET_KEY first: python -c 'import secrets; print(secrets.token_hex(32))'"
    )
DELAY = os.environ.get("OFFLINE_CHUNK_DELAY")  # the offline model streams word by word
ON_DISCONNECT = "cancel" if os.environ.get("STREAM_ON_DISCONNECT") == "cancel" else "finish"
manager = AsyncSessionManager(
    # the offline model of any family; your factory builds your real agent
    offline_agent_factory(
        os.environ.get("AGENTSESSION_FAMILY"), chunk_delay=float(DELAY) if DELAY else None
    ),
    os.environ.get("AGENTSESSION_STORE", "sqlite:///agentsession.db"),
)


async def message_of(request: Request) -> str | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return (
        body.get("message")
        if isinstance(body, dict) and isinstance(body.get("message"), str)
        else None
    )


async def chat(request: Request) -> JSONResponse:
    message = await message_of(request)
    if message is None:
        return JSONResponse({"detail": 'send JSON: {"message": "..."}'}, status_code=400)
    reply = await request.state.agent_session.send(message)
    return JSONResponse({"reply": reply, "pid": os.getpid()})


async def stream(request: Request) -> EventStream | JSONResponse:
    """POST: the turn as Server-Sent Events. GET: a reconnecting EventSource (Last-Event-ID)."""
    if request.method == "GET":
        return EventStream.resume(get_session(request), request)
    message = await message_of(request)
    if message is None:
        return JSONResponse({"detail": 'send JSON: {"message": "..."}'}, status_code=400)
    # a client that disconnects leaves the turn to finish and be stored ("finish"), or cancels it
    return EventStream(get_session(request), message, on_disconnect=ON_DISCONNECT)


app = Starlette(
    routes=[
        Route("/chat", chat, methods=["POST"]),
        Route("/chat/stream", stream, methods=["GET", "POST"]),
    ],
    middleware=[
        Middleware(
            AgentSessionMiddleware,
            manager=manager,
            secret_key=SECRET_KEY,
        )
    ],
)
