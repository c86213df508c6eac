"""Sync reads run on the calling thread's own loop: no hop to agentsession's loop thread.

A Flask or WSGI request that reads its history would otherwise cross to the loop thread and
back for each call. Stores whose calls can run on any loop (SQLite, SQL) serve every thread's
loop themselves; a Redis store made from a URL makes one twin that reads with a sync client
(tests/stores/test_redis_sync_reads.py); the memory store and a Redis client the application
passed in cannot, and those reads cross as before.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import need_server

from agentsession import SessionManager, _loop
from agentsession.offline import offline_agent_factory, user_messages_seen

SECRET = "a-test-secret-key-of-at-least-32-bytes!"


class Hops:
    """Counts calls that cross to the loop thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        run = _loop.run

        def counting(coro: Any) -> Any:
            self.count += 1
            return run(coro)

        monkeypatch.setattr(_loop, "run", counting)


def test_reads_stay_on_the_calling_thread(
    durable_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SessionManager(offline_agent_factory(), durable_store_url) as manager:
        session = manager.session()
        session.send("one")
        session.send("two")
        hops = Hops(monkeypatch)
        assert [m.content for m in session.history()][0::2] == ["one", "two"]
        assert len(session.history(limit=1)) == 1
        assert session.exists() and session.metadata() == {}
        info = manager.info(session.id)
        conversation = manager.load(session.id)
        assert info is not None and conversation is not None
        assert info.version == conversation.version == 2
        assert hops.count == 0
        assert user_messages_seen(session.send("three")) == 3  # a turn still crosses
        assert hops.count == 1


def test_threads_read_while_turns_are_written(durable_store_url: str) -> None:
    with SessionManager(offline_agent_factory(), durable_store_url, lock_timeout=30) as manager:
        session = manager.session()
        session.send("first")
        failures: list[BaseException] = []
        lengths: list[int] = []
        done = threading.Event()

        def read() -> None:
            try:
                while not done.is_set():
                    lengths.append(len(manager.history(session.id)))
            except BaseException as exc:
                failures.append(exc)

        readers = [threading.Thread(target=read) for _ in range(4)]
        for thread in readers:
            thread.start()
        for i in range(10):
            session.send(f"turn {i}")
        done.set()
        for thread in readers:
            thread.join()
        assert not failures
        assert lengths and all(n % 2 == 0 and 2 <= n <= 22 for n in lengths)
        assert len(session.history()) == 22


def test_stores_bound_to_one_loop_still_cross(monkeypatch: pytest.MonkeyPatch) -> None:
    redis = pytest.importorskip("redis.asyncio")
    from agentsession.stores.redis import RedisStore

    client_store = RedisStore(
        client=redis.Redis.from_url(need_server("redis")), prefix="read-here-client:"
    )
    for store in ("memory://", client_store):
        with SessionManager(offline_agent_factory(), store) as manager:
            session = manager.session()
            session.send("one")
            hops = Hops(monkeypatch)
            assert len(session.history()) == 2
            assert hops.count == 1
            monkeypatch.undo()
    _loop.run(client_store.drop())


def test_a_flask_request_reads_its_history_without_crossing(
    durable_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flask = pytest.importorskip("flask")
    from agentsession.adapters.flask import AgentSession, current_session

    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, AGENTSESSION_STORE=durable_store_url)
    AgentSession(app, factory=offline_agent_factory())

    @app.post("/chat")
    def chat() -> dict[str, Any]:
        return {"reply": current_session.send(flask.request.get_json()["text"])}

    @app.get("/history")
    def history() -> dict[str, Any]:
        return {"messages": [m.content for m in current_session.history()]}

    client = app.test_client()
    assert client.post("/chat", json={"text": "hello"}).status_code == 200
    hops = Hops(monkeypatch)
    messages = client.get("/history").json["messages"]
    assert len(messages) == 2 and messages[0] == "hello"
    assert hops.count == 0
