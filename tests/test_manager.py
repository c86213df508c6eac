"""The session engine, with real AutoGen agents and the offline model, over every store."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from agentsession import (
    AsyncSessionManager,
    ConversationFull,
    CorruptRecord,
    InvalidInput,
    MessageTooLarge,
    SessionBusy,
    SessionContext,
    SessionManager,
    SessionNotFound,
    UnsupportedAgent,
)
from agentsession.offline import offline_agent_factory, user_messages_seen


def test_three_turns_survive_a_new_manager(family: str, durable_store_url: str) -> None:
    factory = offline_agent_factory(family)
    manager = SessionManager(factory, durable_store_url)
    session = manager.session()
    for text in ("hello", "how are you?", "what is 2+2?"):
        session.send(text)
    session_id = session.id
    manager.close()
    del manager, session
    gc.collect()

    fresh = SessionManager(factory, durable_store_url)
    reply = fresh.session(session_id).send("what did I say earlier?")
    history = fresh.history(session_id)
    fresh.close()

    assert user_messages_seen(reply) == 4
    assert "'hello'" in reply and "'how are you?'" in reply and "'what is 2+2?'" in reply
    assert len(history) == 8
    assert [m.role for m in history] == ["user", "assistant"] * 4
    assert history[-2].content == "what did I say earlier?"


def test_async_api_persists_the_same_way(family: str, store_url: str) -> None:
    async def run() -> tuple[str, int]:
        async with AsyncSessionManager(offline_agent_factory(family), store_url) as manager:
            session = manager.session()
            await session.send("one")
            await session.send("two")
            reply = await session.send("three")
            return reply, len(await session.history())

    reply, stored = asyncio.run(run())
    assert user_messages_seen(reply) == 3
    assert stored == 6


def test_conversations_never_see_each_other(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url) as manager:
        alice, bob = manager.session(), manager.session()
        alice.send("alice's secret is 1")
        reply = bob.send("what did I say earlier?")
        bob.send("bob is here")
        assert user_messages_seen(reply) == 1
        assert "secret" not in reply
        assert all("bob" not in (m.content or "") for m in alice.history())
        assert all("alice" not in (m.content or "") for m in bob.history())


def _assert_whole_turns(history: list[Any], turns: int) -> None:
    assert len(history) == 2 * turns
    for user, reply in zip(history[::2], history[1::2], strict=True):
        assert user.role == "user" and reply.role == "assistant"
        # the offline reply quotes the user message it answered: each reply follows its own turn
        assert repr(user.content) in (reply.content or "")
    counts = [user_messages_seen(reply.content) for reply in history[1::2]]
    assert counts == list(range(1, turns + 1))


def test_concurrent_turns_from_threads_are_serialised(family: str, store_url: str) -> None:
    # waiting turns queue (for up to lock_timeout) instead of being refused as busy
    with SessionManager(offline_agent_factory(family), store_url, lock_timeout=60) as manager:
        session_id = manager.session().id
        errors: list[BaseException] = []

        def turn(i: int) -> None:
            try:
                manager.send(session_id, f"thread message {i}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=turn, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        _assert_whole_turns(manager.history(session_id), 20)


def test_concurrent_turns_from_tasks_are_serialised(family: str, store_url: str) -> None:
    async def run() -> list[Any]:
        factory = offline_agent_factory(family)
        async with AsyncSessionManager(factory, store_url, lock_timeout=60) as manager:
            session = manager.session()
            await asyncio.gather(*(session.send(f"task message {i}") for i in range(20)))
            return await session.history()

    _assert_whole_turns(asyncio.run(run()), 20)


class CountingFactory:
    def __init__(self, family: str) -> None:
        self.build = offline_agent_factory(family)
        self.calls = 0
        self.contexts: list[SessionContext] = []

    def __call__(self, context: SessionContext) -> Any:
        self.calls += 1
        self.contexts.append(context)
        return self.build()


def test_live_agent_is_cached_while_the_store_version_matches(family: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    factory = CountingFactory(family)
    with SessionManager(factory, url) as manager, SessionManager(factory, url) as other:
        session = manager.session()
        session.send("one")
        session.send("two")
        assert factory.calls == 1  # the second turn reused the live agent

        other.send(session.id, "written by another worker")
        assert factory.calls == 2
        # the version moved: the live agent catches up with the other worker's turn (not
        # stale, not rebuilt; tests/test_catch_up.py has the details)
        reply = session.send("four")
        assert factory.calls == 2
        assert user_messages_seen(reply) == 4
        other.reset(session.id)  # not an append: rebuilt from the store
        assert user_messages_seen(session.send("five")) == 1
        assert factory.calls == 3


def test_cache_is_bounded(family: str) -> None:
    factory = CountingFactory(family)
    with SessionManager(factory, "memory://", cache_size=2) as manager:
        for _ in range(5):
            manager.session().send("hi")
        assert len(manager.engine._cache) == 2


def test_evicted_agents_are_closed_in_a_loop_of_turns_that_never_yields(family: str) -> None:
    # memory store and offline model: no turn gives the event loop a chance to run the
    # evicted agents' close() tasks unless the engine yields for them
    async def main() -> None:
        async with AsyncSessionManager(
            offline_agent_factory(family), "memory://", cache_size=2
        ) as manager:
            for _ in range(50):
                await manager.session().send("hi")
            closing = [
                task
                for task in asyncio.all_tasks()
                if getattr(task.get_coro(), "__qualname__", "").endswith(".close")
            ]
            assert len(closing) <= 1, closing  # at most the one this turn just evicted

    asyncio.run(main())


def test_factory_reads_the_session_metadata(family: str, store_url: str) -> None:
    factory = CountingFactory(family)
    with SessionManager(factory, store_url) as manager:
        session = manager.session()
        session.set_metadata({"user": "ada", "plan": "pro"})
        session.send("hello")
        assert factory.contexts[-1].id == session.id
        assert dict(factory.contexts[-1].metadata) == {"user": "ada", "plan": "pro"}
        assert session.metadata() == {"user": "ada", "plan": "pro"}


def test_reset_delete_and_rotate(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url) as manager:
        session = manager.session()
        session.set_metadata({"owner": "ada"})
        session.send("one")
        session.send("two")

        old_id = session.id
        new_id = session.rotate()
        assert new_id != old_id and session.id == new_id
        assert manager.history(old_id) == [] and not manager.exists(old_id)
        assert user_messages_seen(session.send("three")) == 3

        session.reset()
        assert session.history() == []
        assert session.metadata() == {"owner": "ada"}
        assert user_messages_seen(session.send("after reset")) == 1

        assert session.delete() is True
        assert not session.exists() and session.delete() is False


def test_limits(family: str) -> None:
    with SessionManager(
        offline_agent_factory(family), "memory://", max_message_bytes=100, max_messages=4
    ) as manager:
        session = manager.session()
        with pytest.raises(MessageTooLarge, match="max_message_bytes"):
            session.send("x" * 101)
        session.send("one")
        session.send("two")
        with pytest.raises(ConversationFull, match="max_messages"):
            session.send("three")
        assert len(session.history()) == 4


def test_busy_conversation_times_out(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url, lock_timeout=0.3) as manager:
        session = manager.session()
        session.send("one")
        # another process holds the turn lease
        token = manager._run(manager.store.acquire(session.id, 30))
        assert token is not None
        with pytest.raises(SessionBusy, match="busy"):
            session.send("two")
        manager._run(manager.store.release(session.id, token))
        assert user_messages_seen(session.send("two")) == 2


def test_expired_lease_of_a_crashed_worker_is_recovered(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url, lock_timeout=5) as manager:
        session = manager.session()
        assert manager._run(manager.store.acquire(session.id, 0.3)) is not None  # never released
        assert user_messages_seen(session.send("after the crash")) == 1


def test_an_agent_of_no_family_is_refused(store_url: str) -> None:
    with SessionManager(lambda: object(), store_url) as manager:
        session = manager.session()
        with pytest.raises(UnsupportedAgent, match="no supported AutoGen family"):
            session.send("hello")
        assert session.history() == []


def test_corrupt_record_names_its_session_and_spares_others(family: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corrupt.db'}"
    with SessionManager(offline_agent_factory(family), url) as manager:
        broken, healthy = manager.session(), manager.session()
        broken.send("one")
        healthy.send("one")
        with sqlite3.connect(tmp_path / "corrupt.db") as db:
            db.execute(
                "UPDATE agentsession_messages SET body = '{not json' WHERE session_id = ? AND seq = 0",
                (broken.id,),
            )
        manager.engine._cache.drain()  # as a fresh worker would: nothing cached

        with pytest.raises(CorruptRecord) as caught:
            broken.send("two")
        assert caught.value.session_id == broken.id
        assert broken.id in str(caught.value)
        assert user_messages_seen(healthy.send("two")) == 2
        with sqlite3.connect(tmp_path / "corrupt.db") as db:  # left in place for inspection
            (body,) = db.execute(
                "SELECT body FROM agentsession_messages WHERE session_id = ? AND seq = 0",
                (broken.id,),
            ).fetchone()
        assert body == "{not json"


def test_export_and_import_round_trip(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url) as manager:
        session = manager.session()
        session.set_metadata({"topic": "maths"})
        session.send("one")
        document = manager.export(session.id)
        copy_id = manager.import_(document, "copied-conversation-id-0001")
        assert [m.content for m in manager.history(copy_id)] == [
            m.content for m in session.history()
        ]
        assert manager.metadata(copy_id) == {"topic": "maths"}
        assert user_messages_seen(manager.send(copy_id, "two")) == 2
        with pytest.raises(SessionNotFound):
            manager.export("no-such-session")
        loaded = manager.load(copy_id)  # everything in one read
        assert loaded is not None and loaded.messages == manager.history(copy_id)
        assert loaded.metadata == {"topic": "maths"} and loaded.version == 2
        assert manager.load("no-such-session") is None


def _turn_in_forked_child(url: str, session_id: str, family: str, queue: Any) -> None:
    manager = SessionManager(offline_agent_factory(family), url)
    queue.put(manager.send(session_id, "from the forked child"))


def test_sync_bridge_survives_fork(family: str, tmp_path: Path) -> None:
    # the loop thread started in the parent does not exist in a forked child (gunicorn --preload)
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    with SessionManager(offline_agent_factory(family), url) as manager:
        session = manager.session()
        session.send("from the parent")
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_turn_in_forked_child, args=(url, session.id, family, queue))
        child.start()
        reply = queue.get(timeout=60)
        child.join(30)
        assert child.exitcode == 0
        assert user_messages_seen(reply) == 2
        assert user_messages_seen(session.send("parent again")) == 3


def test_session_ids_are_unguessable_and_command_line_safe() -> None:
    from agentsession import new_session_id

    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    for session_id in ids:
        assert len(session_id) * 4 >= 128  # hex: 4 bits a character
        assert session_id.isalnum() and not session_id.startswith("-")


BAD_IDS = ["", "x" * 129, "nul\x00inside", "lone \ud800 surrogate", 42]


def test_ids_and_texts_no_store_can_hold_are_refused_before_any_write(
    family: str, store_url: str
) -> None:
    from agentsession import MAX_SESSION_ID_LENGTH

    with SessionManager(offline_agent_factory(family), store_url) as manager:
        for bad in BAD_IDS:
            with pytest.raises(InvalidInput, match="session id"):
                manager.session(bad)  # type: ignore[arg-type]
            calls = (
                (manager.send, (bad, "hello")),
                (manager.set_metadata, (bad, {"a": 1})),
                (manager.history, (bad,)),
                (manager.delete, (bad,)),
                (manager.import_, (EXPORT, bad)),
            )
            for method, args in calls:
                with pytest.raises(InvalidInput):
                    method(*args)  # type: ignore[operator]
        session = manager.session("fine")
        with pytest.raises(InvalidInput, match="lone surrogate at position 3"):
            session.send("abc\udc80def")
        with pytest.raises(InvalidInput, match="must be a str"):
            session.send(b"bytes")  # type: ignore[arg-type]
        assert manager.list() == []  # nothing was written
        # the widest ids every store must hold, compared exactly: 128 four-byte characters
        # (512 bytes), and ids that differ only in case or a trailing space
        for session_id in ("\U0001f600" * MAX_SESSION_ID_LENGTH, "Ab", "ab", "ab "):
            manager.session(session_id).send(f"I am {session_id!r}")
        for session_id in ("\U0001f600" * MAX_SESSION_ID_LENGTH, "Ab", "ab", "ab "):
            history = manager.history(session_id)
            assert len(history) == 2 and history[0].content == f"I am {session_id!r}"
        assert isinstance(InvalidInput("x"), ValueError)


EXPORT = {"format": "agentsession.conversation", "v": 1, "session_id": "x", "messages": []}
