"""Per-request overhead, in process (the ASGI/WSGI app called directly, no sockets).

Routes: the bare app (on Starlette also behind a middleware that only wraps ``send``, the
least a cookie-setting middleware does); the app behind agentsession with a route that ignores its session; one
that loads it (reads the history of an existing two-message conversation); one that runs a turn
with the offline model. Peers on the same store: starsessions and Flask-Session, each with a
route that reads its session.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

from ._report import Table, ainterleaved_times, amedian_time, interleaved_times, median_time, ms
from .turn_cost import seed_messages

REDIS_URL = os.environ.get("AGENTSESSION_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "AGENTSESSION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
SECRET = "bench-secret-key-of-at-least-32-bytes"


def _asgi_request(app: Any, path: str, cookie: str | None) -> Callable[[], Any]:
    headers = [(b"host", b"bench")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("bench", 80),
             "client": ("127.0.0.1", 1), "root_path": ""}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise AssertionError(f"{path}: status {message['status']}")

    async def call() -> None:
        await app(dict(scope), receive, send)

    return call


def _atime(
    loop: asyncio.AbstractEventLoop, call: Callable[[], Any], rounds: int, number: int
) -> float:
    return float(
        loop.run_until_complete(amedian_time(call, rounds=rounds, number=number, warmup=number))
    )


def starlette_rows(stores: dict[str, str], rounds: int, number: int) -> list[list[Any]]:
    """As ``flask_rows``: the read routes (the bare app, agentsession's on each store,
    starsessions') take turns round by round; the turns, which write, after them."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from agentsession import AsyncSessionManager
    from agentsession.adapters.asgi import AgentSessionMiddleware, get_session
    from agentsession.offline import offline_agent_factory

    async def plain(request: Any) -> Any:
        return PlainTextResponse("ok")

    async def load(request: Any) -> Any:
        return PlainTextResponse(str(len(await get_session(request.scope).history())))

    async def turn(request: Any) -> Any:
        return PlainTextResponse(await get_session(request.scope).send("benchmark turn"))

    routes = [Route("/plain", plain), Route("/load", load), Route("/turn", turn)]
    loop = asyncio.new_event_loop()
    same_cookie = "agentsession=" + "x" * 90  # the bare app parses the same headers
    reads: dict[tuple[str, str], Callable[[], Any]] = {
        ("-", "bare app"): _asgi_request(Starlette(routes=routes), "/plain", same_cookie),
        # the least any session middleware does: a plain function around send (for the cookie)
        ("-", "a middleware that only wraps send"): _asgi_request(
            _wrapping_send(Starlette(routes=routes)), "/plain", same_cookie
        ),
    }
    order: list[tuple[str, str]] = list(reads)
    turns: dict[tuple[str, str], Callable[[], Any]] = {}
    unavailable: set[tuple[str, str]] = set()
    managers: list[Any] = []
    for kind, url in stores.items():
        manager = AsyncSessionManager(offline_agent_factory(), url)
        app = AgentSessionMiddleware(Starlette(routes=routes), manager, secret_key=SECRET)
        try:
            session = manager.session()
            loop.run_until_complete(session.send("hello"))
        except Exception as exc:
            key = (kind, f"unavailable: {type(exc).__name__}")
            unavailable.add(key)
            order.append(key)
            continue
        managers.append(manager)
        cookie = f"agentsession={app.signer.sign(session.id)}"
        for label, path in (("ignores its session", "/plain"), ("loads its session", "/load")):
            reads[(kind, label)] = _asgi_request(app, path, cookie)
            order.append((kind, label))
        fresh = manager.session()
        loop.run_until_complete(fresh.send("hello"))
        turns[(kind, "runs one turn")] = _asgi_request(
            app, "/turn", f"agentsession={app.signer.sign(fresh.id)}"
        )
        order.append((kind, "runs one turn"))
    peer = _starsessions(loop)
    if peer is not None:
        reads[("redis", "starsessions: loads its session (peer)")] = peer
        order.append(("redis", "starsessions: loads its session (peer)"))
    times = loop.run_until_complete(ainterleaved_times(reads, rounds=rounds, number=number))
    turn_number = max(3, number // 10)
    times.update((key, _atime(loop, fn, rounds, turn_number)) for key, fn in turns.items())
    for manager in managers:
        loop.run_until_complete(_drop(manager))
    loop.close()
    bare = times[("-", "bare app")]
    rows: list[list[Any]] = []
    for key in order:
        if key in unavailable:
            rows.append(["starlette", *key, "", ""])
            continue
        t = times[key]
        rows.append(["starlette", *key, ms(t), round(t / bare, 1 if key in turns else 3)])
    return rows


def _wrapping_send(app: Any) -> Any:
    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        def wrapped(message: Any) -> Any:
            return send(message)

        await app(scope, receive, wrapped)

    return middleware


async def _drop(manager: Any) -> None:
    drop = getattr(manager.store, "drop", None)
    if drop is not None:
        await drop()
    await manager.aclose()


def _starsessions(loop: asyncio.AbstractEventLoop) -> Callable[[], Any] | None:
    """starsessions' read of its session from Redis, as a request to time (None: missing)."""
    try:
        from redis.asyncio import Redis
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from starsessions import SessionAutoloadMiddleware, SessionMiddleware
        from starsessions.stores.redis import RedisStore
    except ImportError:
        return None

    async def load(request: Any) -> Any:
        return PlainTextResponse(str(request.session.get("n", 0)))

    async def write(request: Any) -> Any:
        request.session["n"] = request.session.get("n", 0) + 1
        return PlainTextResponse("ok")

    store = RedisStore(connection=Redis.from_url(REDIS_URL), prefix=f"bench-{uuid.uuid4().hex[:6]}")
    app = Starlette(
        routes=[Route("/load", load), Route("/write", write)],
        middleware=[
            Middleware(SessionMiddleware, store=store, cookie_https_only=False),
            Middleware(SessionAutoloadMiddleware),
        ],
    )
    cookie: dict[str, str] = {}

    async def first() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            for name, value in message.get("headers", []):
                if name == b"set-cookie":
                    cookie["value"] = value.decode().split(";")[0]

        await app({"type": "http", "method": "GET", "path": "/write", "headers": [], "query_string": b"",
                   "root_path": "", "scheme": "http", "server": ("bench", 80)}, receive, send)  # fmt: skip

    try:
        loop.run_until_complete(first())
    except OSError:  # no Redis
        return None
    return _asgi_request(app, "/load", cookie.get("value"))


def flask_rows(stores: dict[str, str], rounds: int, number: int) -> list[list[Any]]:
    """Every read route (agentsession's on each store, Flask-Session's, the bare app) is timed
    round by round in turn; the turns, which write, after them."""
    from flask import Flask
    from werkzeug.test import EnvironBuilder

    from agentsession.adapters.flask import AgentSession, current_session
    from agentsession.offline import offline_agent_factory

    def call(app: Flask, path: str, cookie: str | None) -> Callable[[], Any]:
        headers = {"Cookie": cookie} if cookie else {}
        environ = EnvironBuilder(path=path, headers=headers).get_environ()

        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            if not status.startswith("200"):
                raise AssertionError(f"{path}: {status}")

        def request() -> None:
            for _ in app.wsgi_app(dict(environ), start_response):
                pass

        return request

    def routes(app: Flask, with_session: bool) -> None:
        app.add_url_rule("/plain", "plain", lambda: "ok")
        if with_session:
            app.add_url_rule("/load", "load", lambda: str(len(current_session.history())))
            app.add_url_rule("/turn", "turn", lambda: current_session.send("benchmark turn"))

    def extension(name: str, url: str, **config: Any) -> tuple[Flask, Any]:
        app = Flask(name)
        app.secret_key = SECRET  # the same session machinery and headers in every app
        app.config.update(AGENTSESSION_STORE=url, **config)
        AgentSession(app, factory=offline_agent_factory())
        routes(app, True)
        return app, app.extensions["agentsession"]

    bare_app = Flask("bare")
    bare_app.secret_key = SECRET
    routes(bare_app, False)
    reads: dict[tuple[str, str], Callable[[], Any]] = {
        ("-", "bare app"): call(bare_app, "/plain", "agentsession=" + "x" * 90)
    }
    order: list[tuple[str, str]] = [("-", "bare app")]  # the rows, reads and turns
    turns: dict[tuple[str, str], Callable[[], Any]] = {}
    unavailable: set[tuple[str, str]] = set()  # a row that says why, no time
    states: list[Any] = []
    cold_states: list[Any] = []
    for kind, url in stores.items():
        app, state = extension(f"bench-{kind}", url)
        try:
            session = state.manager.session()
            session.send("hello")
        except Exception as exc:
            key = (kind, f"unavailable: {type(exc).__name__}")
            unavailable.add(key)
            order.append(key)
            continue
        states.append(state)  # a store that answered: its tables or keys are dropped after
        cookie = f"agentsession={state.ids.signer.sign(session.id)}"
        reads[(kind, "ignores its session")] = call(app, "/plain", cookie)
        reads[(kind, "loads its session")] = call(app, "/load", cookie)
        order += [(kind, "ignores its session"), (kind, "loads its session")]
        if kind == "redis":  # a long conversation: 1,000 messages read per request
            long = state.manager.session()
            long.append(seed_messages(1000))
            long_cookie = f"agentsession={state.ids.signer.sign(long.id)}"
            cached = (kind, "loads a 1,000-message session (this worker read it before)")
            reads[cached] = call(app, "/load", long_cookie)
            cold_app, cold_state = extension(
                f"bench-{kind}-cold", url, AGENTSESSION_HISTORY_CACHE=0
            )
            cold_states.append(cold_state)
            whole = (kind, "loads a 1,000-message session (history_cache=0: read whole)")
            reads[whole] = call(cold_app, "/load", long_cookie)
            order += [cached, whole]
        fresh = state.manager.session()
        fresh.send("hello")
        turns[(kind, "runs one turn")] = call(
            app, "/turn", f"agentsession={state.ids.signer.sign(fresh.id)}"
        )
        order.append((kind, "runs one turn"))
    for key, fn in _flask_session(call).items():
        order.append(key)
        if fn is None:
            unavailable.add(key)
        else:
            reads[key] = fn
    times = interleaved_times(reads, rounds=rounds, number=number)
    turn_number = max(3, number // 10)
    times.update(
        (key, median_time(fn, rounds=rounds, number=turn_number, warmup=turn_number))
        for key, fn in turns.items()
    )
    bare = times[("-", "bare app")]
    rows: list[list[Any]] = []
    for key in order:
        if key in unavailable:
            rows.append(["flask", *key, "", ""])
            continue
        t = times[key]
        rows.append(["flask", *key, ms(t), round(t / bare, 1 if key in turns else 3)])
    for state in cold_states:
        state.manager.close()
    for state in states:  # each store's tables or keys
        drop = getattr(state.manager.store, "drop", None)
        if drop is not None:
            state.manager._run(drop())
    return rows


def _flask_session(
    call: Callable[..., Callable[[], Any]],
) -> dict[tuple[str, str], Callable[[], Any] | None]:
    """Flask-Session's read routes, by (store, label): the request, or None where the label
    says why it cannot run."""
    try:
        import redis
        from flask import Flask, session
        from flask_session import Session
    except ImportError:
        return {}
    found: dict[tuple[str, str], Callable[[], Any] | None] = {}
    configs: dict[str, dict[str, Any]] = {
        "redis": {"SESSION_TYPE": "redis", "SESSION_REDIS": redis.Redis.from_url(REDIS_URL)}
    }
    try:
        from flask_sqlalchemy import SQLAlchemy  # noqa: F401

        configs["postgresql"] = {
            "SESSION_TYPE": "sqlalchemy",
            "SQLALCHEMY_DATABASE_URI": POSTGRES_URL.replace(
                "postgresql://", "postgresql+psycopg://"
            ),
        }
    except ImportError:
        pass
    for kind, config in configs.items():
        app = Flask(f"flask-session-{kind}")
        app.secret_key = SECRET
        app.config.update(config, SESSION_KEY_PREFIX=f"bench-{uuid.uuid4().hex[:6]}:")
        app.add_url_rule("/write", "write", lambda: session.__setitem__("n", 1) or "ok")
        app.add_url_rule("/load", "load", lambda: str(session.get("n", 0)))
        history = [m.to_dict() for m in seed_messages(1000)]  # the records agentsession keeps
        app.add_url_rule(
            "/write-long", "write_long", lambda h=history: session.__setitem__("h", h) or "ok"
        )
        app.add_url_rule("/load-long", "load_long", lambda: str(len(session.get("h", ()))))
        try:
            Session(app)
            with app.test_client() as client:
                client.get("/write")
                cookie = f"session={client.get_cookie('session').value}"
            with app.test_client() as client:
                client.get("/write-long")
                long_cookie = f"session={client.get_cookie('session').value}"
        except Exception as exc:
            found[(kind, f"Flask-Session unavailable: {type(exc).__name__}")] = None
            continue
        found[(kind, "Flask-Session: loads its session (peer)")] = call(app, "/load", cookie)
        if kind == "redis":
            label = "Flask-Session: loads a 1,000-message session (peer)"
            found[(kind, label)] = call(app, "/load-long", long_cookie)
    return found


def measure(quick: bool) -> list[Table]:
    rounds, number = (5, 100) if quick else (15, 300)
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(dir=".") as folder:
        stores = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{folder}/mw.db",
            "redis": f"{REDIS_URL}?prefix=bench-mw-{tag}:",
            "postgresql": f"{POSTGRES_URL}?table_prefix=benchmw{tag}_",
        }
        rows = starlette_rows(stores, rounds, number) + flask_rows(stores, rounds, number)
    return [
        Table(
            "Per-request cost in process (ms, median) and ratio to the bare app",
            ["framework", "store", "route", "ms per request", "x bare app"],
            rows,
            notes=[
                "'loads its session' reads the history of a 2-message conversation (cookie check, store read).",
                "Peers read their own session from the same Redis/PostgreSQL server.",
            ],
        )
    ]
