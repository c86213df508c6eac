"""A deterministic offline model that really reads the history it is given.

Its reply is derived from the whole conversation, so a test can prove that the model saw the
earlier turns: it says how many user messages it has seen, and "what did I say earlier?"
makes it quote them. A user message ``/tool NAME {"json": "args"}`` makes it call that tool;
once the tool's result arrives it reports it.

In a team each member's client knows the name it speaks as (``speaker``): its reply then says
who it is and what it has seen of the shared thread ("I am critic; I have seen 3 user messages,
3 replies from writer, 2 of my own. You said: 'hi'"), it can end with a termination word, and
``/handoff NAME`` in the user's message makes it call the ``transfer_to_NAME`` tool (a Swarm
handoff). A speaker-selection prompt ("… select the next role from ['a', 'b'] …", what
``SelectorGroupChat`` and a legacy ``auto`` group chat send) is answered with one name: the one
``@mentioned`` in the latest message, else the next in the roles' order. Family-specific clients live in
``agentsession.offline.legacy``, ``.agentchat``, ``.maf`` (an Agent Framework chat client)
and ``.ag2`` (an AG2 v1 model config); each only translates messages and calls
:func:`compose_reply`, so all four answer alike.
"""

from __future__ import annotations

import ast
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
HANDOFF_COMMAND = "/handoff "
_HANDOFF = re.compile(r"/handoff ([\w\-]+)")
_SELECT = re.compile(r"select the next role from (\[[^\]]*\])")
_ROLE_LINE = re.compile(r"^([\w\-]+): ", re.MULTILINE)
_MENTION = re.compile(r"@([\w\-]+)")
_CONVERSATION = re.compile(
    r"Read the following conversation\.(.*?)Read the above conversation", re.DOTALL
)


@dataclass(frozen=True, slots=True)
class OfflineReply:
    """Either a text reply or one tool call."""

    text: str | None = None
    tool_call: ToolCall | None = None


def _seen(count: int) -> str:
    return f"I have seen {count} user message{'' if count == 1 else 's'}."


def compose_reply(
    history: Sequence[Message],
    speaker: str | None = None,
    *,
    tools: Sequence[str] = (),
    terminate: str | None = None,
) -> OfflineReply:
    """The offline model's answer to ``history`` (oldest first, system messages allowed).

    ``speaker`` is the team member the model speaks as (None: a single agent), ``tools`` the
    names of the tools it is offered, ``terminate`` a word its text replies end with.
    """
    selected = select_next_speaker(history)
    if selected is not None:
        return OfflineReply(text=selected)
    if speaker is not None:
        return _member_reply(history, speaker, tools, terminate)
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
        return OfflineReply(text=f"{_seen(count)} Earlier you said: {quoted}{_pictures(history)}")
    return OfflineReply(text=f"{_seen(count)} You said: {latest!r}{_pictures(history)}")


def _pictures(history: Sequence[Message]) -> str:
    """What the model says of the images it was shown: none (nothing said), or how many, with
    the kinds and sizes of the last message's, so a test can tell they arrived whole."""
    total = sum(len(m.images) for m in history if m.role == "user")
    if not total:
        return ""
    latest = next((m for m in reversed(history) if m.role == "user" and m.images), None)
    shown = ", ".join(
        f"{image.mime} {image.size} bytes"
        if image.data is not None
        else f"{image.mime} {image.url}"
        for image in (latest.images if latest else ())
    )
    return f" I have seen {total} image{'' if total == 1 else 's'}; the last: {shown}."


def _member_reply(
    history: Sequence[Message], speaker: str, tools: Sequence[str], terminate: str | None
) -> OfflineReply:
    """A team member's reply: who it is and what it has seen of the shared thread.

    The human is whoever sent the thread's first user message; a member sees the other
    members' messages as user messages carrying their names, and its own as assistant ones.
    """
    thread = [m for m in history if m.role != "system"]
    human = next((m.name for m in thread if m.role == "user"), None)
    said = [m for m in thread if m.role == "user" and m.name in (human, None)]
    others: dict[str, int] = {}
    for m in thread:
        if m.role == "user" and m.name not in (human, None):
            others[str(m.name)] = others.get(str(m.name), 0) + 1
    own = sum(1 for m in thread if m.role == "assistant" and m.content and not m.tool_calls)
    count = len(said)
    seen = [f"I have seen {count} user message{'' if count == 1 else 's'}"]
    seen += [f"{n} repl{'y' if n == 1 else 'ies'} from {name}" for name, n in others.items()]
    if own:
        seen.append(f"{own} of my own")
    prefix = f"I am {speaker}; {', '.join(seen)}."
    latest = (said[-1].content or "") if said else ""
    last = thread[-1] if thread else None
    ending = f" {terminate}" if terminate else ""
    if last is not None and last.role == "tool":
        outcome = "failed with" if last.is_error else "returned"
        return OfflineReply(text=f"{prefix} Tool {last.name} {outcome}: {last.content}{ending}")
    if said and last is said[-1]:
        if latest.startswith(TOOL_COMMAND):
            name, _, arguments = latest[len(TOOL_COMMAND) :].strip().partition(" ")
            call_id = f"call_{count}_{speaker}"
            return OfflineReply(tool_call=ToolCall(call_id, name, arguments.strip() or "{}"))
        handoff = _HANDOFF.search(latest)
        if handoff and f"transfer_to_{handoff.group(1)}" in tools:
            call = ToolCall(f"call_{count}_{speaker}", f"transfer_to_{handoff.group(1)}")
            return OfflineReply(tool_call=call)
    return OfflineReply(text=f"{prefix} You said: {latest!r}{ending}")


def select_next_speaker(history: Sequence[Message]) -> str | None:
    """The answer to a speaker-selection prompt, or None if ``history`` is not one.

    The candidates are the list the prompt names. The choice is the candidate ``@mentioned``
    last in the latest message of the conversation, else the candidate that follows the latest
    speaker in the order of the roles the prompt lists (the first candidate if none fits).
    """
    prompt = next(
        (
            m.content
            for m in (*history[-1:], *history[:1])
            if m.content and _SELECT.search(m.content)
        ),
        None,
    )
    if prompt is None:
        return None
    try:
        candidates = [str(c) for c in ast.literal_eval(_SELECT.findall(prompt)[-1])]
    except (ValueError, SyntaxError):
        return None
    if not candidates:
        return None
    roles = next(
        (m.content for m in history if m.content and "roles are available" in m.content), ""
    )
    order = [name for name in dict.fromkeys(_ROLE_LINE.findall(roles.split("Read the", 1)[0]))]
    if not set(candidates) <= set(order):
        order = candidates
    # the conversation: legacy sends it as named messages, agentchat inside the prompt's text
    entries: list[tuple[str | None, str]] = [
        (m.name, m.content or "")
        for m in history
        if m.role in ("user", "assistant")
        and not m.tool_calls
        and m.content is not None
        and not _SELECT.search(m.content)
    ]
    embedded = _CONVERSATION.search(prompt)
    if embedded:
        parts = _ROLE_LINE.split(embedded.group(1))
        entries += [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
    if entries:
        last_name, last_text = str(entries[-1][0]), str(entries[-1][1])
        mentioned = [str(name) for name in _MENTION.findall(last_text) if name in candidates]
        if mentioned and mentioned[-1] != last_name:
            return mentioned[-1]
        if last_name in order:
            start = order.index(last_name)
            for offset in range(1, len(order) + 1):
                name = str(order[(start + offset) % len(order)])
                if name in candidates:
                    return name
    return candidates[0]


def replies_seen(reply: str, name: str) -> int:
    """How many replies from ``name`` a team member's offline reply reports (0 if none)."""
    match = re.search(rf"(\d+) repl(?:y|ies) from {re.escape(name)}\b", reply)
    return int(match.group(1)) if match else 0


def own_replies_seen(reply: str) -> int:
    """How many of its own earlier replies a team member's offline reply reports."""
    match = re.search(r"(\d+) of my own", reply)
    return int(match.group(1)) if match else 0


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
    family: str | None = None,
    *,
    system_message: str = "You are a helpful assistant.",
    chunk_delay: float | None = None,
) -> Callable[[], Any]:
    """A factory building an offline agent of ``family`` (default: whichever is installed).

    ``chunk_delay``: an agentchat agent streams its replies word by word, that many seconds
    apart (``model_client_stream=True``), as a real model's tokens come; the other families'
    offline agents stream as their driver does."""
    chosen = family or installed_family()
    if chosen == "agentchat":
        from .agentchat import build_agent

        if chunk_delay is not None:
            delay = chunk_delay
            return lambda: build_agent(
                system_message=system_message,
                model_client_stream=True,
                chunk_words=1,
                chunk_delay=delay,
            )
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


def offline_team_factory(family: str | None = None) -> Callable[[], Any]:
    """A factory building a small offline team of ``family`` (default: whichever is installed):
    a writer and a critic who ends each turn (agentchat ``RoundRobinGroupChat``, or a legacy
    ``GroupChat`` with a user proxy, as ``(user_proxy, manager)``)."""
    chosen = family or installed_family()
    if chosen == "agentchat":
        from .agentchat import build_team

        return lambda: build_team()
    if chosen == "legacy":
        from .legacy import build_group_chat

        return lambda: build_group_chat()
    raise ValueError(f"unknown AutoGen family {chosen!r}; use 'agentchat' or 'legacy'")


__all__ = [
    "HANDOFF_COMMAND",
    "OFFLINE_FAMILIES",
    "TOOL_COMMAND",
    "OfflineReply",
    "compose_reply",
    "own_replies_seen",
    "replies_seen",
    "select_next_speaker",
    "installed_family",
    "offline_agent_factory",
    "offline_team_factory",
    "user_messages_seen",
]
