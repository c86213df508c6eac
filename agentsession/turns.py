"""What a turn produces: the ``Turn`` it records, and the events a streamed turn yields.

One turn is one user message run through the agent (or team) until it answers. ``run_turn``
returns the ``Turn``; ``stream`` yields the same turn as it happens: ``TurnStart`` once the turn
holds its conversation, ``TextDelta`` while a message is being written (where the model client
streams), ``MessageEvent`` for each finished message (the user's, a tool call, a tool result,
every speaker's reply), and ``TurnEnd`` with the whole ``Turn`` last. ``send`` and ``run_turn``
are built on the same mechanism. Every event has a JSON form (``to_dict``/``event_from_dict``),
which is also how a streamed turn's journal keeps them for readers that reconnect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, overload

from .errors import CorruptRecord
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


# ``seq`` numbers a streamed turn's events from 0 (its ``TurnStart``), and ``turn_id`` names
# the turn; -1 and "" on an event that was not numbered (a driver's, before the engine hands it
# on). ``to_dict`` leaves ``turn_id`` out but for ``TurnStart``: a journal keeps it once.


@dataclass(frozen=True, slots=True)
class TurnStart:
    """The first event of a streamed turn: it holds its conversation and passed its checks."""

    session_id: str
    turn_id: str = ""
    """Names this streamed turn: a reader that reconnects resumes it by ``(turn_id, seq)``."""
    seq: int = -1
    type: ClassVar[str] = "start"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "turn_id": self.turn_id}


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of a message being written, as the model client streams it."""

    text: str
    speaker: str | None = None
    seq: int = -1
    turn_id: str = ""
    type: ClassVar[str] = "delta"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "text": self.text, "speaker": self.speaker}


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A finished message: the user's, a tool call, a tool result or a speaker's reply."""

    message: Message
    seq: int = -1
    turn_id: str = ""
    type: ClassVar[str] = "message"

    @property
    def kind(self) -> Literal["message", "tool_call", "tool_result"]:
        if self.message.role == "tool":
            return "tool_result"
        if self.message.tool_calls:
            return "tool_call"
        return "message"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "kind": self.kind,
            "message": self.message.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """The last event of a streamed turn: the turn as it was recorded."""

    turn: Turn
    seq: int = -1
    turn_id: str = ""
    type: ClassVar[str] = "end"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "seq": self.seq, "turn": self.turn.to_dict()}


TurnEvent = TurnStart | TextDelta | MessageEvent | TurnEnd

Emit = Callable[[TurnStart | TextDelta | MessageEvent], None]
"""How a family driver reports a turn's progress; safe to call from any thread."""


def ignore(event: TurnStart | TextDelta | MessageEvent) -> None:
    """The ``Emit`` of a turn nobody streams."""


def event_from_dict(
    record: Mapping[str, Any], session_id: str = "?", turn_id: str = ""
) -> TurnEvent:
    """The event whose ``to_dict()`` is ``record`` (as a streamed turn's journal keeps it), of
    the turn ``turn_id``."""
    try:
        kind, seq = record["type"], int(record.get("seq", -1))
        if kind == "delta":
            return TextDelta(str(record["text"]), record.get("speaker"), seq, turn_id)
        if kind == "message":
            return MessageEvent(Message.from_dict(record["message"], session_id), seq, turn_id)
        if kind == "start":
            return TurnStart(session_id, str(record["turn_id"]), seq)
        if kind == "end":
            turn = record["turn"]
            usage = turn.get("usage")
            return TurnEnd(
                Turn(
                    tuple(Message.from_dict(m, session_id) for m in turn["messages"]),
                    turn.get("stop_reason"),
                    Usage(**usage) if usage else None,
                    bool(turn.get("replayed", False)),
                ),
                seq,
                turn_id,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecord(session_id, f"malformed journal event: {exc!r}") from exc
    raise CorruptRecord(session_id, f"unknown journal event type {kind!r}")


__all__ = [
    "Emit",
    "MessageEvent",
    "TextDelta",
    "Turn",
    "TurnEnd",
    "TurnEvent",
    "TurnStart",
    "Usage",
    "event_from_dict",
    "ignore",
]
