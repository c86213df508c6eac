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
from agentsession.adapters.asgi import AgentSessionMiddleware
from agentsession.offline import offline_agent_factory

SECRET_KEY = os.environ.get("SECRET_KEY")
if not SECRET_KEY:  # never a default: a known key lets anyone forge ids
    raise SystemExit(
        "set SECRET_KEY first: python -c 'import secrets; print(secrets.token_hex(32))'"
    )
manager = AsyncSessionManager(
    offline_agent_factory(os.environ.get("AGENTSESSION_FAMILY")),  # the offline model of any family
    os.environ.get("AGENTSESSION_STORE", "sqlite:///agents.db"),
)


async def chat(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return JSONResponse({"detail": 'send JSON: {"message": "..."}'}, status_code=400)
    reply = await request.state.agent_session.send(body["message"])
    return JSONResponse({"reply": reply, "pid": os.getpid()})


app = Starlette(
    routes=[Route("/chat", chat, methods=["POST"])],
    middleware=[
        Middleware(
            AgentSessionMiddleware,
            manager=manager,
            secret_key=SECRET_KEY,
        )
    ],
)
