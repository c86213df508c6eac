"""The offline model behind an OpenAI-style request: the messages it was sent become
agentsession ``Message``\\ s, its reply becomes an OpenAI assistant message.

One translation for every OpenAI-shaped caller: the legacy ``OfflineModelClient`` (AutoGen hands
it the chat-completions parameters) and :class:`~agentsession.offline.openai_server.OfflineOpenAIServer`
(any OpenAI client sends them over HTTP). Nothing here imports AutoGen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..families.legacy.conversion import _images, _text
from ..messages import Message, ToolCall
from . import OfflineReply, compose_reply

MODEL = "agentsession-offline"
"""The model name the offline clients and server answer as, unless a request names one."""


def to_messages(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """What the model was sent (system message first, tool results one per message)."""
    names: dict[str, str] = {}  # a tool result names its call only by id
    out = []
    for raw in messages:
        role = raw.get("role")
        calls = tuple(
            ToolCall(
                str(c.get("id")), c["function"]["name"], c["function"].get("arguments") or "{}"
            )
            for c in raw.get("tool_calls") or ()
        )
        names.update((call.id, call.name) for call in calls)
        content = raw.get("content")
        images = _images(content)  # OpenAI content parts: the text, and each image_url
        text = (
            content
            if isinstance(content, str) or content is None
            else (_text(content) if isinstance(content, list) else json.dumps(content))
        )
        if role in ("tool", "function"):
            call_id = str(raw.get("tool_call_id", ""))
            name = names.get(call_id) or raw.get("name")
            out.append(Message("tool", text, name=name, tool_call_id=call_id))
        elif calls:
            out.append(Message("assistant", text, name=raw.get("name"), tool_calls=calls))
        elif role in ("user", "assistant", "system"):
            out.append(Message(role, text, name=raw.get("name"), images=images))
    return out


def tool_names(tools: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """The names of the tools offered (the ``tools`` parameter of chat completions)."""
    return [str((tool.get("function") or {}).get("name", "")) for tool in tools or ()]


def answer(
    params: Mapping[str, Any], speaker: str | None = None, terminate: str | None = None
) -> OfflineReply:
    """The offline model's reply to chat-completions ``params`` (``messages``, ``tools``)."""
    history = to_messages(params.get("messages") or [])
    return compose_reply(
        history, speaker, tools=tool_names(params.get("tools")), terminate=terminate
    )


def assistant_message(reply: OfflineReply) -> dict[str, Any]:
    """``reply`` as an OpenAI assistant message: its text, or its one tool call."""
    if reply.tool_call is None:
        return {"role": "assistant", "content": reply.text or ""}
    call = reply.tool_call
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
        ],
    }
