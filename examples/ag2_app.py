"""An AG2 v1 app on agentsession's store, calling its agent itself:
``uvicorn examples.ag2_app:app``.

POST /chat {"message": "...", "conversation": "<id or absent>"} -> {"reply", "conversation"}.
The conversation's stream lives in an ``AgentSessionStorage``; turns on one conversation are
serialised across workers. Swap ``OfflineConfig()`` for your real model config.
"""

import contextlib
import os
from collections.abc import AsyncIterator

from ag2 import Agent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentsession import check_session_id, new_session_id
from agentsession.integrations.ag2 import AgentSessionStorage
from agentsession.offline.ag2 import OfflineConfig

storage = AgentSessionStorage(os.environ.get("AGENTSESSION_STORE", "sqlite:///agentsession.db"))
agent = Agent(
    "assistant", "You are helpful.", config=OfflineConfig(), middleware=[storage.turn_guard]
)


async def chat(request: Request) -> JSONResponse:
    body = await request.json()
    claimed = body.get("conversation")
    conversation = check_session_id(claimed) if claimed else new_session_id()
    reply = await agent.ask(body["message"], stream=storage.stream(conversation))
    return JSONResponse({"reply": reply.body, "conversation": conversation, "pid": os.getpid()})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await storage.close()


app = Starlette(routes=[Route("/chat", chat, methods=["POST"])], lifespan=lifespan)
