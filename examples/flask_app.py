"""Flask + agentsession: ``flask --app examples/flask_app.py run`` (or ``gunicorn -w 2 flask_app:app``).

POST /chat {"message": "..."} -> {"reply": "..."}; each browser keeps its own conversation.

Needs ``SECRET_KEY`` (32 bytes or more) in the environment; it refuses to start without one:
``export SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')"``.
"""

import os

from flask import Flask, abort, request

from agentsession.adapters.flask import AgentSession, current_session
from agentsession.offline import offline_agent_factory

if not os.environ.get("SECRET_KEY"):  # never a default: a known key lets anyone forge ids
    raise SystemExit(
        "set SECRET_KEY first: python -c 'import secrets; print(secrets.token_hex(32))'"
    )
app = Flask(__name__)
app.secret_key = os.environ["SECRET_KEY"]
AgentSession(
    app,
    factory=offline_agent_factory(os.environ.get("AGENTSESSION_FAMILY")),  # your real agent here
    store=os.environ.get("AGENTSESSION_STORE", "sqlite:///agents.db"),
)


@app.post("/chat")
def chat() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        abort(400, 'send JSON: {"message": "..."}')
    return {"reply": current_session.send(body["message"]), "pid": os.getpid()}


@app.get("/history")
def history() -> dict:
    return {"messages": [m.content for m in current_session.history()]}
