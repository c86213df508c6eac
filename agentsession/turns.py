"""What a turn produces: the ``Turn`` it records, and the events a streamed turn yields.

One turn is one user message run through the agent (or team) until it answers. ``run_turn``
returns the ``Turn``; ``stream`` yields the same turn as it happens: ``TextDelta`` while a
message is being written (where the model client streams), ``MessageEvent`` for each finished
message (the user's, a tool call, a tool result, every speaker's reply), and ``TurnEnd`` with
the whole ``Turn`` last. ``send`` and ``run_turn`` are built on the same mechanism.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, overload

from .messages import Message


@dataclass(frozen=True, slots=True)
class Usage:
    """Model tokens a turn used, where the family reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True, slots=True)
class Turn(Sequence[Message]):
    """Everything one user turn added to the conversation, in order: the user's message first,
    then tool calls, tool results and every speaker's messages, the final reply last.

    A ``Turn`` is a sequence of those messages (``turn[-1]`` is the reply message), with what
    the family reports about the turn beside them.
    """

    messages: tuple[Message, ...]
    stop_reason: str | None = None
    """Why the turn ended, where the family says (a team's termination condition, ``max_round``)."""
    usage: Usage | None = None
    """Tokens the model calls of this turn used, where the family reports them."""
    replayed: bool = False
    """True when a retry with the same idempotency key returned the stored turn unchanged."""

    @overload
    def __getitem__(self, index: int) -> Message: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Message]: ...
    def __getitem__(self, index: int | slice) -> Message | Sequence[Message]:
        return self.messages[index]

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    @property
    def reply(self) -> str:
        """The final reply's text (what ``send`` returns)."""
        if not self.messages:
            return ""
        return self.messages[-1].content or ""

    @property
    def speaker(self) -> str | None:
        """Who gave the final reply."""
        return self.messages[-1].name if self.messages else None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "messages": [m.to_dict() for m in self.messages],
            "reply": self.reply,
            "stop_reason": self.stop_reason,
        }
        if self.usage is not None:
            record["usage"] = self.usage.to_dict()
        if self.replayed:
            record["replayed"] = True
        return record


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of a message being written, as the model client streams it."""

    text: str
    speaker: str | None = None
    type: ClassVar[str] = "delta"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.text, "speaker": self.speaker}


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A finished message: the user's, a tool call, a tool result or a speaker's reply."""

    message: Message
    type: ClassVar[str] = "message"

    @property
    def kind(self) -> Literal["message", "tool_call", "tool_result"]:
        if self.message.role == "tool":
            return "tool_result"
        if self.message.tool_calls:
            return "tool_call"
        return "message"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "kind": self.kind, "message": self.message.to_dict()}


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """The last event of a streamed turn: the turn as it was recorded."""

    turn: Turn
    type: ClassVar[str] = "end"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "turn": self.turn.to_dict()}


TurnEvent = TextDelta | MessageEvent | TurnEnd

Emit = Callable[[TextDelta | MessageEvent], None]
"""How a family driver reports a turn's progress; safe to call from any thread."""


def ignore(event: TextDelta | MessageEvent) -> None:
    """The ``Emit`` of a turn nobody streams."""


__all__ = ["Emit", "MessageEvent", "TextDelta", "Turn", "TurnEnd", "TurnEvent", "Usage", "ignore"]
