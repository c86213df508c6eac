"""A FastAPI dependency for the request's conversation (needs ``AgentSessionMiddleware``).

from fastapi import Depends
from agentsession.adapters.fastapi import AgentSessionDep

@app.post("/chat")
async def chat(body: Body, session: AgentSessionDep):
    return {"reply": await session.send(body.message)}
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .asgi import AsyncRequestSession, get_session


def agent_session(connection: HTTPConnection) -> AsyncRequestSession:
    """``Depends(agent_session)``: the conversation of this request or websocket."""
    return get_session(connection.scope)


AgentSessionDep = Annotated[AsyncRequestSession, Depends(agent_session)]
