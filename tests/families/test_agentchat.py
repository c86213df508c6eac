"""The agentchat family against the installed autogen-agentchat, driven by the offline model."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import pytest

pytest.importorskip("autogen_agentchat")

from autogen_agentchat.agents import AssistantAgent, UserProxyAgent
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core.model_context import (
    BufferedChatCompletionContext,
    UnboundedChatCompletionContext,
)
from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage
from packaging.version import Version

from agentsession import Message, ToolCall, UnsupportedAgent, UnsupportedVersion
from agentsession.families._gates import AGENTCHAT_TOOL_RESULT_NAME, at_least
from agentsession.families.agentchat import (
    AgentChatDriver,
    AgentChatFamily,
    to_canonical,
    to_native,
)
from agentsession.offline import user_messages_seen
from agentsession.offline.agentchat import OfflineChatCompletionClient, build_agent

T = TypeVar("T")
FAMILY = AgentChatFamily()
INSTALLED = FAMILY.check_version()
ADD_2_2 = '/tool add {"a": 2, "b": 2}'


def run(coroutine: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coroutine

    return asyncio.run(wrapper())


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def new_agent(reflect: bool | None = None, **kwargs: Any) -> AssistantAgent:
    if reflect is not None:
        kwargs["reflect_on_tool_use"] = reflect
    return build_agent(tools=[add], **kwargs)


def drive(agent: AssistantAgent) -> AgentChatDriver:
    return FAMILY.drive(agent)


def records(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Stored records without the clock, so two histories can be compared."""
    return [{k: v for k, v in m.to_dict().items() if k != "created_at"} for m in messages]


def stored(messages: Sequence[Message]) -> list[Message]:
    """What a store gives back: each message through its JSON record."""
    return [Message.from_json(m.to_json()) for m in messages]


async def turns(driver: AgentChatDriver, *texts: str) -> list[Message]:
    added: list[Message] = []
    for text in texts:
        added += await driver.run_turn(text)
    return added


# -- turns ------------------------------------------------------------------------------


def test_a_text_turn_is_the_user_message_then_the_reply() -> None:
    turn = run(drive(new_agent()).run_turn("hello", sender="ada"))
    assert [(m.role, m.name) for m in turn] == [("user", "ada"), ("assistant", "assistant")]
    assert turn[0].content == "hello"
    assert turn[1].content == "I have seen 1 user message. You said: 'hello'"


@pytest.mark.parametrize("reflect", [False, True], ids=["summary", "reflect"])
def test_a_tool_turn_lists_call_result_and_reply(reflect: bool) -> None:
    turn = run(drive(new_agent(reflect)).run_turn(ADD_2_2))
    user, call, result, reply = turn
    assert (user.role, user.content) == ("user", ADD_2_2)
    assert call.role == "assistant" and call.content is None
    assert call.tool_calls == (ToolCall("call_1", "add", '{"a": 2, "b": 2}'),)
    assert (result.role, result.tool_call_id, result.name, result.content) == (
        "tool",
        "call_1",
        "add",
        "4",
    )
    assert not result.is_error
    assert reply.role == "assistant"
    # without reflection AutoGen answers with the tool-call summary ("{result}" by default)
    expected = "I have seen 1 user message. Tool add returned: 4" if reflect else "4"
    assert reply.content == expected


def test_a_failing_tool_is_a_tool_message_with_the_error() -> None:
    turn = run(drive(new_agent(True)).run_turn("/tool missing {}"))
    result = turn[2]
    assert result.role == "tool" and result.name == "missing"
    assert "missing" in (result.content or "")
    # FunctionExecutionResult.is_error exists from 0.4.8; older results cannot say so
    assert result.is_error is at_least(INSTALLED, AGENTCHAT_TOOL_RESULT_NAME)


# -- the invariant: what run_turn returns is what export_history gives -------------------


@pytest.mark.parametrize("reflect", [False, True], ids=["summary", "reflect"])
@pytest.mark.parametrize("window", [None, 2], ids=["unbounded", "buffered-2"])
def test_turns_concatenated_equal_the_exported_history(reflect: bool, window: int | None) -> None:
    kwargs: dict[str, Any] = {}
    if window:
        # the model sees only a window, but the conversation is still every message
        kwargs["model_context"] = BufferedChatCompletionContext(buffer_size=window)
    driver = drive(new_agent(reflect, **kwargs))
    added = run(turns(driver, "hello", ADD_2_2, "/tool missing {}", "what did I say earlier?"))
    exported = run(driver.export_history())
    assert len(exported) == 2 + 4 + 4 + 2
    assert records(added) == records(exported)


def test_a_turn_does_not_dump_the_whole_state() -> None:
    agent = new_agent(True)
    driver = drive(agent)
    run(turns(driver, "hello"))
    dumps = 0
    save_state = agent.save_state

    async def counting_save_state() -> Any:
        nonlocal dumps
        dumps += 1
        return await save_state()

    agent.save_state = counting_save_state  # type: ignore[method-assign]
    run(turns(driver, "again", ADD_2_2, "and again"))
    assert dumps == 0


# -- persistence across fresh agents -------------------------------------------------------


def test_three_turns_restore_into_a_fresh_agent() -> None:
    first = drive(new_agent())
    run(turns(first, "hello", "how are you?", "what is 2+2?"))
    history = stored(run(first.export_history()))
    del first

    fresh = drive(new_agent())
    run(fresh.import_history(history))
    reply = run(fresh.run_turn("and now?"))[-1].content or ""
    assert user_messages_seen(reply) == 4
    assert len(run(fresh.export_history())) == 8


@pytest.mark.parametrize("reflect", [False, True], ids=["summary", "reflect"])
def test_tool_turns_restore_and_the_conversation_goes_on(reflect: bool) -> None:
    first = drive(new_agent(reflect))
    history = stored(run(turns(first, "hello", ADD_2_2)))

    fresh = drive(new_agent(reflect))
    run(fresh.import_history(history))
    assert records(run(fresh.export_history())) == records(history)
    after = run(turns(fresh, ADD_2_2.replace("2}", "5}"), "and now?"))
    assert after[3].content == (
        "I have seen 3 user messages. Tool add returned: 7" if reflect else "7"
    )
    assert user_messages_seen(after[-1].content or "") == 4
    assert records(run(fresh.export_history())) == records([*history, *after])


def test_recall_quotes_earlier_turns_after_a_restore() -> None:
    first = drive(new_agent())
    history = stored(run(turns(first, "my name is Ada", "I live in Paris")))
    fresh = drive(new_agent())
    run(fresh.import_history(history))
    reply = run(fresh.run_turn("what did I say earlier?"))[-1].content or ""
    assert "'my name is Ada'" in reply and "'I live in Paris'" in reply


def test_initial_messages_of_the_factory_stay_configuration() -> None:
    def seeded() -> AssistantAgent:
        seed: list[LLMMessage] = [
            UserMessage(content="seed question", source="user"),
            AssistantMessage(content="seed answer", source="assistant"),
        ]
        return new_agent(model_context=UnboundedChatCompletionContext(initial_messages=seed))

    first = drive(seeded())
    added = run(turns(first, "hello"))
    assert user_messages_seen(added[-1].content or "") == 2  # the seed counts for the model
    assert records(run(first.export_history())) == records(added)  # but is not history

    fresh = drive(seeded())
    run(fresh.import_history(stored(added)))
    reply = run(fresh.run_turn("and now?"))[-1].content or ""
    assert user_messages_seen(reply) == 3


def test_system_messages_in_the_context_round_trip() -> None:
    history = [
        Message(role="system", content="Relevant memory: likes tea"),
        Message(role="user", content="hi", name="user"),
        Message(role="assistant", content="hello", name="assistant"),
    ]
    driver = drive(new_agent())
    run(driver.import_history(history))
    assert records(run(driver.export_history())) == records(history)


def test_a_thought_travels_in_metadata() -> None:
    history = [
        Message(role="user", content="hi", name="user"),
        Message(role="assistant", content="hello", name="assistant", metadata={"thought": "hm"}),
    ]
    driver = drive(new_agent())
    run(driver.import_history(history))
    exported = run(driver.export_history())
    # AssistantMessage.thought exists from 0.4.8; older versions drop the unknown field
    has_thought = "thought" in AssistantMessage.model_fields
    assert exported[1].metadata == ({"thought": "hm"} if has_thought else {})


def test_two_drivers_never_see_each_other() -> None:
    alice, bob = drive(new_agent()), drive(new_agent())

    async def both() -> None:
        await asyncio.gather(
            turns(alice, "alice: my secret is 1", "what did I say earlier?"),
            turns(bob, "bob: hi", "what did I say earlier?"),
        )

    run(both())
    alice_text = json.dumps(records(run(alice.export_history())))
    bob_text = json.dumps(records(run(bob.export_history())))
    assert "alice" in alice_text and "bob" not in alice_text
    assert "bob" in bob_text and "alice" not in bob_text


# -- tool results across versions ----------------------------------------------------------

# the agent state of autogen-agentchat 0.4.2 after a tool turn: results carry no name/is_error
STATE_0_4_2: list[dict[str, Any]] = [
    {"content": "2+2?", "source": "user", "type": "UserMessage"},
    {
        "content": [{"id": "call_1", "arguments": '{"a": 2, "b": 2}', "name": "add"}],
        "source": "assistant",
        "type": "AssistantMessage",
    },
    {"content": [{"content": "4", "call_id": "call_1"}], "type": "FunctionExecutionResultMessage"},
    {"content": "the tool said 4", "source": "assistant", "type": "AssistantMessage"},
]


def test_a_0_4_2_tool_result_imports_into_the_installed_version() -> None:
    history = to_canonical(STATE_0_4_2)
    assert (history[2].name, history[2].is_error) == ("add", False)  # named after its call
    nameless = [
        Message(
            role=m.role,
            content=m.content,
            name=None if m.role == "tool" else m.name,
            tool_calls=m.tool_calls,
            tool_call_id=m.tool_call_id,
        )
        for m in history
    ]
    for imported in (history, nameless):
        driver = drive(new_agent())
        run(driver.import_history(imported))
        state = run(driver.agent.save_state())
        result = state["llm_context"]["messages"][2]["content"][0]
        if at_least(INSTALLED, AGENTCHAT_TOOL_RESULT_NAME):
            assert (result["name"], result["is_error"]) == ("add", False)
        assert user_messages_seen(run(driver.run_turn("next"))[-1].content or "") == 2


def test_native_tool_results_follow_the_version_gate() -> None:
    history = to_canonical(STATE_0_4_2)
    old = to_native(history, Version("0.4.7"))[2]["content"][0]
    new = to_native(history, Version("0.4.8"))[2]["content"][0]
    assert old == {"content": "4", "call_id": "call_1"}
    assert new == {"content": "4", "call_id": "call_1", "name": "add", "is_error": False}


def test_consecutive_tool_messages_become_one_result_message() -> None:
    calls = (ToolCall("c1", "add", "{}"), ToolCall("c2", "add", "{}"))
    history = [
        Message(role="user", content="two at once", name="user"),
        Message(role="assistant", content=None, name="assistant", tool_calls=calls),
        Message(role="tool", content="1", name="add", tool_call_id="c1"),
        Message(role="tool", content="2", name="add", tool_call_id="c2", is_error=True),
        Message(role="assistant", content="done", name="assistant"),
    ]
    native = to_native(history, INSTALLED)
    assert [m["type"] for m in native] == [
        "UserMessage",
        "AssistantMessage",
        "FunctionExecutionResultMessage",
        "AssistantMessage",
    ]
    assert [r["call_id"] for r in native[2]["content"]] == ["c1", "c2"]
    expected = (
        history
        if at_least(INSTALLED, AGENTCHAT_TOOL_RESULT_NAME)
        else [
            m
            if m.role != "tool"
            else Message(role="tool", content=m.content, name=m.name, tool_call_id=m.tool_call_id)
            for m in history
        ]
    )
    driver = drive(new_agent())
    run(driver.import_history(history))
    assert records(run(driver.export_history())) == records(expected)


# -- recognising agents and versions ----------------------------------------------------------


class ConversableAgent:  # looks like a legacy agent, from the legacy module path
    __module__ = "autogen.agentchat.conversable_agent"


def test_owns_recognises_agentchat_objects_only() -> None:
    assert FAMILY.owns(new_agent())
    assert FAMILY.owns(RoundRobinGroupChat([new_agent()]))
    for other in (object(), ConversableAgent(), "assistant", None, OfflineChatCompletionClient()):
        assert not FAMILY.owns(other)


@pytest.mark.slow
def test_owns_does_not_import_autogen_agentchat() -> None:
    code = (
        "import sys\n"
        "from agentsession.families.agentchat import AgentChatFamily\n"
        "assert not AgentChatFamily().owns(object())\n"
        "assert 'autogen_agentchat' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_other_agents_are_refused_with_the_fix() -> None:
    with pytest.raises(UnsupportedAgent, match="return an AssistantAgent"):
        FAMILY.drive(UserProxyAgent("user"))


def test_a_team_is_driven_by_the_team_driver() -> None:
    assert type(FAMILY.drive(RoundRobinGroupChat([new_agent()]))).__name__ == "AgentChatTeamDriver"


@pytest.mark.parametrize("version", ["0.2.40", "0.3.0"])
def test_old_versions_name_the_fix(version: str) -> None:
    with pytest.raises(UnsupportedVersion, match=r"autogen-agentchat>=0\.4\.2"):
        FAMILY.check_version(version)


def test_the_driver_reads_the_agents_own_model_context() -> None:
    context = BufferedChatCompletionContext(buffer_size=3)
    assert drive(new_agent(model_context=context)).model_context is context


# -- the offline model ------------------------------------------------------------------------


def test_the_offline_client_takes_any_create_keyword_and_streams() -> None:
    client = OfflineChatCompletionClient()
    messages: list[LLMMessage] = [
        SystemMessage(content="be brief"),
        UserMessage(content="hi", source="user"),
    ]
    result = run(client.create(messages, tool_choice="auto", some_future_keyword=1))
    assert result.content == "I have seen 1 user message. You said: 'hi'"

    async def stream() -> list[Any]:
        return [chunk async for chunk in client.create_stream(messages)]

    *text, final = run(stream())
    assert text == ["I have seen ", "1 user message. ", "You said: 'hi'"]  # 3 words a chunk
    assert "".join(text) == result.content and final.content == result.content
    assert client.model_info["function_calling"] is True
    assert client.total_usage().prompt_tokens > 0
