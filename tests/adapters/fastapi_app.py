"""A FastAPI app for the ASGI tests (a module of its own: FastAPI resolves annotations by name)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from agentsession.adapters.fastapi import AgentSessionDep


class Body(BaseModel):
    text: str


def build_fastapi() -> FastAPI:
    api = FastAPI()

    @api.post("/chat")
    async def chat(body: Body, session: AgentSessionDep) -> dict[str, Any]:
        return {"reply": await session.send(body.text), "id": await session.session_id()}

    return api
