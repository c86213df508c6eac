"""Streamed turns that survive their reader: the journal lets a reader that reconnects, to any
worker, replay what it missed and follow the rest; a reader that leaves does not lose the turn
(or cancels it, if asked); a dead worker's stream ends in a clear error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from agentsession import AsyncSessionManager, SessionManager, StreamInterrupted
from agentsession.offline import user_messages_seen
from agentsession.offline.agentchat import build_agent
from agentsession.turns import MessageEvent, TextDelta, TurnEnd, TurnEvent, TurnStart


def streaming(delay: float = 0.02) -> Any:
    return lambda: build_agent(model_client_stream=True, chunk_words=1, chunk_delay=delay)


def text_of(events: list[TurnEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_a_reader_that_reconnects_elsewhere_gets_what_it_missed(durable_store_url: str) -> None:
    async def run() -> None:
        async with (
            AsyncSessionManager(streaming(), durable_store_url) as worker,
            AsyncSessionManager(streaming(), durable_store_url) as other_worker,
        ):
            session_id = worker.session().id
            await worker.send(session_id, "hello")
            first: list[TurnEvent] = []
            events = worker.stream(session_id, "what did I say earlier?")
            async for event in events:
                first.append(event)
                if isinstance(event, TextDelta) and len(first) > 4:
                    break  # the connection drops mid-reply
            await events.aclose()  # type: ignore[attr-defined]
            rest = [e async for e in other_worker.resume(session_id, after=first[-1].seq)]
            every = first + rest
            assert [e.seq for e in every] == list(range(len(every)))  # nothing lost, no repeat
            end = every[-1]
            assert isinstance(end, TurnEnd) and isinstance(every[0], TurnStart)
            assert text_of(every) == end.turn.reply and user_messages_seen(end.turn.reply) == 2
            stored = await other_worker.history(session_id)
            assert [m.content for m in stored[2:]] == [m.content for m in end.turn]
            again = [e async for e in other_worker.resume(session_id)]  # from the start
            assert [e.to_dict() for e in again] == [e.to_dict() for e in every]

    asyncio.run(run())


def test_a_reader_that_leaves_with_cancel_stores_nothing(store_url: str) -> None:
    async def run() -> None:
        async with AsyncSessionManager(streaming(0.05), store_url) as manager:
            session = manager.session()
            await session.send("kept")
            events = session.stream("dropped", on_disconnect="cancel")
            async for event in events:
                if isinstance(event, TextDelta):
                    break
            await events.aclose()  # type: ignore[attr-defined]
            code = "no_journal"
            for _ in range(100):  # the cancelled turn's journal is written just after
                try:
                    async for _ in manager.resume(session.id):
                        pass
                except StreamInterrupted as exc:
                    code = exc.code
                if code != "no_journal":
                    break
                await asyncio.sleep(0.05)
            assert code == "cancelled"
            assert (await session.history())[0].content == "kept"
            assert len(await session.history()) == 2
            assert user_messages_seen(await session.send("next")) == 2  # no half turn

    asyncio.run(run())


def test_send_and_stream_are_one_turn_for_the_journal_too(store_url: str) -> None:
    with SessionManager(streaming(0), store_url) as manager:
        session = manager.session()
        events = list(session.stream("hello"))
        replayed = list(session.resume())
        assert [e.to_dict() for e in replayed] == [e.to_dict() for e in events]
        assert isinstance(events[1], MessageEvent) and events[1].message.content == "hello"


def test_an_idempotent_retry_streams_the_recorded_turn(store_url: str) -> None:
    with SessionManager(streaming(0), store_url) as manager:
        session = manager.session()
        first = list(session.stream("hello", idempotency_key="k"))
        again = list(session.stream("hello", idempotency_key="k"))
        end = again[-1]
        assert isinstance(end, TurnEnd) and end.turn.replayed
        assert [e.message.content for e in again if isinstance(e, MessageEvent)] == [
            e.message.content for e in first if isinstance(e, MessageEvent)
        ]
        assert len(session.history()) == 2


_STREAM_AND_HANG = textwrap.dedent(
    """
    import asyncio, sys
    from agentsession import AsyncSessionManager
    from agentsession.offline.agentchat import build_agent

    def factory():
        return build_agent(model_client_stream=True, chunk_words=1, chunk_delay=600)

    async def main():
        async with AsyncSessionManager(factory, sys.argv[1], lease_ttl=1.0) as manager:
            async for event in manager.stream(sys.argv[2], "hello"):
                print(event.type, flush=True)

    asyncio.run(main())
    """
)


async def journaled(url: str, session_id: str, kind: str) -> None:
    """Wait until the conversation's journal holds an event of ``kind``."""
    from agentsession.stores import open_store

    store = open_store(url)
    try:
        for _ in range(200):
            page = await store.journal_read(session_id)
            if page is not None and any(e["type"] == kind for e in page.events):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} event was journaled")
    finally:
        await store.close()


@pytest.mark.slow
def test_a_stream_whose_worker_is_killed_ends_in_an_error(durable_store_url: str) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _STREAM_AND_HANG, durable_store_url, "s-killed"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        while worker.stdout.readline().strip() != "delta":  # mid-reply
            pass
        asyncio.run(journaled(durable_store_url, "s-killed", "delta"))
        worker.kill()
        worker.wait(10)
    finally:
        worker.kill()

    async def run() -> None:
        async with AsyncSessionManager(streaming(0), durable_store_url) as manager:
            seen: list[TurnEvent] = []
            with pytest.raises(StreamInterrupted, match="worker died"):
                async for event in manager.resume("s-killed"):
                    seen.append(event)
            assert isinstance(seen[0], TurnStart) and isinstance(seen[-1], TextDelta)
            for _ in range(200):  # the dead worker's lease expires, then the next turn runs
                try:
                    reply = await manager.send("s-killed", "after the crash")
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            assert user_messages_seen(reply) == 1  # nothing of the killed turn was recorded

    asyncio.run(run())


def test_a_stream_and_a_send_on_one_conversation_are_serialised(store_url: str) -> None:
    async def run() -> None:
        async with AsyncSessionManager(streaming(0.01), store_url, lock_timeout=30) as manager:
            session = manager.session()

            async def streamed() -> list[TurnEvent]:
                return [e async for e in session.stream("streamed turn")]

            events, replies = await asyncio.gather(
                streamed(), asyncio.gather(*(session.send(f"sent {i}") for i in range(3)))
            )
            history = await session.history()
            assert len(history) == 8  # four whole turns
            users = [m.content for m in history if m.role == "user"]
            assert sorted(users) == sorted(["streamed turn", "sent 0", "sent 1", "sent 2"])
            counts = [user_messages_seen(m.content or "") for m in history if m.role == "assistant"]
            assert counts == [1, 2, 3, 4]  # each turn saw every turn before it
            end = events[-1]
            assert isinstance(end, TurnEnd) and end.turn.reply in [m.content for m in history]
            assert len(replies) == 3

    asyncio.run(run())
