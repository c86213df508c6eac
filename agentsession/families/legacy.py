"""The legacy family: ``import autogen`` (pyautogen 0.2, autogen-agentchat 0.2.x, ag2 0.x, autogen 0.14).

History lives in ``assistant.chat_messages[peer]``, keyed by the peer *object*, as
OpenAI-style dicts; the system message is not part of it. The driver stores it by role and
name and re-keys it onto fresh agents. A turn is driven with public calls only (``send``,
``generate_reply``), never ``initiate_chat``, whose ``clear_history`` default wipes history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from packaging.version import Version

from ..errors import FamilyError, UnsupportedAgent
from ..messages import Message, ToolCall
from ._gates import (
    LEGACY_BELOW,
    LEGACY_CACHE_OFF_BY_DEFAULT,
    LEGACY_CACHE_SEED_IGNORED,
    LEGACY_IOSTREAM,
    LEGACY_MINIMUM,
    LEGACY_TESTED,
    at_least,
)
from .base import Driver, Family

logger = logging.getLogger("agentsession")

_DEFAULT_CACHE_SEED = 41  # what releases before 0.8.7 use when llm_config names no cache_seed

MAX_TOOL_ROUNDS = 10
_FUNCTION_CALL_ID = "function_call"  # the pre-tools ``function_call`` form has no call id


def is_conversable(obj: object) -> bool:
    """True for an ``autogen`` ConversableAgent (or subclass), decided without importing autogen."""
    return any(
        cls.__name__ == "ConversableAgent" and cls.__module__.startswith("autogen.")
        for cls in type(obj).__mro__
    )


class LegacyFamily(Family):
    """The ``import autogen`` API. The driver runs one assistant and the user proxy it talks to."""

    name = "legacy"
    module = "autogen"
    minimum = LEGACY_MINIMUM
    below = LEGACY_BELOW
    tested_range = LEGACY_TESTED
    install_hint = "pip install 'pyautogen~=0.2.35'  (or 'ag2<1.0', or 'autogen==0.14.1')"

    def owns(self, agent: object) -> bool:
        if isinstance(agent, tuple):
            return len(agent) == 2 and all(is_conversable(part) for part in agent)
        return is_conversable(agent)

    def drive(self, agent: Any) -> LegacyDriver:
        version = self.check_version()
        if isinstance(agent, tuple):
            user, assistant = agent
            if assistant.llm_config is False and user.llm_config is not False:
                raise UnsupportedAgent(
                    f"the agent factory returned ({user.name!r}, {assistant.name!r}), but only "
                    f"{user.name!r} has an llm_config: return (user_proxy, assistant), in that order"
                )
        else:
            from autogen import ConversableAgent

            assistant = agent
            user = ConversableAgent(
                "user", llm_config=False, human_input_mode="NEVER", code_execution_config=False
            )
            if _offers_tools(assistant):
                _warn_once(
                    assistant,
                    "offers tools to its model, but the factory returned it alone, so nothing "
                    "executes them; return (user_proxy, assistant) with each tool registered "
                    "by autogen.register_function(f, caller=assistant, executor=user_proxy)",
                )
        problem = reply_cache_problem(_llm_config(assistant), version)
        if problem:
            _warn_once(assistant, problem)
        return LegacyDriver(assistant, user, version)


class LegacyDriver(Driver):
    """Drives one (user proxy, assistant) pair; the assistant's view is the canonical history."""

    def __init__(self, assistant: Any, user: Any, version: Version) -> None:
        self.agent = assistant
        self.user = user
        self.version = version

    async def run_turn(self, text: str, sender: str = "user") -> list[Message]:
        # the legacy API is synchronous: the whole turn runs in one worker thread
        return await asyncio.to_thread(self._run_turn, text, sender)

    def _run_turn(self, text: str, sender: str) -> list[Message]:
        assistant, user = self.agent, self.user
        start = len(assistant.chat_messages[user])
        user.reset_consecutive_auto_reply_counter()
        assistant.reset_consecutive_auto_reply_counter()
        with _quiet(self.version):
            # a "name" in the message dict is kept by every version; without it AutoGen
            # would name the message after the user proxy
            user.send(
                {"content": text, "name": sender}, assistant, request_reply=False, silent=True
            )
            for rounds in range(MAX_TOOL_ROUNDS + 1):
                reply = assistant.generate_reply(sender=user)
                if reply is None:
                    raise FamilyError(
                        f"agent {assistant.name!r} gave no reply: its is_termination_msg or "
                        "max_consecutive_auto_reply stopped it"
                    )
                assistant.send(reply, user, request_reply=False, silent=True)
                if not _calls_tools(reply):
                    break
                if rounds == MAX_TOOL_ROUNDS:
                    raise FamilyError(
                        f"agent {assistant.name!r} kept calling tools: more than "
                        f"{MAX_TOOL_ROUNDS} tool rounds in one turn"
                    )
                result = user.generate_reply(sender=assistant)
                if result is None:
                    raise FamilyError(
                        f"the user proxy {user.name!r} did not answer {assistant.name!r}'s tool "
                        "call: its max_consecutive_auto_reply (0?) or is_termination_msg stopped "
                        "it. Build the proxy with human_input_mode='NEVER' and the default "
                        "max_consecutive_auto_reply"
                    )
                user.send(result, assistant, request_reply=False, silent=True)
        # only this turn's tail is converted: a turn costs the same however long the history
        return to_canonical(assistant.chat_messages[user][start:], assistant.name, user.name)

    async def export_history(self) -> list[Message]:
        return to_canonical(self.agent.chat_messages[self.user], self.agent.name, self.user.name)

    async def import_history(self, messages: Sequence[Message]) -> None:
        native = to_native(messages, self.agent.name, self.user.name)
        # chat_messages is the agents' live history dict in every version; the private
        # _append_oai_message changed its signature at ag2 0.10
        self.agent.chat_messages[self.user] = native
        self.user.chat_messages[self.agent] = [_mirrored(m) for m in native]


# -- side effects: console output and the reply cache --------------------------------------


class _SilentStream:
    """An AutoGen IOStream that prints nothing and never reads stdin (a server has neither).

    An empty answer to a human-input prompt means "no input": AutoGen then auto-replies.
    """

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        return None

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        return ""

    def send(self, message: Any) -> None:  # ag2's structured events
        return None


def _quiet(version: Version) -> AbstractContextManager[None]:
    """Silence AutoGen's console output for the current thread only.

    AG2 prints (tool executions, events) even with ``silent=True``. ``IOStream.set_default``
    sets a ContextVar, unlike ``contextlib.redirect_stdout``, which swaps the process-wide
    ``sys.stdout`` under every other thread.
    """
    if at_least(version, LEGACY_IOSTREAM):
        from autogen.io import IOStream

        silenced: AbstractContextManager[None] = IOStream.set_default(_SilentStream())
        return silenced
    # before IOStream AutoGen calls print(); nothing silences that per call
    return nullcontext()


def reply_cache_problem(llm_config: Mapping[str, Any] | None, version: Version) -> str | None:
    """Why this ``llm_config`` makes AutoGen cache model replies, or None if it does not.

    A cached reply is replayed for an identical prompt, and pyautogen 0.2 writes the cache to
    ``./.cache/<seed>``: wrong for a live conversation service.
    """
    if llm_config is None:
        return None
    if at_least(version, LEGACY_CACHE_SEED_IGNORED) and not at_least(
        version, LEGACY_CACHE_OFF_BY_DEFAULT
    ):
        return (
            f"caches model replies on disk (./.cache) with autogen {version} whatever its "
            "cache_seed says (ag2ai/ag2#1640); upgrade to ag2>=0.8.7"
        )
    default = None if at_least(version, LEGACY_CACHE_OFF_BY_DEFAULT) else _DEFAULT_CACHE_SEED
    top = llm_config.get("cache_seed", default)
    # each config_list entry is merged over the top level when AutoGen calls the model
    entries = list(llm_config.get("config_list") or ()) or [{}]
    seeds = {entry.get("cache_seed", top) for entry in entries} - {None}
    if not seeds:
        return None
    return (
        f"caches model replies (cache_seed={min(seeds, key=repr)!r}; pyautogen 0.2 writes "
        "them to ./.cache) and replays them for identical prompts; set llm_config "
        "cache_seed=None"
    )


def _llm_config(agent: Any) -> Mapping[str, Any] | None:
    """The agent's llm_config as a dict: ag2 >= 0.8.2 keeps an ``LLMConfig`` object."""
    config = getattr(agent, "llm_config", None)
    if isinstance(config, Mapping):
        return config
    dump = getattr(config, "model_dump", None)
    if callable(dump):
        dumped = dump()
        return dumped if isinstance(dumped, Mapping) else None
    return None


def _offers_tools(agent: Any) -> bool:
    config = _llm_config(agent)
    return bool(config and (config.get("tools") or config.get("functions")))


_warned: set[tuple[str, str]] = set()


def _warn_once(agent: Any, problem: str) -> None:
    # drive() runs for every conversation the engine rebuilds: say it once per agent name
    key = (str(getattr(agent, "name", "?")), problem)
    if key not in _warned:
        _warned.add(key)
        logger.warning("agent %r %s", key[0], problem)


# -- native <-> canonical ------------------------------------------------------------------


def _calls_tools(reply: Any) -> bool:
    return isinstance(reply, Mapping) and bool(
        reply.get("tool_calls") or reply.get("function_call")
    )


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text
        if any(isinstance(p, Mapping) and p.get("type") != "text" for p in content):
            logger.warning("a non-text part of a multimodal message is not stored")
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


def to_canonical(
    native: Sequence[Mapping[str, Any]], assistant_name: str, user_name: str
) -> list[Message]:
    """Legacy dicts (the assistant's view) to canonical messages."""
    tool_names: dict[str, str] = {}  # a result names its call only by id
    out: list[Message] = []
    for raw in native:
        role = raw.get("role")
        content = _text(raw.get("content"))
        if raw.get("tool_calls") or raw.get("function_call"):
            calls = [
                ToolCall(
                    str(c.get("id")), c["function"]["name"], c["function"].get("arguments") or "{}"
                )
                for c in raw.get("tool_calls") or ()
            ]
            if raw.get("function_call"):
                fc = raw["function_call"]
                calls.append(ToolCall(_FUNCTION_CALL_ID, fc["name"], fc.get("arguments") or "{}"))
            tool_names.update((call.id, call.name) for call in calls)
            name = raw.get("name") or assistant_name
            out.append(Message("assistant", content, name=name, tool_calls=tuple(calls)))
        elif raw.get("tool_responses") or role == "tool":
            for response in raw.get("tool_responses") or [raw]:
                call_id = str(response.get("tool_call_id"))
                out.append(
                    Message(
                        "tool",
                        _text(response.get("content")),
                        name=tool_names.get(call_id),
                        tool_call_id=call_id,
                    )
                )
            if role == "user" and content:
                # a human's answer in place of the tool results ("USER INTERRUPTED")
                out.append(Message("user", content, name=raw.get("name") or user_name))
        elif role == "function":
            out.append(
                Message("tool", content, name=raw.get("name"), tool_call_id=_FUNCTION_CALL_ID)
            )
        elif role in ("user", "assistant", "system"):
            default = user_name if role == "user" else assistant_name
            out.append(Message(role, content, name=raw.get("name") or default))
        else:
            raise FamilyError(f"the agent's history holds a message of unknown role {role!r}")
    return out


def to_native(
    messages: Sequence[Message], assistant_name: str, user_name: str
) -> list[dict[str, Any]]:
    """Canonical messages to legacy dicts (the assistant's view); consecutive tool results
    become one ``role: "tool"`` message with ``tool_responses``, as AutoGen writes them."""
    native: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool" and message.tool_call_id == _FUNCTION_CALL_ID:
            native.append({"content": message.content, "role": "function", "name": message.name})
        elif message.role == "tool":
            response = {
                "tool_call_id": message.tool_call_id,
                "role": "tool",
                "content": message.content,
            }
            last = native[-1] if native else None
            if last is not None and last.get("role") == "tool" and "tool_responses" in last:
                last["tool_responses"].append(response)
                # AutoGen joins the results' text the same way
                last["content"] = "\n\n".join(str(r["content"]) for r in last["tool_responses"])
            else:
                native.append(
                    {
                        "content": message.content,
                        "tool_responses": [response],
                        "role": "tool",
                        "name": user_name,
                    }
                )
        elif message.tool_calls:
            entry: dict[str, Any] = {"content": message.content, "role": "assistant"}
            calls = [c for c in message.tool_calls if c.id != _FUNCTION_CALL_ID]
            if calls:
                entry["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in calls
                ]
            for c in message.tool_calls:
                if c.id == _FUNCTION_CALL_ID:
                    entry["function_call"] = {"name": c.name, "arguments": c.arguments}
            native.append(entry)
        else:
            default = user_name if message.role == "user" else assistant_name
            native.append(
                {"content": message.content, "role": message.role, "name": message.name or default}
            )
    return native


def _mirrored(message: Mapping[str, Any]) -> dict[str, Any]:
    """The peer's copy of a message: user and assistant roles swap, tool results do not."""
    swapped = {"user": "assistant", "assistant": "user"}
    mirror = dict(message)
    if "tool_calls" not in mirror and "function_call" not in mirror:
        mirror["role"] = swapped.get(str(mirror.get("role")), mirror.get("role"))
    return mirror


__all__ = [
    "LegacyDriver",
    "LegacyFamily",
    "is_conversable",
    "reply_cache_problem",
    "to_canonical",
    "to_native",
]
