"""An Agent Framework app on agentsession's store, calling its agent itself:
``uvicorn examples.maf_app:app``.

POST /chat {"message": "...", "conversation": "<id or absent>"} -> {"reply", "conversation"}.
The agent's history is an ``AgentSessionHistoryProvider``; runs on one conversation are
serialised across workers. Swap ``OfflineChatClient()`` for your real chat client.
"""

import os

from agent_framework import Agent
from fastapi import FastAPI
from pydantic import BaseModel

from agentsession import check_session_id, new_session_id
from agentsession.integrations.maf import AgentSessionHistoryProvider, AgentSessionStore
from agentsession.offline.maf import OfflineChatClient

history = AgentSessionHistoryProvider(
    os.environ.get("AGENTSESSION_STORE", "sqlite:///agentsession.db")
)
sessions = AgentSessionStore(history.store)
agent = Agent(
    client=OfflineChatClient(),
    name="assistant",
    instructions="You are helpful.",
    context_providers=[history],
)
app = FastAPI()


class Chat(BaseModel):
    message: str
    conversation: str | None = None


@app.post("/chat")
async def chat(body: Chat) -> dict:
    conversation = check_session_id(body.conversation) if body.conversation else new_session_id()
    session = await sessions.get(conversation) or agent.create_session(session_id=conversation)
    response = await agent.run(body.message, session=session)
    await sessions.set(conversation, session)
    return {"reply": response.text, "conversation": conversation, "pid": os.getpid()}
