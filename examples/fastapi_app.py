"""FastAPI + agentsession: ``uvicorn examples.fastapi_app:app``.

Needs ``SECRET_KEY`` (32 bytes or more) in the environment; it refuses to start without one:
``export SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')"``.
"""

import os

from fastapi import FastAPI
from pydantic import BaseModel

from agentsession import AsyncSessionManager
from agentsession.adapters.asgi import AgentSessionMiddleware
from agentsession.adapters.fastapi import AgentSessionDep
from agentsession.offline import offline_agent_factory

SECRET_KEY = os.environ.get("SECRET_KEY")
if not SECRET_KEY:  # never a default: a known key lets anyone forge ids
    raise SystemExit(
        "set SECRET_KEY first: python -c 'import secrets; print(secrets.token_hex(32))'"
    )
manager = AsyncSessionManager(
    offline_agent_factory(os.environ.get("AGENTSESSION_FAMILY")),  # the offline model of any family
    os.environ.get("AGENTSESSION_STORE", "sqlite:///agentsession.db"),
)
app = FastAPI()
app.add_middleware(AgentSessionMiddleware, manager=manager, secret_key=SECRET_KEY)


class Chat(BaseModel):  # a body without a string "message" is a 422, never a 500
    message: str


@app.post("/chat")
async def chat(body: Chat, session: AgentSessionDep) -> dict:
    return {"reply": await session.send(body.message), "pid": os.getpid()}


@app.get("/history")
async def history(session: AgentSessionDep) -> dict:
    return {"messages": [m.content for m in await session.history()]}
