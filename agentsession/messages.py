"""The canonical, version-neutral message: the bridge between AutoGen families and stores."""

from __future__ import annotations

import binascii
import json
import mimetypes
import os
import time
from base64 import b64decode, b64encode
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import msgspec

from .errors import CorruptRecord, UnknownSchemaVersion

SCHEMA_VERSION = 1
"""Version of the stored message record. Bumped (with a migration) whenever its shape changes."""
IMAGES_SCHEMA_VERSION = 2
"""The version of a record that carries images: an agentsession that predates images refuses
it (``UnknownSchemaVersion``) rather than dropping them. Records without images stay v1."""
_IMAGE_SCHEMES = ("https://", "http://", "data:")

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))


class _NoMetadata(Mapping[str, Any]):
    """The metadata of a message that has none: an empty mapping shared by every such message.

    A shared immutable default instead of a ``dict`` per message: reading a long conversation
    would otherwise call a default factory for almost every record.
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


NO_METADATA: Mapping[str, Any] = _NoMetadata()


class ToolCall(msgspec.Struct, frozen=True, gc=False):
    """A request by the model to call a tool. ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"


class Image(msgspec.Struct, frozen=True, gc=False):
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


class Message(msgspec.Struct, frozen=True, gc=False, tag_field="v", tag=SCHEMA_VERSION):
    """One message of a conversation: an immutable msgspec ``Struct`` (copy one with changes
    with ``msgspec.structs.replace(message, content=...)``).

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
    created_at: float = msgspec.field(default_factory=time.time)
    metadata: Mapping[str, Any] = NO_METADATA
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
            metadata = dict(record["metadata"]) if "metadata" in record else NO_METADATA
            images = (
                tuple(Image.from_dict(image) for image in record["images"])
                if version == IMAGES_SCHEMA_VERSION
                else ()
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise CorruptRecord(session_id, f"malformed message: {exc}") from exc
        return cls(role, content, name, calls, tool_call_id, is_error, created_at, metadata, images)

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


class _ImagesRecord(Message, frozen=True, gc=False, tag=IMAGES_SCHEMA_VERSION):
    """A v2 record as ``decode_records`` meets it; returned as a plain ``Message``."""


# Every record's "v" must be one of the two known versions: as the tag of a union, msgspec
# requires it, so the one pass that builds the messages also checks the schema version.
_RECORDS = msgspec.json.Decoder(list[Message | _ImagesRecord])


def decode_records(records: str | bytes, count: int) -> list[Message] | None:
    """The messages of ``records``, a JSON array of ``count`` message records, or ``None`` if
    any record is not a well-formed record of a known schema version.

    msgspec checks every field against ``Message``'s types, and every record's schema
    version, in C and in one pass: that is what makes a cold read of a long conversation
    cheap. On ``None`` the caller decodes the records one by one with ``Message.from_dict``,
    so the error it raises names what is wrong, and where.
    """
    try:
        messages = _RECORDS.decode(records)
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError
        return None
    if len(messages) != count:  # a record that held more (or less) than one message
        return None
    if _ImagesRecord in set(map(type, messages)):
        messages = [
            Message(*msgspec.structs.astuple(m)) if type(m) is _ImagesRecord else m
            for m in messages
        ]
    return messages


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
