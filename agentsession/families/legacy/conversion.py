"""Legacy message dicts (the assistant's view, OpenAI style) to canonical messages and back."""

from __future__ import annotations

import logging
from base64 import b64decode
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import FamilyError
from ...messages import Image, Message, ToolCall

logger = logging.getLogger("agentsession")

FUNCTION_CALL_ID = "function_call"  # the pre-tools ``function_call`` form has no call id


def _calls_tools(reply: Any) -> bool:
    return isinstance(reply, Mapping) and bool(
        reply.get("tool_calls") or reply.get("function_call")
    )


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: the text ones (images go apart)
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return str(content)


def _images(content: Any) -> tuple[Image, ...]:
    """The ``image_url`` parts of OpenAI-style content: a link, or a ``data:`` URI's bytes."""
    if not isinstance(content, list):
        return ()
    found = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") == "text":
            continue
        url = (part.get("image_url") or {}).get("url") if part.get("type") == "image_url" else None
        if not isinstance(url, str):
            logger.warning("a part of a multimodal message that is not text or an image is dropped")
        elif url.startswith("data:"):
            header, _, data = url.partition(",")
            mime = header[len("data:") :].split(";")[0] or "image/png"
            found.append(Image(mime, data=b64decode(data)))
        else:
            found.append(Image(url=url))
    return tuple(found)


def content_parts(text: str | None, images: Sequence[Image]) -> list[dict[str, Any]]:
    """A user message's text and images as OpenAI-style content parts."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": text or ""}]
    parts += [{"type": "image_url", "image_url": {"url": image.uri}} for image in images]
    return parts


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
                calls.append(ToolCall(FUNCTION_CALL_ID, fc["name"], fc.get("arguments") or "{}"))
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
                Message("tool", content, name=raw.get("name"), tool_call_id=FUNCTION_CALL_ID)
            )
        elif role in ("user", "assistant", "system"):
            default = user_name if role == "user" else assistant_name
            images = _images(raw.get("content"))
            out.append(Message(role, content, name=raw.get("name") or default, images=images))
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
        if message.role == "tool":
            add_tool_result(native, message, user_name)
        elif message.tool_calls:
            native.append(native_tool_calls(message))
        else:
            default = user_name if message.role == "user" else assistant_name
            content: Any = message.content
            if message.images:
                content = content_parts(message.content, message.images)
            native.append(
                {"content": content, "role": message.role, "name": message.name or default}
            )
    return native


def add_tool_result(native: list[dict[str, Any]], message: Message, executor: str) -> None:
    """Append a canonical tool result as AutoGen keeps it: into the ``tool_responses`` of the
    ``role: "tool"`` message just before (the results of one call message travel together),
    or as a new one from ``executor``; the old ``function_call`` form as a ``function`` reply."""
    if message.tool_call_id == FUNCTION_CALL_ID:
        native.append({"content": message.content, "role": "function", "name": message.name})
        return
    response = {"tool_call_id": message.tool_call_id, "role": "tool", "content": message.content}
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
                "name": executor,
            }
        )


def native_tool_calls(message: Message) -> dict[str, Any]:
    """An assistant message's tool calls as AutoGen keeps them (``tool_calls``, and the old
    ``function_call`` form)."""
    entry: dict[str, Any] = {"content": message.content, "role": "assistant"}
    calls = [c for c in message.tool_calls if c.id != FUNCTION_CALL_ID]
    if calls:
        entry["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    for c in message.tool_calls:
        if c.id == FUNCTION_CALL_ID:
            entry["function_call"] = {"name": c.name, "arguments": c.arguments}
    return entry


def _mirrored(message: Mapping[str, Any]) -> dict[str, Any]:
    """The peer's copy of a message: user and assistant roles swap, tool results do not."""
    swapped = {"user": "assistant", "assistant": "user"}
    mirror = dict(message)
    if "tool_calls" not in mirror and "function_call" not in mirror:
        mirror["role"] = swapped.get(str(mirror.get("role")), mirror.get("role"))
    return mirror
