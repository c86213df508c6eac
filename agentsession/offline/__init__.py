"""A deterministic offline model that really reads the history it is given.

Its reply is derived from the whole conversation, so a test can prove that the model saw the
earlier turns: it says how many user messages it has seen, and "what did I say earlier?"
makes it quote them. A user message ``/tool NAME {"json": "args"}`` makes it call that tool;
once the tool's result arrives it reports it. Family-specific clients live in
``agentsession.offline.legacy``, ``.agentchat``, ``.maf`` (an Agent Framework chat client)
and ``.ag2`` (an AG2 v1 model config); each only translates messages and calls
:func:`compose_reply`, so all four answer alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..messages import Message, ToolCall

TOOL_COMMAND = "/tool "
OFFLINE_FAMILIES = ("agentchat", "legacy", "maf", "ag2")
"""The families with an offline model, in the order ``installed_family`` prefers them."""
_RECALL = re.compile(r"\b(earlier|before|previous(ly)?|what did i (say|tell))\b", re.IGNORECASE)
_SEEN = re.compile(r"I have seen (\d+) user messages?")


@dataclass(frozen=True, slots=True)
class OfflineReply:
    """Either a text reply or one tool call."""

    text: str | None = None
    tool_call: ToolCall | None = None


def _seen(count: int) -> str:
    return f"I have seen {count} user message{'' if count == 1 else 's'}."


def compose_reply(history: Sequence[Message]) -> OfflineReply:
    """The offline model's answer to ``history`` (oldest first, system messages allowed)."""
    user_texts = [m.content or "" for m in history if m.role == "user"]
    count = len(user_texts)
    if not history:
        return OfflineReply(text=_seen(0))
    # agents with memory append a system message after the user's; answer what came before it
    last = next((m for m in reversed(history) if m.role != "system"), history[-1])
    if last.role == "tool":
        tool = last.name or "the tool"
        outcome = "failed with" if last.is_error else "returned"
        return OfflineReply(text=f"{_seen(count)} Tool {tool} {outcome}: {last.content}")
    latest = user_texts[-1] if user_texts else ""
    if last.role == "user" and latest.startswith(TOOL_COMMAND):
        name, _, arguments = latest[len(TOOL_COMMAND) :].strip().partition(" ")
        arguments = arguments.strip() or "{}"
        try:
            json.loads(arguments)
        except ValueError:
            return OfflineReply(text=f"{_seen(count)} Tool arguments are not JSON: {arguments!r}")
        return OfflineReply(tool_call=ToolCall(id=f"call_{count}", name=name, arguments=arguments))
    if _RECALL.search(latest) and count > 1:
        quoted = "; ".join(repr(text) for text in user_texts[:-1])
        return OfflineReply(text=f"{_seen(count)} Earlier you said: {quoted}")
    return OfflineReply(text=f"{_seen(count)} You said: {latest!r}")


def user_messages_seen(reply: str) -> int | None:
    """The count an offline reply reports, or None if ``reply`` is not one."""
    match = _SEEN.search(reply)
    return int(match.group(1)) if match else None


@cache
def installed_family() -> str:
    """The family the offline agent uses by default: the first supported of agentchat, legacy,
    maf and ag2.

    Asked once per process (``installed_family.cache_clear()`` to ask again): detecting reads
    every installed distribution's metadata, about 0.3 s.
    """
    from ..families import detect

    found = {info.family: info for info in detect()}
    for name in OFFLINE_FAMILIES:
        if name in found and found[name].supported:
            return name
    problems = "; ".join(info.problem or "" for info in found.values() if info.problem)
    raise ImportError(
        "no supported AutoGen family is installed"
        + (f" ({problems})" if problems else "")
        + ". Install one: pip install 'agentsession-middleware[agentchat]' (or [legacy], [maf], [ag2])"
    )


def offline_agent_factory(
    family: str | None = None, *, system_message: str = "You are a helpful assistant."
) -> Callable[[], Any]:
    """A factory building an offline agent of ``family`` (default: whichever is installed)."""
    chosen = family or installed_family()
    if chosen == "agentchat":
        from .agentchat import build_agent

        return lambda: build_agent(system_message=system_message)
    if chosen == "legacy":
        from .legacy import build_assistant

        return lambda: build_assistant(system_message=system_message)
    if chosen == "maf":
        from .maf import build_agent as build_maf_agent

        return lambda: build_maf_agent(instructions=system_message)
    if chosen == "ag2":
        from .ag2 import build_agent as build_ag2_agent

        return lambda: build_ag2_agent(prompt=system_message)
    raise ValueError(f"unknown AutoGen family {chosen!r}; use one of {', '.join(OFFLINE_FAMILIES)}")


__all__ = [
    "OFFLINE_FAMILIES",
    "TOOL_COMMAND",
    "OfflineReply",
    "compose_reply",
    "installed_family",
    "offline_agent_factory",
    "user_messages_seen",
]
