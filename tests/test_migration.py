"""``agentsession migrate --to FAMILY``: every stored conversation checked against a target
family, what it cannot hold reported, nothing changed unless asked."""

from __future__ import annotations

import asyncio

import pytest

from agentsession import Message, ToolCall
from agentsession.cli import main
from agentsession.messages import REPAIRED
from agentsession.stores import open_store

CONVERSATIONS = {
    "plain": [Message("user", "hi"), Message("assistant", "hello")],
    "memory": [Message("user", "hi"), Message("system", "likes tea"), Message("assistant", "ok")],
    "dangling": [
        Message("user", "add"),
        Message("assistant", None, tool_calls=(ToolCall("c1", "add", "{}"),)),
    ],
    "failed-tool": [
        Message("user", "add"),
        Message("assistant", None, tool_calls=(ToolCall("c2", "add", "{}"),)),
        Message("tool", "boom", name="add", tool_call_id="c2", is_error=True),
        Message("assistant", "it failed"),
    ],
}


def seed(url: str) -> None:
    async def write() -> None:
        store = open_store(url)
        for session_id, messages in CONVERSATIONS.items():
            await store.create(session_id, {})
            await store.append(session_id, messages, 0)
        await store.close()

    asyncio.run(write())


def snapshot(url: str) -> dict[str, list[dict[str, object]]]:
    async def read() -> dict[str, list[dict[str, object]]]:
        store = open_store(url)
        found = {}
        for session_id in CONVERSATIONS:
            conversation = await store.load(session_id)
            assert conversation is not None
            found[session_id] = [m.to_dict() for m in conversation.messages]
        await store.close()
        return found

    return asyncio.run(read())


@pytest.fixture
def url(durable_store_url: str) -> str:
    seed(durable_store_url)
    return durable_store_url


def lines(output: str, session_id: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{session_id}:")]


def test_what_ag2_cannot_hold_is_listed_and_nothing_changes(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(url)
    assert main(["migrate", "--to", "ag2", "--store", url]) == 1
    out = capsys.readouterr().out
    assert lines(out, "plain") == []
    assert any("error" in line and "system message" in line for line in lines(out, "memory"))
    assert any("repair" in line for line in lines(out, "dangling"))
    assert "4 conversations for the ag2 family: 1 cannot be loaded" in out
    assert "nothing changed" in out
    assert snapshot(url) == before


def test_every_conversation_loads_into_maf_and_legacy_loses_the_error_flag(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--to", "maf", "--store", url]) == 0
    out = capsys.readouterr().out
    assert lines(out, "failed-tool") == [] and lines(out, "memory") == []
    assert main(["migrate", "--to", "legacy", "--store", url]) == 0
    out = capsys.readouterr().out
    assert any("loss" in line and "is_error" in line for line in lines(out, "failed-tool"))


def test_repair_appends_the_results_of_calls_left_unanswered_at_the_end(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--to", "maf", "--repair", "--store", url]) == 0
    out = capsys.readouterr().out
    assert lines(out, "dangling") == ["dangling: appended 1 synthetic tool result(s)"]
    after = snapshot(url)
    assert after["dangling"][-1]["role"] == "tool"
    assert after["dangling"][-1]["metadata"] == {REPAIRED: True}
    assert after["plain"] == [m.to_dict() for m in CONVERSATIONS["plain"]]
    assert main(["migrate", "--to", "maf", "--store", url]) == 0
    assert "0 are repaired on load" in capsys.readouterr().out


def test_without_to_it_still_checks_that_records_decode(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--store", url]) == 0
    assert "checked 4 conversations: 0 unreadable" in capsys.readouterr().out
