"""What of a stored conversation each family can hold: the check behind migration.

A conversation moves between families through canonical messages. Most of it crosses
everywhere (text, tool calls, tool results); what does not is reported here, by message,
as one of three kinds:

- ``error``: the family cannot hold it; loading the conversation raises ``NotRepresentable``
  and nothing is changed (a ``system`` message has no AG2 v1 event; a tool result that answers
  no earlier call is rejected by every model provider);
- ``loss``: it loads, but a detail is dropped (the legacy API has no error flag on tool
  results; AG2 v1 requests carry no sender name);
- ``repair``: a tool call that no result answers is closed on load with a synthetic error
  result (``close_unanswered_tool_calls``); the stored conversation is not changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import NotRepresentable
from ..messages import Message, unanswered_tool_calls

Kind = Literal["error", "loss", "repair"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing of a conversation a family cannot hold as it is."""

    index: int | None
    kind: Kind
    detail: str

    def __str__(self) -> str:
        where = f"message {self.index}" if self.index is not None else "conversation"
        return f"{where}: {self.kind}: {self.detail}"


def findings(messages: Sequence[Message], family: str) -> list[Finding]:
    """Everything of ``messages`` that ``family`` cannot hold unchanged, oldest first."""
    found: list[Finding] = []
    calls: set[str] = set()
    senders: set[str] = set()
    for index, message in enumerate(messages):
        if message.role == "assistant":
            calls.update(call.id for call in message.tool_calls)
        elif message.role == "tool":
            if message.tool_call_id not in calls:
                found.append(
                    Finding(
                        index,
                        "error",
                        f"a tool result (call id {message.tool_call_id!r}) answers no earlier "
                        "tool call; model providers reject it",
                    )
                )
            elif message.is_error and family == "legacy":
                found.append(
                    Finding(
                        index,
                        "loss",
                        "the legacy API has no error flag on tool results: the result's text "
                        "is kept, is_error is not",
                    )
                )
        elif message.role == "system" and family == "ag2":
            found.append(
                Finding(
                    index,
                    "error",
                    "AG2 v1 has no system message in a conversation's history (its prompt is "
                    "configuration); remove the message or keep the conversation on another family",
                )
            )
        elif message.role == "user" and family == "ag2" and message.name not in (None, "user"):
            senders.add(message.name or "")
    if senders:
        found.append(
            Finding(
                None,
                "loss",
                "AG2 v1 requests carry no sender name; the model does not see "
                + ", ".join(sorted(repr(name) for name in senders)),
            )
        )
    found += [
        Finding(
            None,
            "repair",
            f"tool call {call.name!r} ({call.id!r}) has no result; it is closed with a "
            "synthetic error result when the conversation is loaded",
        )
        for call in unanswered_tool_calls(messages)
    ]
    return found


def require_representable(messages: Sequence[Message], family: str) -> None:
    """``NotRepresentable`` if ``family`` cannot hold ``messages`` (nothing is changed)."""
    errors = [finding for finding in findings(messages, family) if finding.kind == "error"]
    if errors:
        raise NotRepresentable(family, [str(error) for error in errors])
