"""The legacy family: ``import autogen`` (pyautogen 0.2, autogen-agentchat 0.2.x, ag2 0.x, autogen 0.14).

History lives in ``assistant.chat_messages[peer]``, keyed by the peer *object*, as
OpenAI-style dicts; the system message is not part of it. The driver persists it by role and
name and re-keys it onto fresh agents. It drives a turn with public calls only (``send``,
``generate_reply``), never ``initiate_chat``, whose ``clear_history`` default wipes history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import FamilyError
from ..messages import Message, ToolCall
from ._gates import LEGACY_BELOW, LEGACY_MINIMUM, LEGACY_TESTED
from .base import Driver, Family

logger = logging.getLogger("agentsession")

MAX_TOOL_ROUNDS = 10


def is_conversable(obj: object) -> bool:
    """True for an ``autogen`` ConversableAgent (or subclass), decided without importing autogen."""
    return any(
        cls.__name__ == "ConversableAgent" and cls.__module__.startswith("autogen.")
        for cls in type(obj).__mro__
    )


class LegacyFamily(Family):
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
        if isinstance(agent, tuple):
            user, assistant = agent
        else:
            from autogen import ConversableAgent

            assistant = agent
            user = ConversableAgent(
                "user", llm_config=False, human_input_mode="NEVER", code_execution_config=False
            )
        _warn_about_disk_cache(assistant)
        return LegacyDriver(assistant, user)


def _warn_about_disk_cache(assistant: Any) -> None:
    config = getattr(assistant, "llm_config", None)
    seed = config.get("cache_seed") if isinstance(config, Mapping) else None
    if seed is not None:
        logger.warning(
            "agent %r has llm_config cache_seed=%r: AutoGen caches model replies on disk "
            "(./.cache) and replays them; set cache_seed=None for live conversations",
            getattr(assistant, "name", "?"),
            seed,
        )


class _SilentStream:
    """An AutoGen IOStream that prints nothing and never reads stdin (a server has neither)."""

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        return None

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        return ""

    def send(self, message: Any) -> None:  # ag2's structured events
        return None


@contextmanager
def _quiet() -> Iterator[None]:
    # IOStream.set_default is a ContextVar: it silences this thread only, unlike redirect_stdout
    try:
        from autogen.io import IOStream
    except ImportError:  # releases before IOStream print through print(); nothing to silence
        yield
        return
    with IOStream.set_default(_SilentStream()):
        yield


class LegacyDriver(Driver):
    """Drives one (user proxy, assistant) pair; the assistant's view is the canonical history."""

    def __init__(self, assistant: Any, user: Any) -> None:
        self.agent = assistant
        self.user = user

    async def run_turn(self, text: str, sender: str = "user") -> list[Message]:
        return await asyncio.to_thread(self._run_turn, text)

    def _run_turn(self, text: str) -> list[Message]:
        assistant, user = self.agent, self.user
        start = len(assistant.chat_messages[user])
        user.reset_consecutive_auto_reply_counter()
        assistant.reset_consecutive_auto_reply_counter()
        with _quiet():
            user.send(text, assistant, request_reply=False, silent=True)
            for _ in range(MAX_TOOL_ROUNDS):
                reply = assistant.generate_reply(sender=user)
                if reply is None:
                    raise FamilyError(f"agent {assistant.name!r} produced no reply")
                assistant.send(reply, user, request_reply=False, silent=True)
                if not _calls_tools(reply):
                    break
                result = user.generate_reply(sender=assistant)
                if result is None:
                    raise FamilyError(
                        f"{user.name!r} did not execute the tool call: register each tool for "
                        "execution on the user proxy (autogen.register_function(f, caller="
                        "assistant, executor=user_proxy)) and return (user_proxy, assistant)"
                    )
                user.send(result, assistant, request_reply=False, silent=True)
            else:
                raise FamilyError(f"more than {MAX_TOOL_ROUNDS} tool rounds in one turn")
        added = assistant.chat_messages[user][start:]
        return to_canonical(added, assistant.name, user.name)

    async def export_history(self) -> list[Message]:
        return to_canonical(self.agent.chat_messages[self.user], self.agent.name, self.user.name)

    async def import_history(self, messages: Sequence[Message]) -> None:
        native = to_native(messages, self.agent.name, self.user.name)
        self.agent.chat_messages[self.user] = native
        self.user.chat_messages[self.agent] = [_mirrored(m) for m in native]


def _calls_tools(reply: Any) -> bool:
    return isinstance(reply, Mapping) and bool(
        reply.get("tool_calls") or reply.get("function_call")
    )


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return str(content)


def to_canonical(
    native: Sequence[Mapping[str, Any]], assistant_name: str, user_name: str
) -> list[Message]:
    """Legacy dicts (the assistant's view) to canonical messages."""
    tool_names: dict[str, str] = {}  # a result names its call only by id
    out: list[Message] = []
    for raw in native:
        for call in raw.get("tool_calls") or ():
            tool_names[str(call.get("id"))] = call.get("function", {}).get("name", "")
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
                calls.append(ToolCall("function_call", fc["name"], fc.get("arguments") or "{}"))
            out.append(
                Message(
                    "assistant",
                    content,
                    name=raw.get("name") or assistant_name,
                    tool_calls=tuple(calls),
                )
            )
        elif role == "tool":
            for response in raw.get("tool_responses") or [raw]:
                call_id = str(response.get("tool_call_id"))
                out.append(
                    Message(
                        "tool",
                        _text(response.get("content")),
                        name=tool_names.get(call_id) or None,
                        tool_call_id=call_id,
                    )
                )
        elif role == "function":
            out.append(Message("tool", content, name=raw.get("name"), tool_call_id="function_call"))
        elif role in ("user", "assistant", "system"):
            default = user_name if role == "user" else assistant_name
            out.append(Message(role, content, name=raw.get("name") or default))
        else:
            raise FamilyError(f"unknown legacy message role {role!r}")
    return out


def to_native(
    messages: Sequence[Message], assistant_name: str, user_name: str
) -> list[dict[str, Any]]:
    """Canonical messages to legacy dicts (the assistant's view); consecutive tool results
    become one ``role: "tool"`` message with ``tool_responses``, as AutoGen writes them."""
    native: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            if message.tool_call_id == "function_call":
                native.append(
                    {"content": message.content, "role": "function", "name": message.name}
                )
                continue
            response = {
                "tool_call_id": message.tool_call_id,
                "role": "tool",
                "content": message.content,
            }
            last = native[-1] if native else None
            if last is not None and last.get("role") == "tool" and "tool_responses" in last:
                last["tool_responses"].append(response)
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
            calls = [c for c in message.tool_calls if c.id != "function_call"]
            entry: dict[str, Any] = {"content": message.content, "role": "assistant"}
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
                if c.id == "function_call":
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
