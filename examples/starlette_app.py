"""Starlette + agentsession: ``uvicorn examples.starlette_app:app``."""

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentsession import AsyncSessionManager
from agentsession.adapters.asgi import AgentSessionMiddleware
from agentsession.offline import offline_agent_factory

manager = AsyncSessionManager(
    offline_agent_factory(os.environ.get("AGENTSESSION_FAMILY")),  # the offline model of any family
    os.environ.get("AGENTSESSION_STORE", "sqlite:///agents.db"),
)


async def chat(request: Request) -> JSONResponse:
    session = request.state.agent_session
    reply = await session.send((await request.json())["message"])
    return JSONResponse({"reply": reply, "pid": os.getpid()})


app = Starlette(
    routes=[Route("/chat", chat, methods=["POST"])],
    middleware=[
        Middleware(
            AgentSessionMiddleware,
            manager=manager,
            secret_key=os.environ.get("SECRET_KEY", "change me"),
        )
    ],
)
