"""Flask + agentsession: ``flask --app examples/flask_app.py run`` (or ``gunicorn -w 2 flask_app:app``).

POST /chat {"message": "..."} -> {"reply": "..."}; each browser keeps its own conversation.
POST /chat/stream streams the turn as Server-Sent Events; GET /chat/stream resumes it
(an EventSource reconnecting with Last-Event-ID). Stream under a server that sends chunks as
they come (gunicorn with --threads or gevent; the werkzeug dev server does).

Needs ``SECRET_KEY`` (32 bytes or more) in the environment; it refuses to start without one:
``export SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')"``.
"""

import os

from flask import Flask, abort, request

from agentsession.adapters.flask import AgentSession, current_session, event_stream
from agentsession.offline import offline_agent_factory

if not os.environ.get("SECRET_KEY"):  # never a default: a known key lets anyone forge ids
    raise SystemExit(
        "set SECRET_KEY first: python -c 'import secrets; print(secrets.token_hex(32))'"
    )
app = Flask(__name__)
app.secret_key = os.environ["SECRET_KEY"]
DELAY = os.environ.get("OFFLINE_CHUNK_DELAY")  # the offline model streams word by word
AgentSession(
    app,
    # the offline model of any family; your factory builds your real agent
    factory=offline_agent_factory(
        os.environ.get("AGENTSESSION_FAMILY"), chunk_delay=float(DELAY) if DELAY else None
    ),
    store=os.environ.get("AGENTSESSION_STORE", "sqlite:///agentsession.db"),
)


def message() -> str:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        abort(400, 'send JSON: {"message": "..."}')
    return body["message"]


@app.post("/chat")
def chat() -> dict:
    return {"reply": current_session.send(message()), "pid": os.getpid()}


@app.route("/chat/stream", methods=["GET", "POST"])
def stream():
    if request.method == "GET":
        return event_stream()
    return event_stream(message())


@app.get("/history")
def history() -> dict:
    return {"messages": [m.content for m in current_session.history()]}
