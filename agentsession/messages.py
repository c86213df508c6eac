"""The canonical, version-neutral message: the bridge between AutoGen families and stores."""

from __future__ import annotations

import binascii
import json
import mimetypes
import os
import time
from base64 import b64decode, b64encode
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import CorruptRecord, UnknownSchemaVersion

SCHEMA_VERSION = 1
"""Version of the stored message record. Bumped (with a migration) whenever its shape changes."""
IMAGES_SCHEMA_VERSION = 2
"""The version of a record that carries images: an agentsession that predates images refuses
it (``UnknownSchemaVersion``) rather than dropping them. Records without images stay v1."""
_IMAGE_SCHEMES = ("https://", "http://", "data:")

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A request by the model to call a tool. ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class Image:
    """An image a message carries: its bytes (kept inline, base64 in the record) or a reference
    (``url``: https, or a ``data:`` URI). Families that need the bytes (agentchat) refuse a URL
    they would have to fetch."""

    mime: str = "image/png"
    data: bytes | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.url is None):
            raise ValueError("an Image has data or a url, not both and not neither")
        if self.url is not None and not self.url.startswith(_IMAGE_SCHEMES):
            raise ValueError("an image url is https://, http:// or a data: URI")
        if not self.mime.startswith("image/"):
            raise ValueError(f"not an image type: {self.mime!r}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], mime: str | None = None) -> Image:
        guessed = mime or mimetypes.guess_type(os.fspath(path))[0] or "image/png"
        with open(path, "rb") as file:
            return cls(guessed, data=file.read())

    @property
    def size(self) -> int:
        """Bytes kept inline (0 for a reference)."""
        return 0 if self.data is None else len(self.data)

    @property
    def base64(self) -> str | None:
        return None if self.data is None else b64encode(self.data).decode("ascii")

    @property
    def uri(self) -> str:
        """A URL for the image: its own, or a ``data:`` URI of its bytes."""
        return self.url if self.url is not None else f"data:{self.mime};base64,{self.base64}"

    def to_dict(self) -> dict[str, Any]:
        if self.data is not None:
            return {"mime": self.mime, "data": self.base64}
        return {"mime": self.mime, "url": self.url}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Image:
        data = record.get("data")
        return cls(
            str(record.get("mime", "image/png")),
            data=b64decode(data, validate=True) if data is not None else None,
            url=record.get("url"),
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation.

    A tool result is a ``role="tool"`` message carrying ``tool_call_id`` (and the tool's
    ``name``); an assistant message that calls tools carries ``tool_calls`` and usually no
    ``content``.
    """

    role: Role
    content: str | None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False
    created_at: float = field(default_factory=time.time)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    images: tuple[Image, ...] = ()
    """Images the message carries (a user's picture; where a family reports them)."""

    def to_dict(self) -> dict[str, Any]:
        version = IMAGES_SCHEMA_VERSION if self.images else SCHEMA_VERSION
        record: dict[str, Any] = {"v": version, "role": self.role, "content": self.content}
        if self.name is not None:
            record["name"] = self.name
        if self.tool_calls:
            record["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            record["tool_call_id"] = self.tool_call_id
        if self.is_error:
            record["is_error"] = True
        record["created_at"] = self.created_at
        if self.metadata:
            record["metadata"] = dict(self.metadata)
        if self.images:
            record["images"] = [image.to_dict() for image in self.images]
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], session_id: str = "?") -> Message:
        """Build a message from its record, checking it: a damaged record raises
        ``CorruptRecord`` naming ``session_id``, a newer schema ``UnknownSchemaVersion``."""
        version = record.get("v")
        if version != SCHEMA_VERSION and version != IMAGES_SCHEMA_VERSION:
            if isinstance(version, int) and version > IMAGES_SCHEMA_VERSION:
                raise UnknownSchemaVersion(
                    session_id,
                    f"message schema v{version} is newer than this agentsession "
                    f"(v{IMAGES_SCHEMA_VERSION}); upgrade agentsession",
                )
            raise CorruptRecord(session_id, f"message schema version {version!r} is not known")
        try:
            role = record["role"]
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}")
            content = record.get("content")
            if content is not None and not isinstance(content, str):
                raise ValueError("content is not text")
            calls = (
                tuple(
                    ToolCall(
                        id=str(c["id"]),
                        name=str(c["name"]),
                        arguments=str(c.get("arguments", "{}")),
                    )
                    for c in record["tool_calls"]
                )
                if "tool_calls" in record
                else ()
            )
            name = record.get("name")
            tool_call_id = record.get("tool_call_id")
            is_error = bool(record.get("is_error", False))
            created_at = float(record.get("created_at", 0.0))
            metadata = dict(record.get("metadata", ()))
            images = (
                tuple(Image.from_dict(image) for image in record["images"])
                if version == IMAGES_SCHEMA_VERSION
                else ()
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise CorruptRecord(session_id, f"malformed message: {exc}") from exc
        if cls is not Message:  # a subclass may add fields: its own __init__
            return cls(
                role, content, name, calls, tool_call_id, is_error, created_at, metadata, images
            )
        # the checked values go straight into the slots (see _setter below)
        message: Message = object.__new__(Message)
        _set_role(message, role)
        _set_content(message, content)
        _set_name(message, name)
        _set_tool_calls(message, calls)
        _set_tool_call_id(message, tool_call_id)
        _set_is_error(message, is_error)
        _set_created_at(message, created_at)
        _set_metadata(message, metadata)
        _set_images(message, images)
        return message

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, session_id: str = "?") -> Message:
        try:
            record = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptRecord(session_id, f"invalid JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise CorruptRecord(session_id, "a message record is not a JSON object")
        return cls.from_dict(record, session_id)


def user(text: str, name: str = "user") -> Message:
    return Message(role="user", content=text, name=name)


def assistant(text: str, name: str = "assistant") -> Message:
    return Message(role="assistant", content=text, name=name)


# Reading a long conversation builds thousands of messages, and the generated ``__init__`` of
# a frozen dataclass (keyword arguments, defaults, an ``object.__setattr__`` per field) was
# most of ``from_dict``'s time. ``from_dict`` fills the slots through their own descriptors
# instead, with the values it has checked; tests/test_messages.py checks that it sets every
# field.
def _setter(name: str) -> Callable[[Message, Any], None]:
    setter: Callable[[Message, Any], None] = Message.__dict__[name].__set__
    return setter


_set_role = _setter("role")
_set_content = _setter("content")
_set_name = _setter("name")
_set_tool_calls = _setter("tool_calls")
_set_tool_call_id = _setter("tool_call_id")
_set_is_error = _setter("is_error")
_set_created_at = _setter("created_at")
_set_metadata = _setter("metadata")
_set_images = _setter("images")


UNANSWERED_TOOL_RESULT = (
    "This tool call was not completed: the turn that made it ended before its result was recorded."
)
"""The text of the synthetic result ``close_unanswered_tool_calls`` gives a dangling tool call."""

REPAIRED = "agentsession.repaired"
"""``metadata`` key set on the synthetic results ``close_unanswered_tool_calls`` adds."""


def unanswered_tool_calls(messages: Sequence[Message]) -> list[ToolCall]:
    """The tool calls no result answers: the calls of an assistant message that are not
    answered by the ``tool`` messages right after it (before the next other message)."""
    return [call for _, calls in _dangling(messages) for call in calls]


def close_unanswered_tool_calls(
    messages: Sequence[Message], result: str = UNANSWERED_TOOL_RESULT
) -> list[Message]:
    """``messages`` with a synthetic error result after each unanswered tool call.

    A turn that stopped between a tool call and its result (a crash, a cancelled stream, a
    history written elsewhere) leaves a call that model providers reject on the next turn.
    Each such call is closed where its results belong, by a ``tool`` message with
    ``is_error=True``, ``content=result`` and ``metadata[REPAIRED] = True``, rather than
    rewriting history to pretend the call was never made. Nothing else changes; the result
    is deterministic, so repairing the same stored history twice gives the same messages.
    """
    dangling = dict(_dangling(messages))
    if not dangling:
        return list(messages)
    repaired: list[Message] = []
    for index, message in enumerate(messages):
        repaired.append(message)
        if index in dangling:
            created = message.created_at
            repaired += [
                Message(
                    "tool",
                    result,
                    name=call.name,
                    tool_call_id=call.id,
                    is_error=True,
                    created_at=created,
                    metadata={REPAIRED: True},
                )
                for call in dangling[index]
            ]
    return repaired


def _dangling(messages: Sequence[Message]) -> list[tuple[int, list[ToolCall]]]:
    """(index of the last message of each tool-call window, the window's unanswered calls)."""
    found: list[tuple[int, list[ToolCall]]] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        index += 1
        if message.role != "assistant" or not message.tool_calls:
            continue
        answered: set[str | None] = set()
        while index < len(messages) and messages[index].role == "tool":
            answered.add(messages[index].tool_call_id)
            index += 1
        missing = [call for call in message.tool_calls if call.id not in answered]
        if missing:
            found.append((index - 1, missing))
    return found
