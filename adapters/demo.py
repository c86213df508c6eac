"""``agentsession demo``: a small chat web app (ASGI middleware, Starlette, uvicorn, SQLite, offline model).

Reload the page or restart the server: the conversation is still there. The signing key is
kept in ``.agentsession-demo-secret`` in the working directory so that restarts keep cookies
valid (set ``AGENTSESSION_SECRET_KEY`` to use your own).
"""

from __future__ import annotations

import html
import os
import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from agentsession.manager import AsyncSessionManager
from agentsession.offline import installed_family, offline_agent_factory

from .asgi import AgentSessionMiddleware, get_session

SECRET_FILE = Path(".agentsession-demo-secret")
STORE_ENV, FAMILY_ENV = "AGENTSESSION_DEMO_STORE", "AGENTSESSION_DEMO_FAMILY"
DEFAULT_STORE = "sqlite:///agentsession-demo.db"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agentsession demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 16px/1.4 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }}
#log {{ list-style: none; padding: 0; }}
#log li {{ margin: .4rem 0; padding: .5rem .75rem; border-radius: .5rem; }}
.user {{ background: #e8f0fe; }} .assistant {{ background: #f1f3f4; }}
form {{ display: flex; gap: .5rem; }} input {{ flex: 1; padding: .5rem; }}
small {{ color: #666; }}
</style></head>
<body>
<h1>agentsession demo</h1>
<p><small>{family} family, offline model, store <code>{store}</code>. Reload or restart the
server: the conversation stays.</small></p>
<ul id="log">{items}</ul>
<form id="form"><input id="text" name="text" autocomplete="off" placeholder="Say something"
autofocus required><button>Send</button><button type="button" id="reset">Reset</button></form>
<script>
const log = document.getElementById("log");
function show(history) {{
  log.replaceChildren(...history.map(m => {{
    const li = document.createElement("li"); li.className = m.role;
    li.textContent = m.role + ": " + m.content; return li; }}));
}}
document.getElementById("form").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const input = document.getElementById("text");
  const response = await fetch("/api/send", {{method: "POST",
    headers: {{"content-type": "application/json"}}, body: JSON.stringify({{text: input.value}})}});
  const data = await response.json();
  if (!response.ok) {{ alert(data.error || response.status); return; }}
  input.value = ""; show(data.history);
}});
document.getElementById("reset").addEventListener("click", async () => {{
  const response = await fetch("/api/reset", {{method: "POST"}});
  show((await response.json()).history);
}});
</script>
</body></html>
"""


def _history(messages: list[Any]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": m.content} for m in messages if m.content is not None]


def _secret() -> str:
    configured = os.environ.get("AGENTSESSION_SECRET_KEY")
    if configured:
        return configured
    if not SECRET_FILE.exists():
        SECRET_FILE.write_text(secrets.token_hex(32))
        SECRET_FILE.chmod(0o600)
    return SECRET_FILE.read_text().strip()


def create_app(store_url: str = DEFAULT_STORE, family: str | None = None) -> AgentSessionMiddleware:
    chosen = family or installed_family()
    manager = AsyncSessionManager(offline_agent_factory(chosen), store_url)

    async def page(request: Request) -> Response:
        session = get_session(request.scope)
        # a first visit shows an empty page without touching the store
        history = await session.history() if request.cookies.get("agentsession") else []
        items = "".join(
            f'<li class="{m["role"]}">{html.escape(m["role"])}: {html.escape(m["content"])}</li>'
            for m in _history(history)
        )
        store = html.escape(store_url.split("?")[0])
        return HTMLResponse(PAGE.format(items=items, family=chosen, store=store))

    async def send(request: Request) -> Response:
        try:
            body = await request.json()
            text = str(body["text"]).strip()
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send JSON like {"text": "hello"}'}, status_code=400)
        if not text:
            return JSONResponse({"error": "the message is empty"}, status_code=400)
        session = get_session(request.scope)
        reply = await session.send(text)
        history = _history(await session.history())
        return JSONResponse({"reply": reply, "history": history, "pid": os.getpid()})

    async def history(request: Request) -> Response:
        return JSONResponse({"history": _history(await get_session(request.scope).history())})

    async def reset(request: Request) -> Response:
        session = get_session(request.scope)
        await session.reset()
        return JSONResponse({"history": []})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "pid": os.getpid()})

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/send", send, methods=["POST"]),
            Route("/api/history", history),
            Route("/api/reset", reset, methods=["POST"]),
            Route("/health", health),
        ]
    )
    return AgentSessionMiddleware(app, manager, secret_key=_secret())


def app_from_environment() -> AgentSessionMiddleware:
    """The app uvicorn builds in each worker (``--factory``), configured through the environment."""
    return create_app(os.environ.get(STORE_ENV, DEFAULT_STORE), os.environ.get(FAMILY_ENV) or None)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    store_url: str = DEFAULT_STORE,
    family: str | None = None,
    reload: bool = False,
) -> None:
    import uvicorn

    os.environ[STORE_ENV] = store_url
    os.environ[FAMILY_ENV] = family or installed_family()
    _secret()  # create the key once, before any worker starts
    print(f"agentsession demo on http://{host}:{port}  (store {store_url.split('?')[0]})")
    uvicorn.run(
        "agentsession.adapters.demo:app_from_environment",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        log_level="warning",
    )
