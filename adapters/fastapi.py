"""A FastAPI dependency for the request's conversation (``AgentSessionMiddleware`` must be installed).

from agentsession.adapters.fastapi import AgentSessionDep

api.add_middleware(AgentSessionMiddleware, manager=manager, secret_key=SECRET)

@api.post("/chat")
async def chat(body: Chat, session: AgentSessionDep):
    return {"reply": await session.send(body.message)}
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .asgi import AsyncRequestSession, EventStream, get_session

__all__ = ["AgentSessionDep", "EventStreamResponse", "agent_session"]


def agent_session(connection: HTTPConnection) -> AsyncRequestSession:
    """``Depends(agent_session)``: the conversation of this request or websocket."""
    return get_session(connection)


AgentSessionDep = Annotated[AsyncRequestSession, Depends(agent_session)]


class EventStreamResponse(Response):
    """``EventStream`` as a response FastAPI returns as it is::

    @api.post("/chat/stream")
    async def chat(body: Chat, session: AgentSessionDep):
        return EventStreamResponse(session, body.message)

    @api.get("/chat/stream")
    async def resume(request: Request, session: AgentSessionDep):
        return EventStreamResponse.resume(session, request)
    """

    def __init__(
        self, session: AsyncRequestSession, text: str | None = None, **options: Any
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self.stream = EventStream(session, text, **options)

    @classmethod
    def resume(
        cls, session: AsyncRequestSession, request: Request, **options: Any
    ) -> EventStreamResponse:
        response = cls(session)
        response.stream = EventStream.resume(session, request, **options)
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream(scope, receive, send)
