"""The legacy family driver against the real installed ``autogen`` (0.2.x, ag2 0.x, autogen 0.14)."""

from __future__ import annotations

import asyncio
import gc
import re
from pathlib import Path
from typing import Any

import pytest

autogen = pytest.importorskip("autogen")
if not hasattr(autogen, "ConversableAgent"):
    pytest.skip("'import autogen' here is not the legacy API", allow_module_level=True)

from agentsession import UnsupportedVersion  # noqa: E402
from agentsession.families import driver_for  # noqa: E402
from agentsession.families.legacy import LegacyDriver, LegacyFamily, to_canonical, to_native  # noqa: E402
from agentsession.messages import Message  # noqa: E402
from agentsession.offline import user_messages_seen  # noqa: E402
from agentsession.offline.legacy import build_assistant  # noqa: E402


def add(a: int, b: int) -> int:
    """Add two integers."""
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
        reply = (await fresh.run_turn("what did I say earlier?"))[-1].content or ""
        return reply, len(await fresh.export_history())

    reply, length = asyncio.run(run())
    assert user_messages_seen(reply) == 4
    assert "'hello'" in reply and "'what is 2+2?'" in reply
    assert length == 8


def test_run_turn_outputs_add_up_to_the_export() -> None:
    async def run() -> tuple[list[Message], list[Message]]:
        driver = drive(build_assistant(tools=[add]))
        turns: list[Message] = []
        for text in ("hi", '/tool add {"a": 2, "b": 3}', "thanks"):
            turns += await driver.run_turn(text)
        return turns, await driver.export_history()

    turns, exported = asyncio.run(run())
    assert strip(turns) == strip(exported)


def test_tool_call_turn_round_trips_into_fresh_agents() -> None:
    async def run() -> tuple[list[Message], list[Message], list[Message], str]:
        driver = drive(build_assistant(tools=[add]))
        added = await driver.run_turn('/tool add {"a": 2, "b": 2}')
        history = await driver.export_history()
        fresh = drive(build_assistant(tools=[add]))
        await fresh.import_history(history)
        reimported = await fresh.export_history()
        nxt = (await fresh.run_turn('/tool add {"a": 40, "b": 2}'))[-1].content or ""
        return added, history, reimported, nxt

    added, history, reimported, nxt = asyncio.run(run())
    assert [m.role for m in added] == ["user", "assistant", "tool", "assistant"]
    call = added[1].tool_calls[0]
    assert (call.name, call.arguments) == ("add", '{"a": 2, "b": 2}')
    assert added[2].tool_call_id == call.id and added[2].name == "add" and added[2].content == "4"
    assert "Tool add returned: 4" in (added[3].content or "")
    assert strip(reimported) == strip(history)
    assert "Tool add returned: 42" in nxt and user_messages_seen(nxt) == 2


def test_a_failing_tool_is_reported_not_raised() -> None:
    async def run() -> list[Message]:
        return await drive(build_assistant(tools=[fail])).run_turn('/tool fail {"reason": "nope"}')

    added = asyncio.run(run())
    assert [m.role for m in added] == ["user", "assistant", "tool", "assistant"]
    assert "nope" in (added[2].content or "")


def test_native_tool_results_group_like_autogen_writes_them() -> None:
    canonical = [
        Message("user", "two tools", name="user"),
        Message(
            "assistant",
            None,
            name="assistant",
            tool_calls=(
                Message.from_dict(
                    {
                        "v": 1,
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "a", "name": "x"}],
                    }
                ).tool_calls[0],
                Message.from_dict(
                    {
                        "v": 1,
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "b", "name": "y"}],
                    }
                ).tool_calls[0],
            ),
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


def test_two_drivers_never_share_messages() -> None:
    async def run() -> tuple[str, str]:
        alice, bob = drive(build_assistant()), drive(build_assistant())
        await alice.run_turn("alice's secret is 1")
        reply = (await bob.run_turn("what did I say earlier?"))[-1].content or ""
        return reply, str([m.content for m in await bob.export_history()])

    reply, bob_history = asyncio.run(run())
    assert user_messages_seen(reply) == 1 and "secret" not in bob_history


def test_turns_print_nothing_and_write_no_cache(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def run() -> None:
        driver = drive(build_assistant(tools=[add]))
        await driver.run_turn("hello")
        await driver.run_turn('/tool add {"a": 1, "b": 1}')

    capfd.readouterr()
    asyncio.run(run())
    out = capfd.readouterr()
    assert out.out == ""
    assert not (tmp_path / ".cache").exists()


def test_family_recognises_agents_and_pairs() -> None:
    family = LegacyFamily()
    assistant = build_assistant()
    user, paired = build_assistant(tools=[add])
    assert family.owns(assistant) and family.owns((user, paired))
    assert not family.owns(object())
    assert not family.owns((assistant, "not an agent"))
    assert not family.owns((assistant,))


@pytest.mark.parametrize("version", ["0.1.14", "1.0.0", "1.2.1"])
def test_unsupported_versions_name_the_fix(version: str) -> None:
    with pytest.raises(UnsupportedVersion, match=re.escape("pip install 'pyautogen~=0.2.35'")):
        LegacyFamily().check_version(version)


def test_installed_version_is_supported() -> None:
    assert LegacyFamily().check_version() is not None
