"""What the team tests of both families share: the oracle that proves a reply saw the thread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentsession import Message
from agentsession.families._team import TEAM_KEY
from agentsession.offline import own_replies_seen, replies_seen, user_messages_seen


def texts(messages: Sequence[Message]) -> list[tuple[str, str | None, str | None]]:
    """(role, speaker, content) of each message, without clocks or team records."""
    return [(m.role, m.name, m.content) for m in messages]


def assert_replies_saw_the_thread(log: Sequence[Message], start: int = 0) -> int:
    """Every offline member reply in ``log[start:]`` reports exactly the thread before it: the
    user's messages, each other member's replies and its own. Returns how many were checked."""
    checked = 0
    for index in range(start, len(log)):
        message = log[index]
        if message.role != "assistant" or not (message.content or "").startswith(
            f"I am {message.name};"
        ):
            continue
        before = log[:index]
        text = message.content or ""
        users = sum(1 for m in before if m.role == "user")
        assert user_messages_seen(text) == users, (index, text)
        speakers = {m.name for m in before if _is_reply(m)} - {message.name}
        for other in speakers:
            expected = sum(1 for m in before if _is_reply(m) and m.name == other)
            assert replies_seen(text, str(other)) == expected, (index, other, text)
        own = sum(1 for m in before if _is_reply(m) and m.name == message.name)
        assert own_replies_seen(text) == own, (index, text)
        checked += 1
    return checked


def _is_reply(message: Message) -> bool:
    return message.role == "assistant" and bool(message.content) and not message.tool_calls


def records(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [m.metadata[TEAM_KEY] for m in messages if TEAM_KEY in m.metadata]
