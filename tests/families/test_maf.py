"""The maf family against the installed agent-framework-core, driven by the offline client."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("agent_framework")

import agent_framework
from agent_framework import Agent, InMemoryHistoryProvider
from packaging.version import Version

from agentsession import (
    AsyncSessionManager,
    FamilyError,
    Message,
    ToolCall,
    UnsupportedAgent,
    UnsupportedVersion,
)
from agentsession.families import detect, family_of
from agentsession.families._gates import MAF_VERSION_FIXED
from agentsession.families.maf import MafDriver, MafFamily, to_canonical, to_native
from agentsession.offline import user_messages_seen
from agentsession.offline.maf import OfflineChatClient, ServiceStoredOfflineChatClient, build_agent

T = TypeVar("T")
FAMILY = MafFamily()
ADD_2_2 = '/tool add {"a": 2, "b": 2}'


def run(coroutine: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coroutine

    return asyncio.run(wrapper())


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def fail(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


def records(messages: list[Message]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.to_dict().items() if k != "created_at"} for m in messages]


def test_the_version_comes_from_the_distribution_when_the_module_reports_a_placeholder() -> None:
    installed = Version(importlib.metadata.version("agent-framework-core"))
    reported = FAMILY.module_version()
    assert reported is not None and Version(reported) == installed
    if installed < MAF_VERSION_FIXED:  # 1.0.0 … 1.12.1: the module says 0.0.0
        assert agent_framework.__version__ == "0.0.0"
    info = {i.family: i for i in detect()}["maf"]
    assert info.supported and Version(info.version) == installed
    assert info.distributions == ("agent-framework-core",)


def test_a_placeholder_version_is_read_from_the_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_framework, "__version__", "0.0.0")
    assert FAMILY.module_version() == importlib.metadata.version("agent-framework-core")


@pytest.mark.parametrize("version", ["1.0.0b251001", "1.0.0b260210", "1.0.0rc6", "0.9.0"])
def test_pre_1_0_agent_framework_is_refused(version: str) -> None:
    with pytest.raises(UnsupportedVersion, match=r">=1\.0\.0"):
        FAMILY.check_version(version)


def test_a_pre_1_0_install_without_agent_session_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_framework, "AgentSession", None)
    with pytest.raises(UnsupportedVersion, match="AgentThread"):
        FAMILY.drive(build_agent())


def test_agents_are_recognised_without_importing_by_type() -> None:
    assert family_of(build_agent()).name == "maf"
    assert not FAMILY.owns(object())


def test_text_turns_read_the_whole_history() -> None:
    async def scenario() -> list[str]:
        driver = FAMILY.drive(build_agent())
        return [(await driver.run_turn(text)).reply for text in ("one", "two", "earlier?")]

    one, _, three = run(scenario())
    assert user_messages_seen(one) == 1 and user_messages_seen(three) == 3
    assert "'one'" in three and "'two'" in three


def test_a_tool_turn_is_recorded_as_call_result_reply() -> None:
    async def scenario() -> tuple[list[Message], str]:
        driver = FAMILY.drive(build_agent(tools=[add]))
        turn = await driver.run_turn(ADD_2_2, sender="ada")
        fresh = FAMILY.drive(build_agent(tools=[add]))
        stored = [Message.from_json(m.to_json()) for m in await driver.export_history()]
        await fresh.import_history(stored)
        assert records(await fresh.export_history()) == records(stored)
        return list(turn), (await fresh.run_turn("what did I say earlier?")).reply

    turn, later = run(scenario())
    assert [m.role for m in turn] == ["user", "assistant", "tool", "assistant"]
    assert turn[0].name == "ada"
    assert turn[1].tool_calls == (ToolCall("call_1", "add", '{"a": 2, "b": 2}'),)
    assert turn[2].tool_call_id == "call_1" and turn[2].name == "add" and turn[2].content == "4"
    assert turn[3].content == "I have seen 1 user message. Tool add returned: 4"
    assert user_messages_seen(later) == 2


def test_a_failing_tool_is_an_error_result() -> None:
    async def scenario() -> list[Message]:
        driver = FAMILY.drive(build_agent(tools=[fail]))
        return list(await driver.run_turn('/tool fail {"reason": "no"}'))

    turn = run(scenario())
    assert turn[2].role == "tool" and turn[2].is_error
    assert "failed with" in (turn[3].content or "")


def test_conversion_round_trips_tool_calls_and_results() -> None:
    history = [
        Message("user", "add", name="ada"),
        Message(
            "assistant",
            None,
            name="assistant",
            tool_calls=(ToolCall("c1", "add", '{"a": 1}'), ToolCall("c2", "add", "{}")),
        ),
        Message("tool", "1", name="add", tool_call_id="c1"),
        Message("tool", "boom", name="add", tool_call_id="c2", is_error=True),
        Message("assistant", "done", name="assistant"),
        Message("system", "remember this"),
    ]
    native = to_native(history)
    assert [m.role for m in native] == ["user", "assistant", "tool", "assistant", "system"]
    assert len(native[2].contents) == 2  # one tool message per batch, as the framework writes it
    assert records(to_canonical(native)) == records(history)


def test_an_agent_with_its_own_history_provider_is_refused() -> None:
    class Elsewhere(InMemoryHistoryProvider):
        pass

    agent = build_agent(context_providers=[InMemoryHistoryProvider(), Elsewhere("elsewhere")])
    with pytest.raises(UnsupportedAgent, match="AgentSessionHistoryProvider"):
        FAMILY.drive(agent)


def test_an_explicit_in_memory_history_provider_is_used() -> None:
    provider = InMemoryHistoryProvider("mine")
    driver = FAMILY.drive(build_agent(context_providers=[provider]))
    assert driver.history is provider


def test_a_client_that_stores_on_its_service_is_told_not_to() -> None:
    agent = Agent(client=ServiceStoredOfflineChatClient(), name="assistant")
    driver = FAMILY.drive(agent)
    assert driver.options == {"store": False}

    async def scenario() -> str:
        await driver.run_turn("one")
        return (await driver.run_turn("two")).reply

    assert user_messages_seen(run(scenario())) == 2
    assert driver.session.service_session_id is None


def test_store_true_is_refused() -> None:
    agent = Agent(
        client=ServiceStoredOfflineChatClient(), name="assistant", default_options={"store": True}
    )
    with pytest.raises(UnsupportedAgent, match="store=True"):
        FAMILY.drive(agent)


def test_a_conversation_kept_on_the_service_fails_the_turn_and_records_nothing(
    tmp_path: Path,
) -> None:
    class IgnoresStoreFalse(OfflineChatClient):
        def _answer(self, messages: Any, options: Any) -> Any:
            response = super()._answer(messages, options)
            response.conversation_id = "resp_123"
            return response

    async def scenario() -> list[Message]:
        url = f"sqlite:///{tmp_path / 'maf.db'}"
        factory = lambda: Agent(client=IgnoresStoreFalse(), name="assistant")  # noqa: E731
        async with AsyncSessionManager(factory, url) as manager:
            session = manager.session()
            with pytest.raises(FamilyError, match="kept this conversation on its service"):
                await session.send("hello")
            return await session.history()

    assert run(scenario()) == []


def test_workflows_are_refused() -> None:
    class NotAnAgent(agent_framework.BaseAgent):
        pass

    with pytest.raises(UnsupportedAgent, match="pickle"):
        FAMILY.drive(NotAnAgent(name="x"))


def test_driver_type() -> None:
    assert isinstance(FAMILY.drive(build_agent()), MafDriver)


def test_a_streamed_turn_yields_the_reply_as_deltas_and_is_stored_whole(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Any], int]:
        url = f"sqlite:///{tmp_path / 'stream.db'}"
        async with AsyncSessionManager(lambda: build_agent(tools=[add]), url) as manager:
            session = manager.session()
            events = [event async for event in session.stream(ADD_2_2)]
            return events, len(await session.history())

    events, stored = run(scenario())
    kinds = [event.to_dict()["type"] for event in events]
    assert kinds[:2] == ["start", "delta"] and kinds[-1] == "end"
    assert "".join(e.text for e in events if e.type == "delta").endswith("Tool add returned: 4")
    assert [e.kind for e in events if e.type == "message"] == [
        "message",
        "tool_call",
        "tool_result",
        "message",
    ]
    assert stored == 4
