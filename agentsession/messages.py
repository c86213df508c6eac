"""The canonical, version-neutral message: the bridge between AutoGen families and stores."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import CorruptRecord, UnknownSchemaVersion

SCHEMA_VERSION = 1
"""Version of the stored message record. Bumped (with a migration) whenever its shape changes."""

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A request by the model to call a tool. ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"


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

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"v": SCHEMA_VERSION, "role": self.role, "content": self.content}
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
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], session_id: str = "?") -> Message:
        version = record.get("v")
        if version != SCHEMA_VERSION:
            if isinstance(version, int) and version > SCHEMA_VERSION:
                raise UnknownSchemaVersion(
                    session_id,
                    f"message schema v{version} is newer than this agentsession (v{SCHEMA_VERSION}); "
                    "upgrade agentsession",
                )
            raise CorruptRecord(session_id, f"message schema version {version!r} is not known")
        try:
            role = record["role"]
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}")
            content = record.get("content")
            if content is not None and not isinstance(content, str):
                raise ValueError("content is not text")
            calls = tuple(
                ToolCall(
                    id=str(c["id"]), name=str(c["name"]), arguments=str(c.get("arguments", "{}"))
                )
                for c in record.get("tool_calls", ())
            )
            return cls(
                role=role,
                content=content,
                name=record.get("name"),
                tool_calls=calls,
                tool_call_id=record.get("tool_call_id"),
                is_error=bool(record.get("is_error", False)),
                created_at=float(record.get("created_at", 0.0)),
                metadata=dict(record.get("metadata", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecord(session_id, f"malformed message: {exc}") from exc

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
