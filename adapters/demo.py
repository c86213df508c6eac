"""``agentsession demo``: a small chat web app that remembers (ASGI adapter, Starlette, uvicorn).

The conversation lives in the store (SQLite by default) and the browser keeps only a signed
cookie, so reloading the page or restarting the server changes nothing. The model is the
deterministic offline one, whose replies show how many of your messages it has seen.
The cookie signing key is kept next to the SQLite database (``<db>.secret``; in the working
directory for other stores) so restarts keep cookies valid; ``AGENTSESSION_SECRET_KEY``
overrides it.
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agentsession.errors import ConfigurationError, MessageTooLarge, MissingDependency
from agentsession.manager import AsyncSessionManager
from agentsession.messages import Message
from agentsession.offline import installed_family, offline_agent_factory, offline_team_factory
from agentsession.stores import Store, open_store

try:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - the demo extra is missing
    raise MissingDependency("starlette", "demo", "agentsession demo") from exc

from .asgi import AgentSessionMiddleware, EventStream, get_session

logger = logging.getLogger("agentsession")

DEFAULT_STORE = "sqlite:///agentsession.db"  # the same default as the engine and the CLI
STORE_ENV, FAMILY_ENV, SECRET_ENV = (
    "AGENTSESSION_DEMO_STORE",
    "AGENTSESSION_DEMO_FAMILY",
    "AGENTSESSION_SECRET_KEY",
)
TEAM_ENV = "AGENTSESSION_DEMO_TEAM"
DELAY_ENV = "AGENTSESSION_DEMO_DELAY"
DELAY = 0.03
"""Seconds between the words of an offline reply: the page shows it as it is written."""
SECRET_FILE = ".agentsession-demo-secret"

__all__ = ["app_from_environment", "create_app", "serve"]


def create_app(
    store_url: str = DEFAULT_STORE,
    family: str | None = None,
    team: bool = False,
    delay: float = DELAY,
) -> Starlette:
    """The demo as an ASGI app: the chat page and its small JSON API. ``team``: a writer and a
    critic answer each message (a team or group chat of ``family``) instead of one agent.
    ``delay``: seconds between the words of a streamed offline reply."""
    chosen = family or installed_family()
    store = open_store(store_url)
    factory = (
        offline_team_factory(chosen) if team else offline_agent_factory(chosen, chunk_delay=delay)
    )
    manager = AsyncSessionManager(factory, store)
    kind = "team" if team else "agent"
    about = f"{chosen} family, offline {kind}, store {_display_url(store_url)}"

    async def page(request: Request) -> Response:
        # a first visit has no id: its (empty) history costs no store I/O
        history = _transcript(await get_session(request).history())
        fill = {
            "about": html.escape(about),
            "log": _items(history),
            "hint": "" if not history else " hidden",
        }
        return HTMLResponse(re.sub(r"\{(about|log|hint)\}", lambda m: fill[m.group(1)], PAGE))

    async def send(request: Request) -> Response:
        is_form, text = await _message(request)
        if not text:
            return _error("Type a message first.", 400, is_form)
        session = get_session(request)
        try:
            reply = await session.send(text)
        except MessageTooLarge:
            return _error(
                f"That message is {_size(len(text.encode()))}; the demo takes at most "
                f"{_size(manager.max_message_bytes)}. Shorten it and send it again.",
                413,
                is_form,
                code="message_too_large",
            )
        if is_form:  # the page also works without JavaScript
            return RedirectResponse("/", status_code=303)
        history = _transcript(await session.history())
        return JSONResponse({"reply": reply, "history": history, "pid": os.getpid()})

    async def stream(request: Request) -> Any:
        """POST: the turn as Server-Sent Events. GET: the stream a reloaded page picks up."""
        if request.method == "GET":
            return EventStream.resume(get_session(request), request)
        _, text = await _message(request)
        if not text:
            return _error("Type a message first.", 400, False)
        if len(text.encode()) > manager.max_message_bytes:
            return _error(
                f"That message is {_size(len(text.encode()))}; the demo takes at most "
                f"{_size(manager.max_message_bytes)}. Shorten it and send it again.",
                413,
                False,
                code="message_too_large",
            )
        return EventStream(get_session(request), text)

    async def history(request: Request) -> Response:
        messages = _transcript(await get_session(request).history())
        return JSONResponse({"history": messages, "pid": os.getpid()})

    async def new(request: Request) -> Response:
        await get_session(request).delete()
        if "application/json" not in request.headers.get("accept", ""):
            return RedirectResponse("/", status_code=303)
        return JSONResponse({"history": [], "pid": os.getpid()})

    async def confirm_new(request: Request) -> Response:
        # without JavaScript, "New conversation" asks here before anything is deleted
        return HTMLResponse(CONFIRM_PAGE)

    async def favicon(request: Request) -> Response:
        return Response(FAVICON, media_type="image/svg+xml")

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "pid": os.getpid()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await manager.aclose()

    middleware = Middleware(AgentSessionMiddleware, manager=manager, secret_key=secret_key(store))
    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/send", send, methods=["POST"]),
            Route("/api/stream", stream, methods=["GET", "POST"]),
            Route("/api/history", history),
            Route("/api/new", new, methods=["POST"]),
            Route("/new", confirm_new),
            Route("/favicon.ico", favicon),
            Route("/health", health),
        ],
        middleware=[middleware],
        lifespan=lifespan,
    )


def app_from_environment() -> Starlette:
    """The app each uvicorn worker (or reloaded process) builds: ``--factory``, set by ``serve``."""
    return create_app(
        os.environ.get(STORE_ENV, DEFAULT_STORE),
        os.environ.get(FAMILY_ENV) or None,
        team=os.environ.get(TEAM_ENV) == "1",
        delay=float(os.environ.get(DELAY_ENV) or DELAY),
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    store_url: str = DEFAULT_STORE,
    family: str | None = None,
    reload: bool = False,
    team: bool = False,
) -> None:
    """Serve the demo with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependency("uvicorn", "demo", "agentsession demo") from exc

    chosen = family or installed_family()
    offline_agent_factory(chosen)  # an uninstalled family fails here, not in the worker
    _check_port_free(host, port)  # before the banner: a taken port is an error, not a hang
    secret_key(open_store(store_url))  # made once, before any worker or reloaded process
    os.environ[STORE_ENV], os.environ[FAMILY_ENV] = store_url, chosen
    os.environ[TEAM_ENV] = "1" if team else ""
    print(f"agentsession demo on http://{host}:{port}/  ({chosen}, {_display_url(store_url)})")
    uvicorn.run(
        "agentsession.adapters.demo:app_from_environment",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        log_level="warning",
    )


# -- helpers ----------------------------------------------------------------------------


def _check_port_free(host: str, port: int) -> None:
    """``ConfigurationError`` if ``host:port`` cannot be listened on (in use, unknown host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {port} on {host} is already in use (another demo or server?): "
                    "stop it or choose another with --port"
                ) from None
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def secret_key(store: Store) -> str:
    """The signing key: from the environment, else a file made once (atomically) and reused."""
    configured = os.environ.get(SECRET_ENV)
    if configured:
        return configured
    database = getattr(store, "path", None)
    path = Path(SECRET_FILE)
    if isinstance(database, str) and Path(database).parent.is_dir():
        path = Path(f"{database}.secret")
    if not path.exists():
        draft = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        draft.write_text(secrets.token_hex(32))
        draft.chmod(0o600)
        with contextlib.suppress(FileExistsError):  # another worker made it first: use theirs
            os.link(draft, path)
        draft.unlink()
    return path.read_text().strip()


def _display_url(url: str) -> str:
    """The store URL without credentials or query (it is shown on the page)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _transcript(messages: list[Message]) -> list[dict[str, str]]:
    return [
        {"role": m.role, "content": m.content, "name": m.name or m.role}
        for m in messages
        if m.content is not None and m.role in ("user", "assistant")
    ]


def _items(history: list[dict[str, str]]) -> str:
    return "".join(
        f'<li class="{m["role"]}"><b>{html.escape(m["name"])}</b>{html.escape(m["content"])}</li>'
        for m in history
    )


async def _message(request: Request) -> tuple[bool, str]:
    """(came from a plain HTML form, the message text); JSON is ``{"text": "..."}``."""
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            return False, ""
        text = data.get("text") if isinstance(data, dict) else None
        return False, text.strip() if isinstance(text, str) else ""
    form = parse_qs(body.decode("utf-8", "replace"))
    return True, (form.get("text") or [""])[0].strip()


def _size(count: int) -> str:
    return f"{count:,} bytes" if count < 1024 else f"{count / 1024:,.1f} KB".replace(".0 KB", " KB")


def _error(message: str, status: int, is_form: bool, code: str | None = None) -> Response:
    if is_form:
        return HTMLResponse(f"<p>{html.escape(message)} <a href='/'>Back</a></p>", status)
    body = {"detail": message} if code is None else {"detail": message, "code": code}
    return JSONResponse(body, status)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>agentsession demo</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<style>
body { font: 16px/1.45 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; }
#about { color: #666; font-size: .85rem; margin-top: 0; }
#log { list-style: none; padding: 0; }
#log li { margin: .4rem 0; padding: .5rem .75rem; border-radius: .5rem; white-space: pre-wrap; }
#log b { display: block; font-size: .75rem; color: #555; text-transform: uppercase; }
.user { background: #e8f0fe; margin-left: 3rem !important; }
.assistant { background: #f1f3f4; margin-right: 3rem !important; }
form { display: flex; gap: .5rem; margin-top: 1rem; }
#text { flex: 1; padding: .5rem; font: inherit; }
button { padding: .5rem .9rem; font: inherit; }
#status { color: #b00020; min-height: 1.2rem; }
</style>
</head>
<body>
<h1>agentsession demo</h1>
<p id="about">{about}. Reload the page or restart the server: the conversation stays.</p>
<p id="hint"{hint}>No messages yet. Say something, then reload the page or restart
<code>agentsession demo</code>: the reply tells you how many of your messages the model has
seen, and "what did I say earlier?" makes it quote them.</p>
<ul id="log">{log}</ul>
<form id="chat" method="post" action="/api/send">
<input id="text" name="text" autocomplete="off" placeholder="Say something" autofocus required>
<button id="send">Send</button>
</form>
<form id="new" method="get" action="/new"><button>New conversation</button></form>
<p id="status" role="status"></p>
<script>
const log = document.getElementById("log"), status = document.getElementById("status");
function show(history) {
  document.getElementById("hint").hidden = history.length > 0;
  log.replaceChildren(...history.map((m) => {
    const li = document.createElement("li"), who = document.createElement("b");
    li.className = m.role; who.textContent = m.name || m.role;
    li.append(who, document.createTextNode(m.content));
    return li;
  }));
}
async function post(url, body) {
  status.textContent = "";
  const response = await fetch(url, {method: "POST", body: body && JSON.stringify(body),
    headers: {"content-type": "application/json", "accept": "application/json"}});
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { status.textContent = data.detail || "Error " + response.status; return false; }
  show(data.history);
  return true;
}
function bubble(role, name, text) {
  const li = document.createElement("li"), who = document.createElement("b");
  li.className = role + " live"; who.textContent = name || role;
  li.append(who, document.createTextNode(text || ""));
  log.append(li);
  return li;
}
// a streamed turn: fetch() reads its Server-Sent Events as they come; the id of the turn being
// streamed stays in sessionStorage until its end, so a reloaded page picks the stream up again
async function follow(response) {
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    status.textContent = data.detail || "Error " + response.status;
    return false;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", writing = null, finished = false;
  document.getElementById("hint").hidden = true;
  while (!finished) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const fields = {};
      for (const line of block.split("\\n")) {
        if (line.startsWith(":")) continue;
        const at = line.indexOf(": ");
        fields[line.slice(0, at)] = line.slice(at + 2);
      }
      if (!fields.data) continue;
      const event = JSON.parse(fields.data);
      if (fields.id) sessionStorage.setItem("agentsession-stream", fields.id.split(":")[0]);
      if (event.type === "delta") {
        if (!writing) writing = bubble("assistant", event.speaker, "");
        writing.lastChild.textContent += event.text;
      } else if (event.type === "message") {
        const m = event.message;
        if (m.role === "user") bubble("user", m.name, m.content);
        else if (m.role === "assistant" && m.content) {
          (writing || bubble("assistant", m.name, "")).lastChild.textContent = m.content;
          writing = null;
        }
      } else if (event.type === "end" || event.type === "error") {
        if (event.type === "error") status.textContent = event.detail;
        finished = true;
      }
    }
  }
  sessionStorage.removeItem("agentsession-stream");
  const data = await (await fetch("/api/history")).json();  // what was recorded
  show(data.history);
  return finished;
}
async function send(text) {
  status.textContent = "";
  return follow(await fetch("/api/stream", {method: "POST", body: JSON.stringify({text}),
    headers: {"content-type": "application/json"}}));
}
const pending = sessionStorage.getItem("agentsession-stream");
if (pending) {  // reloaded while a reply was being written: replay that turn, then follow it
  fetch("/api/stream", {headers: {"Last-Event-ID": pending + ":0"}}).then((response) => {
    if (response.status !== 410) return follow(response);
    sessionStorage.removeItem("agentsession-stream");  // nothing left to follow
  });
}
document.getElementById("chat").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("text"), button = document.getElementById("send");
  button.disabled = true;
  try { const text = input.value; input.value = ""; if (!await send(text)) input.value = text; }
  finally { button.disabled = false; input.focus(); }
});
document.getElementById("new").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (log.children.length && !confirm("Delete this conversation and start a new one?")) return;
  await post("/api/new");
});
</script>
</body>
</html>
"""

CONFIRM_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>New conversation? - agentsession demo</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml"></head>
<body style="font: 16px/1.45 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto">
<p>Delete this conversation and start a new one? This cannot be undone.</p>
<form method="post" action="/api/new"><button>Delete and start again</button>
<a href="/">Keep it</a></form>
</body>
</html>
"""

FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="12" rx="3" fill="#1a73e8"/><path d="M4 12l-1 4 5-4z" fill="#1a73e8"/>'
    "</svg>"
)
