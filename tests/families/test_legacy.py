"""The legacy family driver against the real installed ``autogen`` (0.2.x, ag2 0.x, autogen 0.14)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

autogen = pytest.importorskip("autogen")
if not hasattr(autogen, "ConversableAgent"):
    pytest.skip("'import autogen' here is not the legacy API", allow_module_level=True)

from packaging.version import Version  # noqa: E402

from agentsession import FamilyError, Message, ToolCall, UnsupportedAgent, UnsupportedVersion  # noqa: E402
from agentsession.families import driver_for  # noqa: E402
from agentsession.families.legacy import (  # noqa: E402
    LegacyDriver,
    LegacyFamily,
    reply_cache_problem,
    to_canonical,
    to_native,
)
from agentsession.offline import user_messages_seen  # noqa: E402
from agentsession.offline.legacy import (  # noqa: E402
    OfflineModelClient,
    build_assistant,
    build_pair,
    offline_llm_config,
)

INSTALLED = Version(str(autogen.__version__))


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def slow_add(a: int, b: int) -> int:
    """Add two integers, asynchronously."""
    await asyncio.sleep(0)
    return a + b


def fail(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


def drive(agent: Any) -> LegacyDriver:
    driver = driver_for(agent)
    assert isinstance(driver, LegacyDriver)
    return driver


def strip(messages: list[Message]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.to_dict().items() if k != "created_at"} for m in messages]


def views(driver: LegacyDriver) -> tuple[str, str]:
    """Both agents' native histories, as AutoGen keeps them."""
    mine = driver.agent.chat_messages[driver.user]
    theirs = driver.user.chat_messages[driver.agent]
    return json.dumps(mine, sort_keys=True), json.dumps(theirs, sort_keys=True)


def reply_of(turn: list[Message]) -> str:
    assert turn[-1].role == "assistant"
    return turn[-1].content or ""


# -- turns ---------------------------------------------------------------------------------


def test_plain_text_turns() -> None:
    async def run() -> list[list[Message]]:
        driver = drive(build_assistant())
        return [await driver.run_turn(text) for text in ("hello", "how are you?")]

    first, second = asyncio.run(run())
    assert [(m.role, m.name) for m in first] == [("user", "user"), ("assistant", "assistant")]
    assert first[0].content == "hello"
    assert user_messages_seen(reply_of(first)) == 1
    assert user_messages_seen(reply_of(second)) == 2
    assert "'how are you?'" in reply_of(second)


def test_three_turns_then_fresh_agents_remember() -> None:
    async def run() -> tuple[str, int]:
        driver = drive(build_assistant())
        for text in ("hello", "how are you?", "what is 2+2?"):
            await driver.run_turn(text)
        saved = [m.to_json() for m in await driver.export_history()]
        del driver
        gc.collect()

        fresh = drive(build_assistant())
        await fresh.import_history([Message.from_json(t) for t in saved])
        reply = reply_of(await fresh.run_turn("and now?"))
        return reply, len(await fresh.export_history())

    reply, length = asyncio.run(run())
    assert user_messages_seen(reply) == 4
    assert length == 8


def test_the_recall_question_quotes_earlier_turns() -> None:
    async def run() -> str:
        driver = drive(build_assistant())
        await driver.run_turn("my name is Ada")
        await driver.run_turn("I like tea")
        return reply_of(await driver.run_turn("what did I say earlier?"))

    reply = asyncio.run(run())
    assert user_messages_seen(reply) == 3
    assert "'my name is Ada'" in reply and "'I like tea'" in reply


def test_the_sender_names_the_user_message() -> None:
    async def run() -> tuple[list[Message], list[Message]]:
        driver = drive(build_assistant())
        turn = await driver.run_turn("hi", sender="alice")
        return turn, await driver.export_history()

    turn, history = asyncio.run(run())
    assert turn[0].name == "alice" and history[0].name == "alice"


def test_a_turn_returns_only_its_own_messages_after_a_long_history() -> None:
    history = [
        Message(role, f"{role} {i}", name=role)
        for i in range(300)
        for role in ("user", "assistant")
    ]

    async def run() -> list[Message]:
        driver = drive(build_assistant())
        await driver.import_history(history)
        return await driver.run_turn("one more")

    turn = asyncio.run(run())
    assert [m.role for m in turn] == ["user", "assistant"]
    assert user_messages_seen(reply_of(turn)) == 301


def test_two_drivers_never_share_messages() -> None:
    async def run() -> tuple[str, str]:
        alice, bob = drive(build_assistant()), drive(build_assistant())
        await asyncio.gather(alice.run_turn("alice's secret is 1"), bob.run_turn("bob here"))
        reply = reply_of(await bob.run_turn("what did I say earlier?"))
        return reply, str([m.content for m in await bob.export_history()])

    reply, bob_history = asyncio.run(run())
    assert user_messages_seen(reply) == 2 and "secret" not in reply + bob_history


def test_no_human_input_is_ever_read() -> None:
    # pytest fails any read from stdin; an ALWAYS agent asks for input on every reply
    assistant = autogen.ConversableAgent(
        "assistant", llm_config=offline_llm_config(), human_input_mode="ALWAYS"
    )
    assistant.register_model_client(model_client_cls=OfflineModelClient)
    turn = asyncio.run(drive(assistant).run_turn("hello"))
    assert user_messages_seen(reply_of(turn)) == 1


# -- tools ---------------------------------------------------------------------------------


def test_a_tool_call_turn_round_trips_into_fresh_agents() -> None:
    async def run() -> tuple[list[Message], list[Message], list[Message], str]:
        driver = drive(build_pair(tools=[add]))
        added = await driver.run_turn('/tool add {"a": 2, "b": 2}')
        history = await driver.export_history()
        fresh = drive(build_pair(tools=[add]))
        await fresh.import_history(history)
        reimported = await fresh.export_history()
        following = reply_of(await fresh.run_turn('/tool add {"a": 40, "b": 2}'))
        return added, history, reimported, following

    added, history, reimported, following = asyncio.run(run())
    assert [m.role for m in added] == ["user", "assistant", "tool", "assistant"]
    call = added[1].tool_calls[0]
    assert (call.name, call.arguments) == ("add", '{"a": 2, "b": 2}')
    assert added[2].tool_call_id == call.id and added[2].name == "add" and added[2].content == "4"
    assert "Tool add returned: 4" in reply_of(added)
    assert strip(reimported) == strip(history)
    assert "Tool add returned: 42" in following and user_messages_seen(following) == 2


def test_restored_agents_behave_exactly_like_the_originals() -> None:
    script = ["hi", '/tool add {"a": 2, "b": 3}', "what did I say earlier?"]
    following = ['/tool add {"a": 5, "b": 6}', "and before that?"]

    async def run() -> None:
        original = drive(build_pair(tools=[add]))
        for text in script:
            await original.run_turn(text)
        history = await original.export_history()

        restored = drive(build_pair(tools=[add]))
        await restored.import_history(history)
        assert strip(await restored.export_history()) == strip(history)
        assert views(restored) == views(original)  # both agents' native views, not only ours

        for text in following:
            expected, got = await original.run_turn(text), await restored.run_turn(text)
            assert strip(got) == strip(expected)
        assert views(restored) == views(original)

    asyncio.run(run())


def test_run_turn_outputs_add_up_to_the_export() -> None:
    async def run() -> tuple[list[Message], list[Message]]:
        driver = drive(build_pair(tools=[add]))
        turns: list[Message] = []
        for text in ("hi", '/tool add {"a": 2, "b": 3}', "thanks"):
            turns += await driver.run_turn(text)
        return turns, await driver.export_history()

    turns, exported = asyncio.run(run())
    assert strip(turns) == strip(exported)


def test_an_async_tool_runs_in_the_turn_thread() -> None:
    turn = asyncio.run(
        drive(build_pair(tools=[slow_add])).run_turn('/tool slow_add {"a": 1, "b": 2}')
    )
    assert turn[2].content == "3" and "returned: 3" in reply_of(turn)


def test_a_failing_tool_is_reported_not_raised() -> None:
    turn = asyncio.run(drive(build_pair(tools=[fail])).run_turn('/tool fail {"reason": "nope"}'))
    assert [m.role for m in turn] == ["user", "assistant", "tool", "assistant"]
    assert "nope" in (turn[2].content or "")


def test_tool_rounds_are_bounded() -> None:
    def always_call_add(
        recipient: Any, messages: Any = None, sender: Any = None, config: Any = None
    ) -> tuple[bool, dict[str, Any]]:
        call = {"name": "add", "arguments": '{"a": 1, "b": 1}'}
        tool_call = {"id": f"call_{len(messages or ())}", "type": "function", "function": call}
        return True, {"content": None, "tool_calls": [tool_call]}

    looper = autogen.ConversableAgent(
        "looper", llm_config=False, human_input_mode="NEVER", code_execution_config=False
    )
    looper.register_reply([autogen.Agent, None], always_call_add)
    user = autogen.ConversableAgent(
        "user", llm_config=False, human_input_mode="NEVER", code_execution_config=False
    )
    user.register_function(function_map={"add": add})
    with pytest.raises(FamilyError, match="more than 10 tool rounds"):
        asyncio.run(drive((user, looper)).run_turn("go"))


def test_a_user_proxy_that_refuses_to_run_tools_is_named() -> None:
    assistant = autogen.ConversableAgent(
        "assistant", llm_config=offline_llm_config(), human_input_mode="NEVER"
    )
    user = autogen.ConversableAgent(
        "user",
        llm_config=False,
        human_input_mode="NEVER",
        code_execution_config=False,
        max_consecutive_auto_reply=0,
    )
    autogen.register_function(add, caller=assistant, executor=user, description="add")
    assistant.register_model_client(model_client_cls=OfflineModelClient)
    with pytest.raises(FamilyError, match="max_consecutive_auto_reply"):
        asyncio.run(drive((user, assistant)).run_turn('/tool add {"a": 1, "b": 1}'))


def test_native_tool_results_group_like_autogen_writes_them() -> None:
    canonical = [
        Message("user", "two tools", name="user"),
        Message(
            "assistant",
            None,
            name="assistant",
            tool_calls=(ToolCall("a", "x", "{}"), ToolCall("b", "y", "{}")),
        ),
        Message("tool", "1", name="x", tool_call_id="a"),
        Message("tool", "2", name="y", tool_call_id="b"),
        Message("assistant", "done", name="assistant"),
    ]
    native = to_native(canonical, "assistant", "user")
    assert len(native) == 4
    assert native[2] == {
        "content": "1\n\n2",
        "tool_responses": [
            {"tool_call_id": "a", "role": "tool", "content": "1"},
            {"tool_call_id": "b", "role": "tool", "content": "2"},
        ],
        "role": "tool",
        "name": "user",
    }
    assert strip(to_canonical(native, "assistant", "user")) == strip(canonical)


def test_the_old_function_call_form_round_trips() -> None:
    native: list[dict[str, Any]] = [
        {"content": "go", "role": "user", "name": "user"},
        {"content": None, "function_call": {"name": "add", "arguments": "{}"}, "role": "assistant"},
        {"content": "2", "role": "function", "name": "add"},
        {"content": "it is 2", "role": "assistant", "name": "assistant"},
    ]
    canonical = to_canonical(native, "assistant", "user")
    assert canonical[2].role == "tool" and canonical[2].name == "add"
    assert to_native(canonical, "assistant", "user") == native


# -- side effects --------------------------------------------------------------------------


def test_turns_print_nothing_and_write_no_cache(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def run() -> None:
        driver = drive(build_pair(tools=[add, fail]))
        await driver.run_turn("hello")
        await driver.run_turn('/tool add {"a": 1, "b": 1}')
        await driver.run_turn('/tool fail {"reason": "loud?"}')

    capfd.readouterr()
    asyncio.run(run())
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == ""
    assert not (tmp_path / ".cache").exists()


def test_silencing_stays_inside_the_turn() -> None:
    # a ContextVar, not a swapped sys.stdout: other threads and later code still print
    from autogen.io import IOStream

    before = IOStream.get_default()
    asyncio.run(drive(build_assistant()).run_turn("hello"))
    assert IOStream.get_default() is before


def test_a_reply_cache_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    config = {**offline_llm_config(), "cache_seed": 41}
    assistant = autogen.ConversableAgent("cached", llm_config=config, human_input_mode="NEVER")
    assistant.register_model_client(model_client_cls=OfflineModelClient)
    with caplog.at_level(logging.WARNING, logger="agentsession"):
        drive(assistant)
        drive(build_assistant(name="uncached"))
    warned = [r.getMessage() for r in caplog.records if r.name == "agentsession"]
    assert len(warned) == 1 and "'cached'" in warned[0] and "cache_seed" in warned[0]


@pytest.mark.parametrize(
    ("config", "version", "caches"),
    [
        ({"config_list": [{"model": "m"}]}, "0.2.35", True),  # absent means seed 41
        ({"config_list": [{"model": "m"}], "cache_seed": None}, "0.2.35", False),
        ({"config_list": [{"model": "m", "cache_seed": 7}], "cache_seed": None}, "0.2.40", True),
        ({"config_list": [{"model": "m"}], "cache_seed": None}, "0.8.4", True),  # ag2#1640
        ({"config_list": [{"model": "m"}]}, "0.9.10", False),
        ({"config_list": [{"model": "m"}], "cache_seed": 41}, "0.14.1", True),
        (None, "0.2.35", False),  # llm_config=False: no model, no cache
    ],
)
def test_which_configs_cache_replies(
    config: dict[str, Any] | None, version: str, caches: bool
) -> None:
    assert (reply_cache_problem(config, Version(version)) is not None) is caches


def test_an_assistant_alone_with_tools_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    assistant = autogen.ConversableAgent(
        "toolsmith", llm_config=offline_llm_config(), human_input_mode="NEVER"
    )
    assistant.register_for_llm(description="add")(add)
    with caplog.at_level(logging.WARNING, logger="agentsession"):
        drive(assistant)
    assert any("(user_proxy, assistant)" in r.getMessage() for r in caplog.records)


# -- recognition and versions --------------------------------------------------------------


class ConversableAgent:
    """Named like AutoGen's class, but not from the ``autogen`` package."""


def test_family_recognises_agents_and_pairs() -> None:
    family = LegacyFamily()
    assistant = build_assistant()
    user, paired = build_pair(tools=[add])
    subclass = autogen.AssistantAgent("helper", llm_config=False)
    assert family.owns(assistant) and family.owns((user, paired)) and family.owns(subclass)
    assert not family.owns(object())
    assert not family.owns(ConversableAgent())
    assert not family.owns(("user", "assistant"))
    assert not family.owns((assistant, "not an agent"))
    assert not family.owns((assistant,))
    assert not family.owns((user, paired, assistant))
    assert not family.owns([user, paired])


def test_a_reversed_pair_is_refused() -> None:
    user, assistant = build_pair()
    with pytest.raises(UnsupportedAgent, match=re.escape("(user_proxy, assistant)")):
        driver_for((assistant, user))


@pytest.mark.parametrize("version", ["0.1.14", "1.0.0", "1.2.1"])
def test_unsupported_versions_name_the_fix(version: str) -> None:
    with pytest.raises(UnsupportedVersion, match=re.escape("pip install 'pyautogen~=0.2.35'")):
        LegacyFamily().check_version(version)


def test_the_installed_version_is_supported_and_tested() -> None:
    family = LegacyFamily()
    assert family.is_tested(family.check_version()) and family.check_version() == INSTALLED
