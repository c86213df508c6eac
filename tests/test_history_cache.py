"""``history()`` keeps the whole histories it read and, reading one again, reads only what
changed since, whichever manager (worker, host) changed it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from agentsession import Message, SessionManager
from agentsession._cache import HistoryCache
from agentsession.observe import Observer, StoreCall
from agentsession.offline import offline_agent_factory


class Calls(Observer):
    def __init__(self) -> None:
        self.made: list[str] = []

    def store_call(self, call: StoreCall, turn: Any) -> None:
        if turn is None:  # reads, not a turn's own calls
            self.made.append(call.operation)

    def take(self) -> list[str]:
        made, self.made = self.made, []
        return made


@pytest.fixture
def pair(store_url: str) -> Iterator[tuple[SessionManager, SessionManager, Calls]]:
    """A reader manager and a writer manager on one store: two workers."""
    calls = Calls()
    factory = offline_agent_factory()
    with SessionManager(factory, store_url, observer=calls) as reader:
        writer = SessionManager(factory, reader.engine.store) if store_url == "memory://" else None
        with writer or SessionManager(factory, store_url) as other:
            yield reader, other, calls


def contents(messages: list[Message]) -> list[str | None]:
    return [m.content for m in messages]


def test_a_second_read_reads_only_what_changed(
    pair: tuple[SessionManager, SessionManager, Calls],
) -> None:
    reader, writer, calls = pair
    sid = writer.session().id
    writer.send(sid, "one")
    writer.send(sid, "two")
    first = reader.history(sid)
    assert calls.take() == ["load"] and len(first) == 4
    assert reader.history(sid) == first and calls.take() == ["read_messages"]
    writer.send(sid, "three")  # another worker's turn
    again = reader.history(sid)
    assert calls.take() == ["read_messages"]
    assert again == writer.history(sid) and again[:4] == first and len(again) == 6
    reader.history(sid).clear()  # the caller's list is its own
    assert reader.history(sid) == again


@pytest.mark.parametrize("change", ["pop_turn", "pop_and_new_turn", "reset", "delete", "truncate"])
def test_anything_but_an_append_reads_it_whole_again(
    pair: tuple[SessionManager, SessionManager, Calls], change: str
) -> None:
    reader, writer, calls = pair
    sid = writer.session().id
    for text in ("one", "two", "three"):
        writer.send(sid, text)
    assert len(reader.history(sid)) == 6
    if change == "pop_turn":
        writer.pop_turn(sid)
    elif change == "pop_and_new_turn":  # same length as before, a different last message
        writer.pop_turn(sid)
        writer.send(sid, "four")
    elif change == "reset":
        writer.reset(sid)
    elif change == "delete":
        writer.delete(sid)
    else:
        version = writer.info(sid).version  # type: ignore[union-attr]
        writer._run(writer.engine.store.truncate(sid, 2, version))
    calls.take()
    assert reader.history(sid) == writer.history(sid)
    expected = {"pop_turn": 4, "pop_and_new_turn": 6, "reset": 0, "delete": 0, "truncate": 2}
    assert len(reader.history(sid)) == expected[change]
    if change == "pop_and_new_turn":
        assert contents(reader.history(sid))[4] == "four"


def test_history_cache_0_always_reads_the_store(store_url: str) -> None:
    calls = Calls()
    with SessionManager(offline_agent_factory(), store_url, history_cache=0, observer=calls) as m:
        session = m.session()
        session.send("hello")
        calls.take()
        assert session.history() == session.history()
        assert calls.take() == ["load", "load"]


def test_pages_always_go_to_the_store(pair: tuple[SessionManager, SessionManager, Calls]) -> None:
    reader, writer, calls = pair
    sid = writer.session().id
    writer.send(sid, "one")
    reader.history(sid)
    calls.take()
    assert contents(reader.history(sid, limit=1)) == contents(writer.history(sid))[-1:]
    assert calls.take() == ["read_messages"]


def test_the_cache_holds_at_most_its_messages() -> None:
    def conversation(n: int) -> tuple[Message, ...]:
        return tuple(Message("user", str(i)) for i in range(n))

    cache = HistoryCache(10)
    cache.put("a", 1, conversation(4), None)
    cache.put("b", 1, conversation(4), None)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", 1, conversation(4), None)  # 12 > 10: the least recently used (b) goes
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    cache.put("a", 2, conversation(11), None)  # larger than the whole cache: not kept, nor the old
    assert cache.get("a") is None and cache.get("c") is not None
    ten = conversation(10)
    cache.put("c", 2, ten, {})
    assert cache.get("c") == (2, ten, {})


def test_threads_reading_while_another_worker_writes_see_whole_turns(
    durable_store_url: str,
) -> None:
    factory, url = offline_agent_factory(), durable_store_url
    with SessionManager(factory, url) as reader, SessionManager(factory, url) as writer:
        sid = writer.session().id
        writer.send(sid, "turn 0")
        seen: list[list[Message]] = []
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                seen.append(reader.history(sid))

        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for i in range(1, 11):
                writer.send(sid, f"turn {i}")
        finally:
            done.set()
            for thread in threads:
                thread.join()
        final = writer.history(sid)
        assert reader.history(sid) == final and len(final) == 22
        for history in seen:
            assert len(history) % 2 == 0 and history == final[: len(history)]


def test_a_flask_request_adopting_its_session_reads_only_what_changed(store_url: str) -> None:
    from flask import Flask

    from agentsession.adapters.flask import AgentSession, current_session

    app = Flask("history")
    app.secret_key = "s" * 32
    AgentSession(
        app,
        factory=offline_agent_factory(),
        store=store_url,
        owner=lambda request: request.headers.get("X-User"),
    )
    app.add_url_rule("/send", "send", lambda: current_session.send("hello"), methods=["POST"])
    app.add_url_rule("/history", "history", lambda: [m.content for m in current_session.history()])
    calls = Calls()
    engine = app.extensions["agentsession"].manager.engine
    engine._observers = (calls,)
    with app.test_client() as alice:
        alice.post("/send", headers={"X-User": "alice"})
        cookie = alice.get_cookie("agentsession")
        assert cookie is not None
        calls.take()
        assert len(alice.get("/history", headers={"X-User": "alice"}).json) == 2  # type: ignore[arg-type]
        assert calls.take() == ["load"]
        assert len(alice.get("/history", headers={"X-User": "alice"}).json) == 2  # type: ignore[arg-type]
        assert calls.take() == ["read_messages"]  # the owner checked on the cached metadata
        alice.post("/send", headers={"X-User": "alice"})
        calls.take()
        assert len(alice.get("/history", headers={"X-User": "alice"}).json) == 4  # type: ignore[arg-type]
        # after a turn: the new messages, and the metadata from the summary, not the whole
        assert calls.take() == ["read_messages", "info"]
        assert len(alice.get("/history", headers={"X-User": "alice"}).json) == 4  # type: ignore[arg-type]
        assert calls.take() == ["read_messages"]
    with app.test_client() as mallory:  # alice's cookie, another user: refused, cached or not
        mallory.set_cookie("agentsession", cookie.value)
        assert mallory.get("/history", headers={"X-User": "mallory"}).json == []
        mallory.post("/send", headers={"X-User": "mallory"})  # goes to a new conversation
        assert len(mallory.get("/history", headers={"X-User": "mallory"}).json) == 2  # type: ignore[arg-type]
    with app.test_client() as alice:
        alice.set_cookie("agentsession", cookie.value)
        assert len(alice.get("/history", headers={"X-User": "alice"}).json) == 4  # type: ignore[arg-type]
