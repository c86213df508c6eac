"""agentsession as AG2 v1's history Storage, with no SessionManager: real ag2 installs, the
offline model, every store, real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("ag2")

from agentsession import AsyncSessionManager, Message, SessionBusy
from agentsession.integrations.ag2 import STREAM_NAMESPACE, AgentSessionStorage
from agentsession.messages import REPAIRED
from agentsession.offline import user_messages_seen
from agentsession.offline.ag2 import OfflineClient, OfflineConfig, build_agent

T = TypeVar("T")
APP = Path(__file__).with_name("ag2_app.py")
ADD_2_2 = '/tool add {"a": 2, "b": 2}'


def run(coroutine: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coroutine

    return asyncio.run(wrapper())


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def stored(url_or_storage: Any, session_id: str) -> list[Message]:
    storage = url_or_storage
    if isinstance(storage, str):
        storage = AgentSessionStorage(storage)
    conversation = await storage.store.load(session_id)
    if isinstance(url_or_storage, str):
        await storage.close()
    return [] if conversation is None else conversation.messages


def test_stream_ids_are_deterministic(tmp_path: Path) -> None:
    storage = AgentSessionStorage("memory://")
    assert storage.stream_id("conv-1") == uuid.uuid5(STREAM_NAMESPACE, "conv-1")
    assert storage.stream("conv-1").id == AgentSessionStorage("memory://").stream_id("conv-1")
    assert storage.session_id(storage.stream_id("conv-1")) == "conv-1"
    other = uuid.uuid4()
    assert storage.session_id(other) == str(other)  # a stream made elsewhere: its own UUID


@pytest.mark.parametrize("guarded", [True, False], ids=["turn_guard", "bare"])
def test_history_survives_a_restart(durable_store_url: str, guarded: bool) -> None:
    async def first() -> None:
        storage = AgentSessionStorage(durable_store_url)
        agent = build_agent(tools=[add], middleware=[storage.turn_guard] if guarded else [])
        reply = await agent.ask("hello", stream=storage.stream("conv-1"))
        reply = await reply.ask(ADD_2_2)  # reply.ask continues the same conversation
        await agent.ask("what is 2+2?", stream=storage.stream("conv-1"))
        await storage.close()

    async def second() -> tuple[str | None, list[Message]]:
        storage = AgentSessionStorage(durable_store_url)
        agent = build_agent(tools=[add])
        reply = await agent.ask("what did I say earlier?", stream=storage.stream("conv-1"))
        messages = await stored(storage, "conv-1")
        await storage.close()
        return reply.body, messages

    run(first())
    reply, messages = run(second())
    assert user_messages_seen(reply or "") == 4
    assert "'hello'" in (reply or "") and repr(ADD_2_2) in (reply or "")
    assert [m.role for m in messages] == ["user", "assistant"] + [
        "user",
        "assistant",
        "tool",
        "assistant",
    ] + ["user", "assistant"] * 2
    assert [m.content for m in messages if m.role == "tool"] == ["4"]


def test_two_conversations_never_mix(store_url: str) -> None:
    async def scenario() -> str | None:
        storage = AgentSessionStorage(store_url)
        agent = build_agent()
        await agent.ask("alice's secret", stream=storage.stream("alice"))
        reply = await agent.ask("what did I say earlier?", stream=storage.stream("bob"))
        await storage.close()
        return reply.body

    reply = run(scenario()) or ""
    assert user_messages_seen(reply) == 1 and "secret" not in reply


def test_concurrent_turns_through_two_storages_are_serialised(store_url: str) -> None:
    """Two storages on one store stand for two processes: AG2's own lock is per process."""
    if store_url == "memory://":
        pytest.skip("two memory:// stores are two separate stores")

    async def scenario() -> list[Message]:
        left, right = AgentSessionStorage(store_url), AgentSessionStorage(store_url)
        agent = build_agent()
        await asyncio.gather(
            *(
                agent.ask(f"task {i}", stream=(left if i % 2 else right).stream("busy"))
                for i in range(20)
            )
        )
        messages = await stored(left, "busy")
        await left.close()
        await right.close()
        return messages

    messages = run(scenario())
    assert len(messages) == 40
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert user.role == "user" and repr(user.content) in (reply.content or "")
    assert [user_messages_seen(m.content) for m in messages[1::2]] == list(range(1, 21))


@pytest.mark.slow
def test_two_processes_advancing_one_conversation_are_serialised(durable_store_url: str) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, str(APP), durable_store_url, "shared", "5", tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("left", "right")
    ]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
    messages = run(stored(durable_store_url, "shared"))
    assert len(messages) == 20
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert user.role == "user" and repr(user.content) in (reply.content or "")
    assert [user_messages_seen(m.content) for m in messages[1::2]] == list(range(1, 11))


class DiesAfterToolCall(OfflineClient):
    """Calls the tool, then the provider fails before the turn's final response."""

    async def __call__(self, messages: Any, context: Any, **kwargs: Any) -> Any:
        if type(messages[-1]).__name__ == "ToolResultsEvent":
            raise ConnectionError("provider down")
        return await super().__call__(messages, context, **kwargs)


class DyingConfig(OfflineConfig):
    def create(self) -> OfflineClient:
        return DiesAfterToolCall()


@pytest.mark.parametrize("guarded", [True, False], ids=["turn_guard", "bare"])
def test_a_failed_turn_keeps_what_happened_closed_and_frees_the_conversation(
    tmp_path: Path, guarded: bool
) -> None:
    from ag2 import Agent

    async def scenario() -> tuple[list[Message], str | None]:
        storage = AgentSessionStorage(f"sqlite:///{tmp_path / 'f.db'}", lock_timeout=1)
        middleware = [storage.turn_guard] if guarded else []
        dying = Agent("assistant", config=DyingConfig(), tools=[add], middleware=middleware)
        with pytest.raises(ConnectionError):
            await dying.ask(ADD_2_2, stream=storage.stream("f"))
        healthy = build_agent(tools=[add], middleware=middleware)
        reply = await healthy.ask("and now?", stream=storage.stream("f"))
        messages = await stored(storage, "f")
        await storage.close()
        return messages, reply.body

    messages, reply = run(scenario())
    assert [m.role for m in messages] == ["user", "assistant", "tool", "user", "assistant"]
    assert messages[2].content == "4" and not messages[2].metadata.get(REPAIRED)
    assert user_messages_seen(reply or "") == 2


def test_an_unanswered_call_of_a_dead_turn_is_closed(tmp_path: Path) -> None:
    from ag2 import Agent

    class DiesOnToolCall(OfflineClient):
        async def __call__(self, messages: Any, context: Any, **kwargs: Any) -> Any:
            response = await super().__call__(messages, context, **kwargs)
            if response.tool_calls.calls:
                await context.send(response)  # the call is recorded, then the process is hit
                raise ConnectionError("gone")
            return response

    class Config(OfflineConfig):
        def create(self) -> OfflineClient:
            return DiesOnToolCall()

    async def scenario() -> list[Message]:
        storage = AgentSessionStorage(f"sqlite:///{tmp_path / 'd.db'}", lock_timeout=1)
        agent = Agent("assistant", config=Config(), tools=[], middleware=[storage.turn_guard])
        with pytest.raises(ConnectionError):
            await agent.ask('/tool nothing {"x": 1}', stream=storage.stream("d"))
        messages = await stored(storage, "d")
        await storage.close()
        return messages

    messages = run(scenario())
    assert [m.role for m in messages][:2] == ["user", "assistant"]
    closing = [m for m in messages if m.metadata.get(REPAIRED)]
    assert closing and closing[0].is_error


def test_a_manager_and_the_storage_share_the_conversation_and_its_lease(
    durable_store_url: str,
) -> None:
    async def scenario() -> tuple[str | None, str]:
        async with AsyncSessionManager(lambda: build_agent(), durable_store_url) as manager:
            await manager.send("mixed", "from the manager")
            storage = AgentSessionStorage(manager.store, lock_timeout=0.2)
            agent = build_agent()
            from_app = (await agent.ask("from the app", stream=storage.stream("mixed"))).body
            from_manager = await manager.send("mixed", "what did I say earlier?")
            token, _ = await manager.store.begin_turn("mixed", 30) or ("", None)
            with pytest.raises(SessionBusy):
                await agent.ask("blocked", stream=storage.stream("mixed"))
            await manager.store.release("mixed", token)
            return from_app, from_manager

    from_app, from_manager = run(scenario())
    assert user_messages_seen(from_app or "") == 2
    assert user_messages_seen(from_manager) == 3 and "'from the app'" in from_manager


def test_resume_replace_and_drop(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Message], list[Message]]:
        storage = AgentSessionStorage(f"sqlite:///{tmp_path / 'r.db'}")
        agent = build_agent()
        reply = await agent.ask("one", stream=storage.stream("r"))
        events = list(await reply.history.get_events())
        # Agent.resume replaces the stream's history with a prefix, then continues from it
        await agent.resume(*events[:1], stream=storage.stream("r"))
        extended = await stored(storage, "r")
        await storage.drop_history(storage.stream_id("r"))
        dropped = await stored(storage, "r")
        await storage.close()
        return extended, dropped

    extended, dropped = run(scenario())
    assert [m.role for m in extended] == [
        "user",
        "assistant",
    ]  # replaced by the prefix, then one turn
    assert dropped == []
