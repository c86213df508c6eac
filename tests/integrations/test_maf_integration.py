"""agentsession as Agent Framework's HistoryProvider and SessionStore, with no SessionManager:
real agent_framework installs, the offline client, every store, real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import warnings
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("agent_framework")

from agent_framework import Agent, AgentSession, register_state_type

from agentsession import (
    AsyncSessionManager,
    SessionBusy,
    UnserializableState,
    UnsupportedAgent,
)
from agentsession.integrations.maf import (
    SESSION_STATE_KEY,
    AgentSessionHistoryProvider,
    AgentSessionStore,
)
from agentsession.offline import user_messages_seen
from agentsession.offline.maf import OfflineChatClient, ServiceStoredOfflineChatClient, build_agent

T = TypeVar("T")
APP = Path(__file__).with_name("maf_app.py")


def run(coroutine: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coroutine

    return asyncio.run(wrapper())


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def app_agent(history: AgentSessionHistoryProvider, **kwargs: Any) -> Agent:
    return Agent(
        client=OfflineChatClient(), name="assistant", context_providers=[history], **kwargs
    )


def test_history_survives_a_restart(durable_store_url: str) -> None:
    async def first() -> None:
        history = AgentSessionHistoryProvider(durable_store_url)
        agent = app_agent(history, tools=[add])
        session = agent.create_session(session_id="conv-1")
        for text in ("hello", '/tool add {"a": 2, "b": 2}', "what is 2+2?"):
            await agent.run(text, session=session)
        await history.close()

    async def second() -> tuple[str, list[str]]:
        history = AgentSessionHistoryProvider(durable_store_url)
        agent = app_agent(history, tools=[add])
        session = agent.create_session(session_id="conv-1")  # a new process knows only the id
        response = await agent.run("what did I say earlier?", session=session)
        stored = await history.store.load("conv-1")
        await history.close()
        assert stored is not None
        return response.text, [m.role for m in stored.messages]

    run(first())
    reply, roles = run(second())
    assert user_messages_seen(reply) == 4 and "'hello'" in reply and "'what is 2+2?'" in reply
    assert (
        roles
        == ["user", "assistant", "user", "assistant", "tool", "assistant"]
        + [
            "user",
            "assistant",
        ]
        * 2
    )


def test_two_sessions_never_mix(store_url: str) -> None:
    async def scenario() -> tuple[str, str]:
        history = AgentSessionHistoryProvider(store_url)
        agent = app_agent(history)
        alice = agent.create_session(session_id="alice")
        bob = agent.create_session(session_id="bob")
        await agent.run("alice's secret", session=alice)
        reply = (await agent.run("what did I say earlier?", session=bob)).text
        await history.close()
        return reply, "secret"

    reply, secret = run(scenario())
    assert user_messages_seen(reply) == 1 and secret not in reply


def test_concurrent_runs_on_one_session_are_serialised(store_url: str) -> None:
    """The framework alone interleaves them (each reply computed on stale history)."""

    async def scenario() -> list[Any]:
        history = AgentSessionHistoryProvider(store_url)
        agent = app_agent(history)
        session = agent.create_session(session_id="busy")
        await asyncio.gather(*(agent.run(f"task {i}", session=session) for i in range(20)))
        stored = await history.store.load("busy")
        await history.close()
        assert stored is not None
        return stored.messages

    messages = run(scenario())
    assert len(messages) == 40
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert user.role == "user" and repr(user.content) in (reply.content or "")
    assert [user_messages_seen(m.content) for m in messages[1::2]] == list(range(1, 21))


@pytest.mark.slow
def test_two_processes_advancing_one_session_are_serialised(durable_store_url: str) -> None:
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

    async def stored() -> list[Any]:
        history = AgentSessionHistoryProvider(durable_store_url)
        conversation = await history.store.load("shared")
        snapshot = await AgentSessionStore(history.store).get("shared")
        await history.close()
        assert conversation is not None and snapshot is not None
        return conversation.messages

    messages = run(stored())
    assert len(messages) == 20
    # whole turns, each reply computed on every earlier turn of both processes
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert user.role == "user" and repr(user.content) in (reply.content or "")
    assert [user_messages_seen(m.content) for m in messages[1::2]] == list(range(1, 11))
    for tag in ("left", "right"):  # each process's own turns in its order
        mine = [m.content for m in messages[::2] if (m.content or "").startswith(tag)]
        assert mine == [f"{tag} message {i}" for i in range(5)]


def test_a_manager_and_the_provider_share_the_conversation_and_its_lease(
    durable_store_url: str,
) -> None:
    async def scenario() -> tuple[str, str]:
        async with AsyncSessionManager(lambda: build_agent(), durable_store_url) as manager:
            await manager.send("mixed", "from the manager")
            history = AgentSessionHistoryProvider(manager.store)
            agent = app_agent(history)
            session = agent.create_session(session_id="mixed")
            from_app = (await agent.run("from the app", session=session)).text
            from_manager = await manager.send("mixed", "what did I say earlier?")
            # the manager's lease blocks the provider's run, and the other way round
            token, _ = await manager.store.begin_turn("mixed", 30) or ("", None)
            history.turns.lock_timeout = 0.2
            with pytest.raises(SessionBusy):
                await agent.run("blocked", session=session)
            await manager.store.release("mixed", token)
            return from_app, from_manager

    from_app, from_manager = run(scenario())
    assert user_messages_seen(from_app) == 2
    assert user_messages_seen(from_manager) == 3 and "'from the app'" in from_manager


def test_a_failed_run_records_nothing_and_frees_the_session(tmp_path: Path) -> None:
    class Down(OfflineChatClient):
        def _answer(self, messages: Any, options: Any) -> Any:
            raise RuntimeError("model down")

    async def scenario() -> tuple[int, str]:
        history = AgentSessionHistoryProvider(f"sqlite:///{tmp_path / 'f.db'}", lock_timeout=2)
        session = AgentSession(session_id="f")
        await app_agent(history).run("one", session=session)
        failing = Agent(client=Down(), name="assistant", context_providers=[history])
        with pytest.raises(RuntimeError, match="model down"):
            await failing.run("lost", session=session)
        reply = (await app_agent(history).run("two", session=session)).text
        stored = await history.store.load("f")
        await history.close()
        assert stored is not None
        return len(stored.messages), reply

    count, reply = run(scenario())
    assert count == 4 and user_messages_seen(reply) == 2


def test_a_client_that_keeps_history_on_its_service_is_refused(tmp_path: Path) -> None:
    history = AgentSessionHistoryProvider(f"sqlite:///{tmp_path / 's.db'}")
    agent = Agent(
        client=ServiceStoredOfflineChatClient(), name="assistant", context_providers=[history]
    )
    with pytest.raises(UnsupportedAgent, match="store=False"):
        run(agent.run("hello", session=agent.create_session(session_id="s")))
    stored = Agent(
        client=ServiceStoredOfflineChatClient(),
        name="assistant",
        context_providers=[history],
        default_options={"store": False},
    )
    reply = run(stored.run("hello", session=stored.create_session(session_id="s")))
    assert user_messages_seen(reply.text) == 1


class Preferences:
    """A custom state type, registered the framework's way."""

    TYPE = "agentsession-tests.preferences"

    def __init__(self, language: str) -> None:
        self.language = language

    def to_dict(self) -> dict[str, Any]:
        # early 1.x releases restore a value only if its own dict names its type
        return {"type": self.TYPE, "language": self.language}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preferences:
        return cls(data["language"])


try:
    register_state_type(Preferences, type_id=Preferences.TYPE)
except TypeError:  # early 1.x: the class alone, its id from _get_type_identifier()
    Preferences._get_type_identifier = classmethod(lambda cls: cls.TYPE)  # type: ignore[attr-defined]
    register_state_type(Preferences)


def test_session_state_round_trips_through_any_store(store_url: str) -> None:
    async def scenario() -> AgentSession | None:
        sessions = AgentSessionStore(store_url)
        session = AgentSession(session_id="state")
        session.state["plain"] = {"count": 3, "tags": ["a", "b"], "ratio": 0.5}
        session.state["prefs"] = Preferences("fr")
        await sessions.set("state", session)
        restored = await AgentSessionStore(sessions.store).get("state")
        await sessions.store.close()
        return restored

    restored = run(scenario())
    assert restored is not None and restored.session_id == "state"
    assert restored.state["plain"] == {"count": 3, "tags": ["a", "b"], "ratio": 0.5}
    assert isinstance(restored.state["prefs"], Preferences)
    assert restored.state["prefs"].language == "fr"


@pytest.mark.parametrize(
    "value, where",
    [
        (object(), "state.bad"),
        ({"nested": [1, float("nan")]}, "state.bad.nested[1]"),
        ({"__pickled__": "gASV...", "__type__": "x"}, "workflow checkpoint"),
    ],
)
def test_state_that_is_not_json_is_refused_and_nothing_is_written(
    value: Any, where: str, tmp_path: Path
) -> None:
    async def scenario() -> Any:
        sessions = AgentSessionStore(f"sqlite:///{tmp_path / 'bad.db'}")
        good = AgentSession(session_id="s")
        good.state["ok"] = 1
        await sessions.set("s", good)
        bad = AgentSession(session_id="s")
        bad.state["bad"] = value
        with pytest.raises(UnserializableState, match=where.replace("[", r"\[")):
            await sessions.set("s", bad)
        info = await sessions.store.info("s")
        await sessions.store.close()
        assert info is not None
        return info.metadata[SESSION_STATE_KEY]["state"]

    with warnings.catch_warnings():
        # newer releases warn that to_dict() leaves an unsupported value unchanged
        warnings.simplefilter("ignore", RuntimeWarning)
        assert run(scenario()) == {"ok": 1}


def test_delete_removes_history_and_state(tmp_path: Path) -> None:
    async def scenario() -> tuple[AgentSession | None, Any]:
        history = AgentSessionHistoryProvider(f"sqlite:///{tmp_path / 'd.db'}")
        sessions = AgentSessionStore(history.store)
        agent = app_agent(history)
        session = agent.create_session(session_id="d")
        await agent.run("hello", session=session)
        await sessions.set("d", session)
        await sessions.delete("d")
        gone = await sessions.get("d"), await history.store.load("d")
        await history.close()
        return gone

    assert run(scenario()) == (None, None)
