"""An Agent Framework app that uses agentsession only as its HistoryProvider/SessionStore.

Run as a process by tests/integrations/test_maf_integration.py: ``python maf_app.py STORE_URL SESSION_ID
TURNS TAG`` runs TURNS turns on one session, as a web worker would, and prints each reply.
"""

from __future__ import annotations

import asyncio
import sys

from agent_framework import Agent

from agentsession.integrations.maf import AgentSessionHistoryProvider, AgentSessionStore
from agentsession.offline.maf import OfflineChatClient


async def main(url: str, session_id: str, turns: int, tag: str) -> None:
    history = AgentSessionHistoryProvider(url, lock_timeout=60)
    sessions = AgentSessionStore(history.store)
    agent = Agent(client=OfflineChatClient(), name="assistant", context_providers=[history])
    for index in range(turns):
        # every request rebuilds its session from the store, as a web worker does
        session = await sessions.get(session_id) or agent.create_session(session_id=session_id)
        response = await agent.run(f"{tag} message {index}", session=session)
        await sessions.set(session_id, session)
        print(response.text, flush=True)
    await history.close()


if __name__ == "__main__":
    url, session_id, turns, tag = sys.argv[1:5]
    asyncio.run(main(url, session_id, int(turns), tag))
