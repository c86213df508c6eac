"""The ag2 family (AG2 v1, ``import ag2``) against the installed ag2, driven by the offline model."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

pytest.importorskip("ag2")

import ag2
from packaging.version import Version

from agentsession import Message, NotRepresentable, ToolCall, UnsupportedVersion
from agentsession.families import detect, family_of, get_family
from agentsession.families.ag2 import Ag2Family, to_canonical, to_native
from agentsession.offline import user_messages_seen
from agentsession.offline.ag2 import build_agent

T = TypeVar("T")
FAMILY = Ag2Family()
ADD_2_2 = '/tool add {"a": 2, "b": 2}'


def run(coroutine: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coroutine

    return asyncio.run(wrapper())


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def records(messages: list[Message]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.to_dict().items() if k != "created_at"} for m in messages]


def test_detected_by_module_and_version() -> None:
    info = {i.family: i for i in detect()}["ag2"]
    assert info.module == "ag2" and info.supported
    assert Version(info.version) == Version(ag2.__version__) >= Version("1.0")


@pytest.mark.parametrize("version", ["0.9.10", "0.14.0", "2.0.0"])
def test_ag2_outside_1_x_is_refused_and_the_legacy_line_is_named(version: str) -> None:
    with pytest.raises(UnsupportedVersion, match="import autogen"):
        FAMILY.check_version(version)


def test_the_legacy_family_tells_ag2_0_x_from_ag2_1_x() -> None:
    # ag2 0.x ships `import autogen` (legacy); ag2 1.x ships `import ag2` (this family)
    assert get_family("legacy").module == "autogen" and FAMILY.module == "ag2"
    assert family_of(build_agent()).name == "ag2"


def test_text_turns_read_the_whole_history() -> None:
    async def scenario() -> list[str]:
        driver = FAMILY.drive(build_agent())
        return [(await driver.run_turn(text)).reply for text in ("one", "two", "earlier?")]

    one, _, three = run(scenario())
    assert user_messages_seen(one) == 1 and user_messages_seen(three) == 3
    assert "'one'" in three and "'two'" in three


def test_a_tool_turn_round_trips_through_the_canonical_form() -> None:
    async def scenario() -> tuple[list[Message], str]:
        driver = FAMILY.drive(build_agent(tools=[add]))
        turn = await driver.run_turn(ADD_2_2, sender="ada")
        stored = [Message.from_json(m.to_json()) for m in await driver.export_history()]
        fresh = FAMILY.drive(build_agent(tools=[add]))
        await fresh.import_history(stored)
        assert records(await fresh.export_history()) == records(
            [Message(m.role, m.content, None if m.role == "user" else m.name, m.tool_calls,
                     m.tool_call_id, m.is_error) for m in stored]
        )  # fmt: skip
        return list(turn), (await fresh.run_turn("what did I say earlier?")).reply

    turn, later = run(scenario())
    assert [m.role for m in turn] == ["user", "assistant", "tool", "assistant"]
    assert turn[0].name == "ada"
    assert turn[1].tool_calls == (ToolCall("call_1", "add", '{"a": 2, "b": 2}'),)
    assert turn[2].tool_call_id == "call_1" and turn[2].name == "add" and turn[2].content == "4"
    assert turn[3].content == "I have seen 1 user message. Tool add returned: 4"
    assert user_messages_seen(later) == 2


def test_conversion_keeps_error_results() -> None:
    history = [
        Message("user", "go"),
        Message("assistant", "thinking", name="assistant", tool_calls=(ToolCall("c1", "t", "{}"),)),
        Message("tool", "boom", name="t", tool_call_id="c1", is_error=True),
        Message("assistant", "done", name="assistant"),
    ]
    assert records(to_canonical(to_native(history), "assistant")) == records(history)


def test_a_system_message_cannot_be_represented_and_nothing_is_loaded() -> None:
    driver = FAMILY.drive(build_agent())
    history = [Message("user", "hi"), Message("system", "memory"), Message("assistant", "yo")]
    with pytest.raises(NotRepresentable, match="system message"):
        run(driver.import_history(history))
    assert run(driver.export_history()) == []


def test_an_unanswered_tool_call_is_closed_on_load() -> None:
    driver = FAMILY.drive(build_agent(tools=[add]))
    history = [
        Message("user", ADD_2_2),
        Message("assistant", None, name="assistant", tool_calls=(ToolCall("c1", "add", "{}"),)),
    ]
    run(driver.import_history(history))
    loaded = run(driver.export_history())
    assert [m.role for m in loaded] == ["user", "assistant", "tool"]
    assert loaded[2].is_error and loaded[2].tool_call_id == "c1"
    assert user_messages_seen(run(driver.run_turn("and now?")).reply) == 2


@pytest.mark.parametrize(
    "installed, families, says",
    [
        ("1.2.1", {"ag2"}, "ships only `import ag2`"),
        ("0.9.10", {"legacy"}, "ships `import autogen`"),
        ("1.2.1", {"ag2", "legacy"}, None),  # nothing misleading: both lines are importable
    ],
)
def test_doctor_says_which_api_the_ag2_distribution_ships(
    installed: str, families: set[str], says: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    from agentsession.families import FamilyInfo, ag2_name_hint

    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: installed if name == "ag2" else real(name)
    )
    found = [FamilyInfo(name, "?", "?", (), True, True) for name in families]
    hint = ag2_name_hint(found)
    assert (hint is None) if says is None else (says in (hint or ""))
