"""AG2 v1 history events to canonical messages and back.

An AG2 v1 conversation is the event log of its stream. Three kinds of events are what a model
provider is sent, and so are the conversation: a ``ModelRequest`` (the user's inputs), a
``ModelResponse`` (the model's text and tool calls) and a ``ToolResultsEvent`` (the results of
one batch of calls; a ``ToolErrorEvent`` result is a failed call). Those cross into canonical
messages. The rest is AG2's own bookkeeping and stays behind: ``ToolCallsEvent`` and loose
``ToolResultEvent`` copies (the same calls and results again), ``UsageEvent`` (read into the
turn's usage), lifecycle, human-input and compaction events. A loose result or a call batch
that no wrapper covers (a turn that died in between) is kept, so nothing the turn did is lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ...messages import Message, ToolCall
from ...turns import Usage

if TYPE_CHECKING:
    from ag2.events import BaseEvent

logger = logging.getLogger("agentsession")

# bookkeeping events: never part of the stored conversation, not worth a warning
_SILENT = frozenset(
    (
        "ToolCallsEvent",
        "ToolCallEvent",
        "UsageEvent",
        "HumanInputRequest",
        "ToolApprovalRequest",
        "HumanMessage",
    )
)


def to_canonical(
    events: Iterable[BaseEvent], agent_name: str | None = None, user_name: str | None = None
) -> list[Message]:
    """Canonical messages from a stream's history events (oldest first)."""
    from ag2.events import (
        ModelRequest,
        ModelResponse,
        ToolCallsEvent,
        ToolErrorEvent,
        ToolResultEvent,
        ToolResultsEvent,
    )

    history = list(events)
    wrapped = {r.parent_id for e in history if isinstance(e, ToolResultsEvent) for r in e.results}
    responded = {
        call.id for e in history if isinstance(e, ModelResponse) for call in e.tool_calls.calls
    }
    names: dict[str, str] = {}
    messages: list[Message] = []

    def result(event: Any) -> Message:
        return Message(
            "tool",
            _result_text(event.result.parts),
            name=event.name or names.get(event.parent_id),
            tool_call_id=event.parent_id,
            is_error=isinstance(event, ToolErrorEvent),
            created_at=_when(event),
        )

    for event in history:
        if isinstance(event, ModelRequest):
            messages.append(
                Message("user", _inputs_text(event.parts), name=user_name, created_at=_when(event))
            )
        elif isinstance(event, ModelResponse):
            calls = tuple(
                ToolCall(c.id, c.name, c.arguments or "{}") for c in event.tool_calls.calls
            )
            names.update((call.id, call.name) for call in calls)
            text = event.message.content if event.message is not None else None
            messages.append(
                Message(
                    "assistant", text, name=agent_name, tool_calls=calls, created_at=_when(event)
                )
            )
        elif isinstance(event, ToolResultsEvent):
            messages += [result(r) for r in event.results]
        elif isinstance(event, ToolResultEvent):
            if event.parent_id not in wrapped:  # the turn died before the batch was wrapped
                messages.append(result(event))
        elif isinstance(event, ToolCallsEvent):
            fresh = tuple(ToolCall(c.id, c.name, c.arguments or "{}") for c in event.calls)
            fresh = tuple(call for call in fresh if call.id not in responded)
            if fresh:  # calls no ModelResponse carries (died between the two records)
                names.update((call.id, call.name) for call in fresh)
                responded.update(call.id for call in fresh)
                messages.append(
                    Message(
                        "assistant",
                        None,
                        name=agent_name,
                        tool_calls=fresh,
                        created_at=_when(event),
                    )
                )
        elif type(event).__name__ not in _SILENT:
            logger.debug(
                "AG2 %s event is not part of the stored conversation", type(event).__name__
            )
    return messages


def to_native(messages: Sequence[Message]) -> list[BaseEvent]:
    """History events for a stream: requests, responses and one ``ToolResultsEvent`` per
    batch of consecutive tool results. System messages have no AG2 event; the family refuses
    a conversation holding one before it gets here."""
    from ag2.events import (
        ModelMessage,
        ModelRequest,
        ModelResponse,
        TextInput,
        ToolCallEvent,
        ToolCallsEvent,
        ToolErrorEvent,
        ToolResult,
        ToolResultEvent,
        ToolResultsEvent,
    )

    native: list[Any] = []
    for message in messages:
        if message.role == "tool":
            text = message.content or ""
            event: Any
            if message.is_error:
                event = ToolErrorEvent(
                    parent_id=message.tool_call_id or "",
                    name=message.name,
                    error=Exception(text),
                    result=ToolResult(text),
                )
            else:
                event = ToolResultEvent(
                    parent_id=message.tool_call_id or "", name=message.name, result=ToolResult(text)
                )
            if native and isinstance(native[-1], ToolResultsEvent):
                native[-1].results.append(event)
            else:
                native.append(ToolResultsEvent([event]))
        elif message.role == "user":
            native.append(ModelRequest([TextInput(message.content or "")]))
        elif message.role == "assistant":
            calls = [
                ToolCallEvent(call.name, id=call.id, arguments=call.arguments)
                for call in message.tool_calls
            ]
            reply = message.content
            native.append(
                ModelResponse(
                    ModelMessage(reply) if reply else None, tool_calls=ToolCallsEvent(calls)
                )
            )
    return native


def usage_of(events: Iterable[BaseEvent]) -> Usage | None:
    """The model usage the ``UsageEvent``s among ``events`` report."""
    total: Usage | None = None
    for event in events:
        if type(event).__name__ != "UsageEvent":
            continue
        used: Any = getattr(event, "usage", None)
        counted = Usage(int(used.prompt_tokens or 0), int(used.completion_tokens or 0))
        total = counted if total is None else total + counted
    return total


def _when(event: Any) -> float:
    """The event's own time (so converting the same events twice gives the same messages)."""
    created = getattr(event, "created_at", None)
    return float(created) if isinstance(created, (int, float)) else time.time()


def _inputs_text(parts: Iterable[Any]) -> str:
    texts = []
    for part in parts:
        kind = type(part).__name__
        if kind == "TextInput":
            texts.append(str(part.content))
        elif kind == "DataInput":
            texts.append(json.dumps(part.data, ensure_ascii=False, default=str))
        else:
            logger.warning("an AG2 %s is stored as the text '[image]'", kind)
            texts.append("[image]")
    return "\n".join(texts)


def _result_text(parts: Iterable[Any]) -> str:
    return _inputs_text(parts)
