"""Conversations move between all four families through one store: text and tool turns, every
pair, the whole migration chain in both directions, dangling tool calls repaired on load, and
what a family cannot hold refused without losing anything."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FAMILIES, family_installed

from agentsession import Message, NotRepresentable, SessionManager, ToolCall
from agentsession.families._representable import findings
from agentsession.offline import user_messages_seen
from agentsession.stores import open_store

ADD_2_2 = '/tool add {"a": 2, "b": 2}'
INSTALLED = [name for name in FAMILIES if family_installed(name)]
CHAIN = ["legacy", "agentchat", "maf", "ag2"]


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def tool_factory(family: str) -> Callable[[], Any]:
    """An offline agent of ``family`` that can call ``add`` and reports its result."""
    if family == "legacy":
        from agentsession.offline.legacy import build_pair

        return lambda: build_pair(tools=[add])
    if family == "agentchat":
        from agentsession.offline.agentchat import build_agent as agentchat_agent

        return lambda: agentchat_agent(tools=[add], reflect_on_tool_use=True)
    if family == "maf":
        from agentsession.offline.maf import build_agent as maf_agent

        return lambda: maf_agent(tools=[add])
    from agentsession.offline.ag2 import build_agent as ag2_agent

    return lambda: ag2_agent(tools=[add])


def need(*families: str) -> None:
    missing = sorted({name for name in families if name not in INSTALLED})
    if missing:
        pytest.skip(f"needs the {', '.join(missing)} famil{'y' if len(missing) == 1 else 'ies'}")


def turn_on(family: str, url: str, session_id: str, text: str) -> str:
    with SessionManager(tool_factory(family), url) as manager:
        return manager.send(session_id, text)


def history(url: str, session_id: str) -> list[Message]:
    with SessionManager(tool_factory(INSTALLED[0]), url) as manager:
        return manager.history(session_id)


def shape(messages: list[Message]) -> list[tuple[str, str | None]]:
    return [
        (m.role, m.content if m.role != "assistant" or not m.tool_calls else "call")
        for m in messages
    ]


@pytest.mark.parametrize(
    "first, second",
    list(itertools.product(FAMILIES, FAMILIES)),
    ids=lambda name: str(name),
)
def test_a_tool_turn_continues_on_every_family(first: str, second: str, tmp_path: Path) -> None:
    need(first, second)
    url = f"sqlite:///{tmp_path / 'pair.db'}"
    sid = "pair"
    assert turn_on(first, url, sid, ADD_2_2).endswith("Tool add returned: 4")
    reply = turn_on(second, url, sid, "what did I say earlier?")
    assert user_messages_seen(reply) == 2 and repr(ADD_2_2) in reply
    # and a tool turn of the second family lands after the first's, readable by the first
    assert turn_on(second, url, sid, '/tool add {"a": 3, "b": 4}').endswith("returned: 7")
    assert user_messages_seen(turn_on(first, url, sid, "and now?")) == 4
    stored = history(url, sid)
    tool_turn, text_turn = ["user", "assistant", "tool", "assistant"], ["user", "assistant"]
    assert [m.role for m in stored] == (tool_turn + text_turn) * 2
    calls = [m for m in stored if m.tool_calls]
    results = [m for m in stored if m.role == "tool"]
    assert [c.tool_calls[0].id for c in calls] == [r.tool_call_id for r in results]
    assert [r.content for r in results] == ["4", "7"]


@pytest.mark.parametrize("order", [CHAIN, CHAIN[::-1]], ids=["forward", "reverse"])
@pytest.mark.parametrize("with_tool", [False, True], ids=["text", "tool"])
def test_the_migration_chain(order: list[str], with_tool: bool, tmp_path: Path) -> None:
    """3 turns on the first family, then one turn on each of the others: one store file, each
    turn sees every earlier one."""
    need(*order)
    url = f"sqlite:///{tmp_path / 'chain.db'}"
    sid = "chain"
    first, *rest = order
    texts = ["hello", ADD_2_2 if with_tool else "how are you?", "what is 2+2?"]
    for count, text in enumerate(texts, start=1):
        assert user_messages_seen(turn_on(first, url, sid, text)) == count
    for count, family in enumerate(rest, start=len(texts) + 1):
        reply = turn_on(family, url, sid, f"what did I say earlier, {family}?")
        assert user_messages_seen(reply) == count, (family, reply)
        assert "'hello'" in reply and repr(texts[1]) in reply
    stored = history(url, sid)
    assert len([m for m in stored if m.role == "user"]) == len(order) + 2
    if with_tool:
        assert [m.content for m in stored if m.role == "tool"] == ["4"]


def dangling(url: str, session_id: str) -> None:
    """A stored conversation whose last turn died between a tool call and its result."""

    async def write() -> None:
        store = open_store(url)
        await store.create(session_id, {})
        await store.append(
            session_id,
            [
                Message("user", ADD_2_2, name="user"),
                Message("assistant", None, name="assistant", tool_calls=(ToolCall("c1", "add"),)),
            ],
            0,
        )
        await store.close()

    asyncio.run(write())


def test_a_dangling_tool_call_is_closed_on_load(family: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dangling.db'}"
    dangling(url, "d")
    reply = turn_on(family, url, "d", "what did I say earlier?")
    assert user_messages_seen(reply) == 2 and repr(ADD_2_2) in reply
    stored = history(url, "d")
    # the store keeps what happened; the repair is made again, the same way, on every load
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert [f.kind for f in findings(stored, family)] == ["repair"]


def test_what_a_family_cannot_hold_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    need("agentchat", "ag2", "maf")
    url = f"sqlite:///{tmp_path / 'system.db'}"
    turn_on("agentchat", url, "s", "hello")

    async def add_system() -> None:  # what an agentchat agent with memory= stores
        store = open_store(url)
        version = await store.version("s")
        assert version is not None
        await store.append("s", [Message("system", "the user likes tea")], version)
        await store.close()

    asyncio.run(add_system())
    before = history(url, "s")
    with pytest.raises(NotRepresentable, match="system message"):
        turn_on("ag2", url, "s", "and now?")
    assert [m.to_dict() for m in history(url, "s")] == [m.to_dict() for m in before]
    assert (
        user_messages_seen(turn_on("maf", url, "s", "and now?")) == 2
        if "maf" in INSTALLED
        else True
    )


def test_a_tool_result_that_answers_no_call_is_refused_by_every_family(
    family: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'orphan.db'}"

    async def write() -> None:
        store = open_store(url)
        await store.create("o", {})
        orphan = [Message("user", "hi"), Message("tool", "4", name="add", tool_call_id="gone")]
        await store.append("o", orphan, 0)
        await store.close()

    asyncio.run(write())
    before = [m.to_dict() for m in history(url, "o")]
    with pytest.raises(NotRepresentable, match="answers no earlier tool call"):
        turn_on(family, url, "o", "and now?")
    assert [m.to_dict() for m in history(url, "o")] == before
