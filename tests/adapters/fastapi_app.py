"""The adapter tests' chat app in FastAPI (a module of its own: FastAPI resolves annotations by name)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from agentsession.adapters.fastapi import AgentSessionDep, EventStreamResponse


class Body(BaseModel):
    text: str


def build_fastapi() -> FastAPI:
    api = FastAPI()

    @api.post("/chat")
    async def chat(body: Body, session: AgentSessionDep) -> dict[str, Any]:
        return {"reply": await session.send(body.text), "id": await session.session_id()}

    @api.get("/history")
    async def history(session: AgentSessionDep) -> dict[str, Any]:
        return {"messages": [m.content for m in await session.history()]}

    @api.post("/rotate")
    async def rotate(session: AgentSessionDep) -> dict[str, Any]:
        return {"id": await session.rotate()}

    @api.post("/delete")
    async def delete(session: AgentSessionDep) -> dict[str, Any]:
        return {"deleted": await session.delete()}

    @api.post("/stream")
    async def stream(body: Body, session: AgentSessionDep) -> EventStreamResponse:
        return EventStreamResponse(session, body.text)

    @api.get("/stream")
    async def resume(request: Request, session: AgentSessionDep) -> EventStreamResponse:
        return EventStreamResponse.resume(session, request)

    @api.get("/plain", response_class=PlainTextResponse)
    async def plain() -> str:
        return "no session here"

    @api.websocket("/ws")
    async def ws(websocket: WebSocket, session: AgentSessionDep) -> None:
        await websocket.accept()
        await websocket.send_text(await session.send(await websocket.receive_text()))

    return api
