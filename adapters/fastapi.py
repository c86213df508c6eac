"""A FastAPI dependency for the request's conversation (``AgentSessionMiddleware`` must be installed).

from agentsession.adapters.fastapi import AgentSessionDep

api.add_middleware(AgentSessionMiddleware, manager=manager, secret_key=SECRET)

@api.post("/chat")
async def chat(body: Chat, session: AgentSessionDep):
    return {"reply": await session.send(body.message)}
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .asgi import AsyncRequestSession, get_session

__all__ = ["AgentSessionDep", "agent_session"]


def agent_session(connection: HTTPConnection) -> AsyncRequestSession:
    """``Depends(agent_session)``: the conversation of this request or websocket."""
    return get_session(connection)


AgentSessionDep = Annotated[AsyncRequestSession, Depends(agent_session)]
