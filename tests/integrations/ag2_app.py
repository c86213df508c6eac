"""An AG2 v1 app that uses agentsession only as its history Storage.

Run as a process by tests/integrations/test_ag2_integration.py: ``python ag2_app.py STORE_URL SESSION_ID
TURNS TAG`` runs TURNS turns on one conversation, as a web worker would, and prints each reply.
"""

from __future__ import annotations

import asyncio
import sys

from agentsession.integrations.ag2 import AgentSessionStorage
from agentsession.offline.ag2 import build_agent


async def main(url: str, session_id: str, turns: int, tag: str) -> None:
    storage = AgentSessionStorage(url, lock_timeout=60)
    agent = build_agent(middleware=[storage.turn_guard])
    for index in range(turns):
        reply = await agent.ask(f"{tag} message {index}", stream=storage.stream(session_id))
        print(reply.body, flush=True)
    await storage.close()


if __name__ == "__main__":
    url, session_id, turns, tag = sys.argv[1:5]
    asyncio.run(main(url, session_id, int(turns), tag))
