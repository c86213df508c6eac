"""Agent Framework ``Message`` objects to canonical messages and back.

An Agent Framework message holds a list of ``Content`` items: text, function calls, function
results, images, reasoning, usage and hosted-tool activity. What crosses into the canonical
form is the conversation: text, function calls (``ToolCall``), function results (one canonical
``tool`` message each, ``is_error`` when the result carries an exception) and reasoning text
(``metadata["thought"]``, kept but never sent back to a model). Images become the text ``[image]`` (logged); usage is dropped;
hosted-tool activity (code interpreter, MCP server calls, approval requests, …) is dropped
with a warning, since no other family can replay it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import FamilyError
from ...messages import Message, ToolCall

if TYPE_CHECKING:
    from agent_framework import Content
    from agent_framework import Message as NativeMessage

logger = logging.getLogger("agentsession")

# content kinds that are bookkeeping, not conversation: dropped silently
_SILENT = frozenset(("usage",))
_MEDIA = frozenset(("data", "uri", "hosted_file"))


def to_canonical(native: Iterable[NativeMessage]) -> list[Message]:
    """Canonical messages from Agent Framework messages (history order)."""
    messages: list[Message] = []
    call_names: dict[str, str] = {}
    for item in native:
        role = str(item.role)
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ToolCall] = []
        results: list[Message] = []
        for content in item.contents:
            kind = str(content.type)
            if kind == "text":
                texts.append(content.text or "")
            elif kind == "text_reasoning":
                thoughts.append(content.text or "")
            elif kind == "function_call":
                call = ToolCall(
                    id=str(content.call_id),
                    name=str(content.name),
                    arguments=_arguments(content.arguments),
                )
                call_names[call.id] = call.name
                calls.append(call)
            elif kind == "function_result":
                call_id = str(content.call_id)
                results.append(
                    Message(
                        role="tool",
                        content=_result_text(content),
                        name=call_names.get(call_id),
                        tool_call_id=call_id,
                        is_error=content.exception is not None,
                    )
                )
            elif kind in _MEDIA:
                logger.warning(
                    "an image or file in an Agent Framework message is stored as '[image]'"
                )
                texts.append("[image]")
            elif kind not in _SILENT:
                logger.warning(
                    "Agent Framework %r content is not part of the stored conversation", kind
                )
        if results:
            messages += results
            continue
        text = "\n".join(texts) if texts else None
        metadata = {"thought": "\n".join(thoughts)} if thoughts else {}
        if role == "assistant":
            messages.append(
                Message(
                    "assistant",
                    text if (text or not calls) else None,
                    name=item.author_name,
                    tool_calls=tuple(calls),
                    metadata=metadata,
                )
            )
        elif role == "user":
            messages.append(Message("user", text or "", name=item.author_name, metadata=metadata))
        elif role == "system":
            messages.append(Message("system", text or "", metadata=metadata))
        elif role == "tool":
            continue  # a tool message without results: nothing to keep
        else:
            raise FamilyError(
                f"an Agent Framework message has the role {role!r}, which this agentsession "
                "does not know. Upgrade agentsession."
            )
    return messages


def to_native(messages: Sequence[Message]) -> list[NativeMessage]:
    """Agent Framework messages for a session's history; consecutive tool results travel in
    one ``tool`` message, as the framework's function invocation writes them."""
    from agent_framework import Content
    from agent_framework import Message as NativeMessage

    native: list[NativeMessage] = []
    for message in messages:
        if message.role == "tool":
            result = Content.from_function_result(
                message.tool_call_id or "",
                result=message.content or "",
                exception=(message.content or "error") if message.is_error else None,
            )
            last = native[-1] if native else None
            if last is not None and last.role == "tool":
                last.contents.append(result)
            else:
                native.append(NativeMessage("tool", [result]))
            continue
        # metadata["thought"] stays behind: a provider's reasoning items carry ids and
        # signatures of its own that no other family keeps, so they are not replayed
        contents: list[Content] = []
        if message.content is not None and (message.content or not message.tool_calls):
            contents.append(Content.from_text(message.content))
        contents += [
            Content.from_function_call(call.id, call.name, arguments=call.arguments)
            for call in message.tool_calls
        ]
        native.append(NativeMessage(message.role, contents, author_name=message.name))
    return native


def _arguments(arguments: str | Mapping[str, Any] | None) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(dict(arguments), ensure_ascii=False)


def _result_text(content: Content) -> str:
    result = content.result
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(result)
