"""Flask + agentsession: ``flask --app examples/flask_app.py run`` (or ``gunicorn -w 2 flask_app:app``).

POST /chat {"message": "..."} -> {"reply": "..."}; each browser keeps its own conversation.
"""

import os

from flask import Flask, request

from agentsession.adapters.flask import AgentSession, current_session
from agentsession.offline import offline_agent_factory

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY", "change me")
AgentSession(
    app,
    factory=offline_agent_factory(os.environ.get("AGENTSESSION_FAMILY")),  # your real agent here
    store=os.environ.get("AGENTSESSION_STORE", "sqlite:///agents.db"),
)


@app.post("/chat")
def chat() -> dict:
    return {"reply": current_session.send(request.get_json()["message"]), "pid": os.getpid()}


@app.get("/history")
def history() -> dict:
    return {"messages": [m.content for m in current_session.history()]}
