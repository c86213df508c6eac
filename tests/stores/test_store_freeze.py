"""A server that stops answering (``kill -STOP``) gets a bounded 503, not a hung request.

With the pool warm, the private PostgreSQL (postmaster and every backend) or MariaDB process is
stopped: its kernel still ACKs TCP, so neither the server's own limits nor keepalives fire,
only the client's bound does. A store call and a turn through each adapter (ASGI and
Flask/WSGI) must answer ``StoreUnavailable`` / 503 with ``Retry-After`` instead of hanging;
after ``kill -CONT`` the same store object, and the same app, work again. A COMMIT cut off
this way raises ``OutcomeUnknown``: it may have landed, and here it does.

The guard below is a hang guard (60 s), not a timing assertion: the defaults answer in about
``timeout`` + 1 s, printed with ``-s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from test_store_servers import PrivateMariaDB, PrivatePostgres, PrivateServer, pair

from agentsession import AsyncSessionManager, OutcomeUnknown, StoreUnavailable
from agentsession.offline import installed_family, offline_agent_factory, user_messages_seen
from agentsession.stores import Store, open_store

pytestmark = pytest.mark.slow

HANG_GUARD = 60.0  # "answers instead of hanging", not a measure of speed
SECRET = "a-secret-key-for-the-freeze-tests-32b"
T = TypeVar("T")

FREEZABLE: dict[str, type[PrivateServer]] = {
    "postgresql": PrivatePostgres,
    "mariadb": PrivateMariaDB,
}


@pytest.fixture(scope="module", params=list(FREEZABLE))
def server(request: pytest.FixtureRequest) -> Iterator[PrivateServer]:
    root = Path(tempfile.mkdtemp(prefix="agentsession-freeze-"))
    started: PrivateServer | None = None
    try:
        started = FREEZABLE[request.param](root)
        started.start()
        yield started
    finally:
        if started is not None:
            thaw(started)
            started.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


def server_pids(server: PrivateServer) -> list[int]:
    """The server's processes: PostgreSQL's postmaster and every backend, or mariadbd."""
    if isinstance(server, PrivatePostgres):
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        return [postmaster, *_children(postmaster)]
    assert server.process is not None
    return [server.process.pid]


_frozen: dict[int, list[int]] = {}


def _stopped(pid: int) -> bool:
    """Is every thread of ``pid`` stopped? (SIGSTOP lands when each thread next runs.)"""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if Path(task, "stat").read_text().rsplit(")", 1)[1].split()[0] not in "tT":
                return False
    return True


def freeze(server: PrivateServer) -> None:
    pids = server_pids(server)
    _frozen[id(server)] = pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while not all(_stopped(pid) for pid in pids):
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.01)


def thaw(server: PrivateServer) -> None:
    for pid in _frozen.pop(id(server), []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def frozen(server: PrivateServer) -> Iterator[None]:
    freeze(server)
    try:
        yield
    finally:
        thaw(server)


def timed(what: str, call: Callable[[], T]) -> T:
    started = time.monotonic()
    try:
        return call()
    finally:
        print(f"\n{what}: answered after {time.monotonic() - started:.1f} s")


async def guarded(awaitable: Any) -> Any:
    try:
        return await asyncio.wait_for(awaitable, HANG_GUARD)
    except asyncio.TimeoutError:
        raise AssertionError(f"no answer within {HANG_GUARD:g} s: the call hangs") from None


def kind(server: PrivateServer) -> str:
    return "postgresql" if isinstance(server, PrivatePostgres) else "mariadb"


def store_url(server: PrivateServer, prefix: str) -> str:
    return f"{server.url}?table_prefix={prefix}_"


# -- the store -------------------------------------------------------------------------


def test_a_frozen_server_fails_store_calls_then_the_same_store_recovers(
    server: PrivateServer,
) -> None:
    async def scenario(store: Store) -> None:
        await store.create("s1", {})
        await store.append("s1", pair("before"), 0)
        assert (await store.load("s1")) is not None  # the pool is warm
        with frozen(server):
            for name, call in (
                ("info", lambda: store.info("s1")),
                ("load", lambda: store.load("s1")),  # one pipelined round trip on PostgreSQL
                ("read_messages", lambda: store.read_messages("s1", 1)),
                ("append", lambda: store.append("s1", pair("frozen"), 1)),
                ("begin_turn", lambda: store.begin_turn("s1", 5)),
            ):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable) as caught:
                    await guarded(call())
                print(f"\n{kind(server)} {name}: StoreUnavailable after "
                      f"{time.monotonic() - started:.1f} s")  # fmt: skip
                assert not isinstance(caught.value, OutcomeUnknown)  # nothing was committing
                # a pooled connection cut by the client bound, or a new one that timed out
                assert "did not answer within 5 s" in str(caught.value) or "time" in str(
                    caught.value
                )
                assert server.password not in str(caught.value)
        # the same store object, after kill -CONT: the cut connections were dropped
        info = await guarded(store.info("s1"))
        assert info is not None and info.version == 1  # the frozen append never landed
        assert await guarded(store.append("s1", pair("after"), 1)) == 2
        begun = await guarded(store.begin_turn("s1", 5))
        assert begun is not None
        await store.release("s1", begun[0])

    asyncio.run(_opened(store_url(server, "calls"), scenario))


def test_a_commit_cut_off_is_an_unknown_outcome(server: PrivateServer) -> None:
    """Frozen between a write's last statement and its COMMIT: ``OutcomeUnknown``."""
    from sqlalchemy import event

    async def scenario(store: Any) -> None:
        await store.create("s1", {})
        await store.append("s1", pair("before"), 0)
        armed: list[bool] = []

        def freeze_before_commit(conn: Any) -> None:
            if armed and armed.pop():
                freeze(server)  # the COMMIT goes out to a stopped server

        event.listen(store.engine, "commit", freeze_before_commit)
        try:
            armed.append(True)
            with pytest.raises(OutcomeUnknown) as caught:
                await guarded(store.append("s1", pair("in doubt"), 1))
            assert "may or may not have been recorded" in str(caught.value)
            assert "idempotency key" in str(caught.value)
            thaw(server)
            # here it did land: the server read the COMMIT when it woke up
            info = await guarded(store.info("s1"))
            assert info is not None and info.version in (1, 2)
            print(f"\n{kind(server)}: the cut-off COMMIT landed: {info.version == 2}")
            # a read whose COMMIT is cut off changed nothing: plain StoreUnavailable
            armed.append(True)
            with pytest.raises(StoreUnavailable) as read:
                await guarded(store.info("s1"))
            assert not isinstance(read.value, OutcomeUnknown)
        finally:
            thaw(server)
            event.remove(store.engine, "commit", freeze_before_commit)
        assert (await guarded(store.load("s1"))) is not None

    asyncio.run(_opened(store_url(server, "commit"), scenario))


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
def test_a_pipelined_turn_cut_off_is_an_unknown_outcome(server: PrivateServer) -> None:
    """On PostgreSQL a turn's write and its COMMIT go out in one pipeline: a server that stops
    answering then leaves the outcome unknown, and here the turn lands once it wakes up."""

    async def scenario(store: Any) -> None:
        await store.create("s1", {})
        await store.append("s1", pair("before"), 0)
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        with frozen(server):
            with pytest.raises(OutcomeUnknown) as caught:
                await guarded(store.finish_turn("s1", pair("in doubt"), 1, begun[0]))
            assert "may or may not have been recorded" in str(caught.value)
        info = await guarded(store.info("s1"))
        assert info is not None and info.version in (1, 2)
        conversation = await guarded(store.load("s1"))
        assert conversation is not None
        assert len(conversation.messages) == 2 * info.version  # all of the turn, or none
        print(f"\npostgresql: the cut-off pipelined turn landed: {info.version == 2}")
        again = await guarded(store.begin_turn("s1", 30))
        assert again is not None  # the lease was released, by the turn or after it
        await store.release("s1", again[0])

    asyncio.run(_opened(store_url(server, "pipelined"), scenario))


async def _opened(url: str, body: Callable[[Any], Any]) -> None:
    store = open_store(url)
    try:
        await body(store)
    finally:
        with contextlib.suppress(Exception):
            await store.drop()  # type: ignore[attr-defined]
        await store.close()


# -- through the adapters --------------------------------------------------------------


def factory() -> Any:
    return offline_agent_factory(installed_family())


def test_asgi_answers_503_then_recovers(server: PrivateServer) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from agentsession.adapters.asgi import AgentSessionMiddleware

    async def chat(request: Request) -> JSONResponse:
        session = request.state.agent_session
        return JSONResponse({"reply": await session.send((await request.json())["text"])})

    async def scenario() -> None:
        url = store_url(server, "asgi")
        manager = AsyncSessionManager(factory(), url)
        app = AgentSessionMiddleware(
            Starlette(routes=[Route("/chat", chat, methods=["POST"])]), manager, secret_key=SECRET
        )
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for text in ("one", "two"):  # the pool is warm
                    assert (await client.post("/chat", json={"text": text})).status_code == 200
                with frozen(server):
                    started = time.monotonic()
                    response = await guarded(client.post("/chat", json={"text": "frozen"}))
                    print(f"\n{kind(server)} ASGI: {response.status_code} after "
                          f"{time.monotonic() - started:.1f} s")  # fmt: skip
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "5"
                assert response.json()["code"] == "store_unavailable"
                again = await guarded(client.post("/chat", json={"text": "three"}))
                assert again.status_code == 200, again.text
                assert user_messages_seen(again.json()["reply"]) == 3  # "frozen" never landed
        finally:
            with contextlib.suppress(Exception):
                await manager.store.drop()  # type: ignore[attr-defined]
            await manager.aclose()

    asyncio.run(scenario())


def test_flask_answers_503_then_recovers(server: PrivateServer) -> None:
    pytest.importorskip("flask")
    from flask import Flask, request

    from agentsession.adapters.flask import AgentSession, current_session

    app = Flask(__name__)
    app.secret_key = SECRET
    AgentSession(app, factory=factory(), store=store_url(server, "flask"))

    @app.post("/chat")
    def chat() -> dict[str, Any]:
        return {"reply": current_session.send(request.get_json()["text"])}

    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t")
    pool = ThreadPoolExecutor(1)

    def post(text: str) -> httpx.Response:
        future = pool.submit(client.post, "/chat", json={"text": text})
        try:
            return future.result(timeout=HANG_GUARD)
        except TimeoutError:
            raise AssertionError(f"no answer within {HANG_GUARD:g} s: the turn hangs") from None

    try:
        for text in ("one", "two"):
            assert post(text).status_code == 200
        with frozen(server):
            response = timed(f"{kind(server)} Flask", lambda: post("frozen"))
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.json()["code"] == "store_unavailable"
        again = post("three")
        assert again.status_code == 200, again.text
        assert user_messages_seen(again.json()["reply"]) == 3
    finally:
        thaw(server)
        pool.shutdown(wait=False)
        client.close()
        with app.app_context():
            app.extensions["agentsession"].manager.close()
        asyncio.run(_opened(store_url(server, "flask"), lambda store: asyncio.sleep(0)))


def test_outcome_unknown_is_a_503_with_its_own_code() -> None:
    from agentsession.adapters._errors import error_answer

    answer = error_answer(OutcomeUnknown("postgresql at db stopped answering while committing"))
    assert answer is not None and answer.status == 503
    assert answer.code == "outcome_unknown" and ("Retry-After", "5") in answer.headers
    assert "Idempotency-Key" in answer.message and "db" not in answer.message.split("Key")[0]
