"""Apps and instruments shared by the adapter tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentsession import Message
from agentsession.stores.memory import MemoryStore

SECRET = "test-secret-key"


class CountingStore(MemoryStore):
    """A real MemoryStore that counts every call made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def info(self, session_id: str) -> Any:
        self.calls += 1
        return await super().info(session_id)

    async def load(self, session_id: str) -> Any:
        self.calls += 1
        return await super().load(session_id)

    async def append(
        self, session_id: str, messages: Sequence[Message], expected_version: int
    ) -> int:
        self.calls += 1
        return await super().append(session_id, messages, expected_version)

    async def create(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        self.calls += 1
        await super().create(session_id, metadata)

    async def acquire(self, session_id: str, ttl: float) -> str | None:
        self.calls += 1
        return await super().acquire(session_id, ttl)


def set_cookie_headers(headers: Any) -> list[str]:
    return (
        [v for k, v in headers.multi_items() if k.lower() == "set-cookie"]
        if hasattr(headers, "multi_items")
        else headers.getlist("Set-Cookie")
    )
