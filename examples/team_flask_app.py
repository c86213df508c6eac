"""A legacy group chat behind Flask: ``SECRET_KEY=... flask --app examples/team_flask_app.py run``.

A ``GroupChat`` of a user proxy, a writer and a critic (round robin, the critic ends the turn),
returned as ``(user_proxy, manager)``; every browser keeps its own group chat conversation.

POST /chat {"message": "..."} -> {"reply": "...", "speaker": "critic", "turn": [{"speaker", "text"}]}
"""

import os

from flask import Flask, request

from agentsession.adapters.flask import AgentSession, current_session
from agentsession.offline.legacy import build_group_chat

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY")
if not app.secret_key:  # a default secret would let anyone forge session cookies
    raise RuntimeError("set SECRET_KEY to a long random string before starting this app")
AgentSession(
    app,
    # your factory builds your real group chat, a new one per call
    factory=lambda: build_group_chat(),
    store=os.environ.get("AGENTSESSION_STORE", "sqlite:///agentsession.db"),
)


@app.post("/chat")
def chat() -> tuple[dict, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return {"error": 'send JSON {"message": "..."}'}, 400
    turn = current_session.run_turn(body["message"])
    speakers = [{"speaker": m.name, "text": m.content} for m in turn if m.content]
    return {"reply": turn.reply, "speaker": turn.speaker, "turn": speakers}, 200


@app.get("/history")
def history() -> dict:
    return {"messages": [{"speaker": m.name, "text": m.content} for m in current_session.history()]}
