"""A team behind FastAPI: ``SECRET_KEY=... uvicorn examples.team_fastapi_app:app``.

An agentchat ``RoundRobinGroupChat`` (a writer, then a critic who ends the turn) answers each
message; every browser keeps its own team conversation, across reloads, restarts and workers.

POST /chat {"message": "..."} -> {"reply": "...", "speaker": "critic", "turn": [{"speaker", "text"}]}
"""

import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agentsession import AsyncSessionManager
from agentsession.adapters.asgi import AgentSessionMiddleware
from agentsession.adapters.fastapi import AgentSessionDep
from agentsession.offline.agentchat import build_team

SECRET_KEY = os.environ.get("SECRET_KEY")
if not SECRET_KEY:  # a default secret would let anyone forge session cookies
    raise RuntimeError("set SECRET_KEY to a long random string before starting this app")


def build() -> object:  # your factory builds your real team, a new one per call
    return build_team("round_robin")


manager = AsyncSessionManager(
    build, os.environ.get("AGENTSESSION_STORE", "sqlite:///agentsession.db")
)
app = FastAPI()
app.add_middleware(AgentSessionMiddleware, manager=manager, secret_key=SECRET_KEY)


@app.post("/chat")
async def chat(request: Request, session: AgentSessionDep) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return JSONResponse({"error": 'send JSON {"message": "..."}'}, status_code=400)
    turn = await session.run_turn(body["message"])
    return JSONResponse(
        {
            "reply": turn.reply,
            "speaker": turn.speaker,
            "turn": [{"speaker": m.name, "text": m.content} for m in turn if m.content],
        }
    )


@app.get("/history")
async def history(session: AgentSessionDep) -> dict:
    return {"messages": [{"speaker": m.name, "text": m.content} for m in await session.history()]}
