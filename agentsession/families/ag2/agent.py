"""The ag2 driver: one user turn through one AG2 v1 ``Agent``.

The driver owns one ``MemoryStream`` per conversation, on a storage of its own, so a turn is
``await agent.ask(text, stream=stream)`` and the stream's event log is the conversation. Apps
that call their agent themselves keep AG2's streams and use
``agentsession.integrations.ag2.AgentSessionStorage`` (an ``ag2.history.Storage``) instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from ...messages import Image, Message, close_unanswered_tool_calls
from ...turns import Emit, MessageEvent, Turn, ignore
from .._representable import require_representable
from ..base import Driver, refuse_images
from .conversion import to_canonical, to_native, usage_of

if TYPE_CHECKING:
    from ag2 import Agent, MemoryStream
    from ag2.history import MemoryStorage


class Ag2Driver(Driver):
    """Drives one ``ag2.Agent`` on a stream of its own.

    The stream id is a fresh UUID per driver: AG2 serialises turns per stream id with one
    in-process lock, so two conversations never share a stream or a lock.
    """

    agent: Agent

    def __init__(self, agent: Agent, version: Version) -> None:
        from ag2 import MemoryStream
        from ag2.history import MemoryStorage

        self.agent = agent
        self.version = version
        self.storage: MemoryStorage = MemoryStorage()
        self.stream: MemoryStream = MemoryStream(self.storage, id=uuid.uuid4())

    async def _events(self) -> list[Any]:
        return list(await self.storage.get_history(self.stream.id))

    async def run_turn(
        self,
        text: str,
        sender: str = "user",
        emit: Emit = ignore,
        *,
        images: Sequence[Image] = (),
    ) -> Turn:
        refuse_images(images, self)
        start = len(await self._events())
        emitted: list[Message] = []

        async def report(event: Any) -> None:
            # the turn so far, converted whole (a result is named after its call); the
            # messages not reported yet are emitted as they finish
            turn = self._turn((await self._events())[start:], sender)
            for message in turn[len(emitted) :]:
                emitted.append(message)
                emit(MessageEvent(message))

        with self.stream.sub_scope(report, sync_to_thread=False):
            await self.agent.ask(text, stream=self.stream)
        events = (await self._events())[start:]
        messages = self._turn(events, sender)
        for message in messages[len(emitted) :]:
            emit(MessageEvent(message))
        return Turn(tuple(messages), usage=usage_of(events))

    def _turn(self, events: list[Any], sender: str) -> list[Message]:
        messages = to_canonical(events, self.agent.name)
        if messages and messages[0].role == "user":
            # AG2 requests carry no sender; the stored conversation keeps who spoke
            first = messages[0]
            messages[0] = Message("user", first.content, name=sender, created_at=first.created_at)
        return messages

    async def export_history(self) -> list[Message]:
        return to_canonical(await self._events(), self.agent.name)

    async def import_history(self, messages: Sequence[Message]) -> None:
        require_representable(messages, "ag2")
        await self.stream.history.replace(to_native(close_unanswered_tool_calls(messages)))

    async def extend_history(self, messages: Sequence[Message]) -> bool:
        require_representable(messages, "ag2")
        added = to_native(close_unanswered_tool_calls(messages))
        await self.stream.history.replace([*await self._events(), *added])
        return True
