"""FastAPI + agentsession: ``uvicorn examples.fastapi_app:app``."""

import os

from fastapi import FastAPI
from pydantic import BaseModel

from agentsession import AsyncSessionManager
from agentsession.adapters.asgi import AgentSessionMiddleware
from agentsession.adapters.fastapi import AgentSessionDep
from agentsession.offline import offline_agent_factory

manager = AsyncSessionManager(
    offline_agent_factory(os.environ.get("AGENTSESSION_FAMILY")),  # the offline model of any family
    os.environ.get("AGENTSESSION_STORE", "sqlite:///agents.db"),
)
app = FastAPI()
app.add_middleware(
    AgentSessionMiddleware, manager=manager, secret_key=os.environ.get("SECRET_KEY", "change me")
)


class Chat(BaseModel):
    message: str


@app.post("/chat")
async def chat(body: Chat, session: AgentSessionDep) -> dict:
    return {"reply": await session.send(body.message), "pid": os.getpid()}


@app.get("/history")
async def history(session: AgentSessionDep) -> dict:
    return {"messages": [m.content for m in await session.history()]}
