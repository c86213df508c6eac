"""agentsession inside AG2 v1: an ``ag2.history.Storage`` on agentsession's stores.

For an app that calls its agent itself (``await agent.ask(text, stream=stream)``,
``await reply.ask(...)``) and wants SQL/Redis/SQLite storage, turn serialisation across
processes, TTL, encryption and the admin CLI::

    from ag2 import Agent
    from agentsession.integrations.ag2 import AgentSessionStorage

    storage = AgentSessionStorage("sqlite:///agentsession.db")
    agent = Agent("assistant", "You are helpful.", config=..., middleware=[storage.turn_guard])

    reply = await agent.ask("hello", stream=storage.stream(conversation_id))
    reply = await reply.ask("and then?")                   # the same conversation

AG2 appends each event as it happens. agentsession records a turn whole: the storage buffers
a turn's events and appends them as one fenced turn when the turn ends (its final
``ModelResponse``, or the end of ``turn_guard``), under the conversation's turn lease taken when
the turn's first event arrives — the lease a ``SessionManager`` takes, so the two serialise
against each other and across processes. A turn that fails is recorded as what happened,
with every unanswered tool call closed by a synthetic error result; a process that dies in
the middle of a turn records nothing of it. Streams are keyed by
``uuid5(STREAM_NAMESPACE, conversation_id)``, one stream per conversation.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ag2 import MemoryStream
from ag2.events import BaseEvent, DrainedModelRequest, ModelRequest, ModelResponse

from ..errors import StoreError
from ..families.ag2.conversion import to_canonical, to_native
from ..messages import close_unanswered_tool_calls
from ..stores import Store, open_store
from ._turns import StoreTurns, TurnLease

logger = logging.getLogger("agentsession")

STREAM_NAMESPACE = uuid.UUID("6f1c2b1e-4d0a-5b8e-9a43-2f6d8c0e7a15")
"""The UUID namespace conversation ids are mapped into: ``uuid5(STREAM_NAMESPACE, id)``."""

STREAMS_KEPT = 1024
"""How many conversations' stream objects ``AgentSessionStorage.stream`` keeps for reuse."""


@dataclass(eq=False)
class _OpenTurn:
    lease: TurnLease
    base: list[Any]
    owner: Any  # the stream object the turn runs on
    pending: list[Any] = field(default_factory=list)


class AgentSessionStorage:
    """``ag2.history.Storage`` (``save_event``, ``get_history``, ``set_history``,
    ``drop_history``) on an agentsession store.

    ``store`` is a ``Store`` or a store URL. ``lock_timeout`` is how long a turn waits for
    another turn on the same conversation (then ``SessionBusy``), ``lease_ttl`` how long a
    crashed process's lease blocks it. ``agent_name`` names the stored assistant messages
    (AG2's responses carry no agent name).
    """

    def __init__(
        self,
        store: Store | str,
        *,
        lock_timeout: float = 30.0,
        lease_ttl: float = 6.0,
        agent_name: str = "assistant",
    ) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        self.turns = StoreTurns(self.store, lock_timeout=lock_timeout, lease_ttl=lease_ttl)
        self.agent_name = agent_name
        self._sessions: dict[uuid.UUID, str] = {}
        self._open: dict[Any, _OpenTurn] = {}
        self._cache: dict[Any, tuple[int, list[Any]]] = {}
        self._streams: OrderedDict[str, MemoryStream] = OrderedDict()

    # -- ids -----------------------------------------------------------------------------

    def stream_id(self, session_id: str) -> uuid.UUID:
        """The stream id of a conversation id (deterministic: the same in every process)."""
        stream_id = uuid.uuid5(STREAM_NAMESPACE, session_id)
        self._sessions[stream_id] = session_id
        return stream_id

    def stream(self, session_id: str) -> MemoryStream:
        """The ``MemoryStream`` on this storage for the conversation ``session_id``.

        The same object for the same conversation (the last ``STREAMS_KEPT`` conversations):
        AG2 1.0.0 … 1.0.2 serialise turns per stream *object* (1.0.3 and later per stream id),
        and the storage keeps one open turn per stream id, so concurrent turns of one
        conversation in one process must share the object to be serialised.
        """
        stream = self._streams.pop(session_id, None)
        if stream is None:
            stream = MemoryStream(self, id=self.stream_id(session_id))
        self._streams[session_id] = stream
        while len(self._streams) > STREAMS_KEPT:
            self._streams.popitem(last=False)
        return stream

    def session_id(self, stream_id: Any) -> str:
        """The conversation id of a stream id; a stream made elsewhere is stored under its UUID."""
        return self._sessions.get(stream_id) or str(stream_id)

    # -- the Storage protocol ------------------------------------------------------------

    async def save_event(self, event: BaseEvent, context: Any) -> None:
        stream_id = context.stream.id
        turn = self._open.get(stream_id)
        starts_turn = isinstance(event, ModelRequest) and not isinstance(event, DrainedModelRequest)
        if turn is not None and starts_turn and turn.pending:
            # AG2 runs one turn per stream at a time: a new request while a turn is open means
            # that turn ended without its final response (it failed). Record what happened.
            await self._finish(stream_id, failed=True)
            turn = None
        if turn is None:
            turn = await self._begin(stream_id, context.stream)
        turn.pending.append(event)
        if isinstance(event, ModelResponse) and (
            not event.tool_calls.calls or getattr(event, "response_force", False)
        ):
            await self._finish(stream_id)

    async def get_history(self, stream_id: Any) -> Iterable[BaseEvent]:
        turn = self._open.get(stream_id)
        if turn is not None:
            return [*turn.base, *turn.pending]
        conversation = await self.store.load(self.session_id(stream_id))
        if conversation is None:
            return []
        return to_native(close_unanswered_tool_calls(conversation.messages))

    async def set_history(self, stream_id: Any, events: Iterable[BaseEvent]) -> None:
        """Replace the stream's history (``History.replace``: AG2's repair, ``Agent.resume``,
        compaction). A replacement that extends the stored history is appended; any other is
        a reset plus one append, under the lease (not atomic across a crash between the two)."""
        events = list(events)
        turn = self._open.get(stream_id)
        if turn is not None:
            current = [*turn.base, *turn.pending]
            if events[: len(current)] == current or _same(events[: len(turn.base)], turn.base):
                turn.pending = events[len(turn.base) :]
                return
            await self._finish(stream_id, failed=True)
        lease = await self.turns.begin(self.session_id(stream_id))
        try:
            stored = lease.conversation.messages if lease.conversation is not None else []
            messages = to_canonical(events, self.agent_name)
            if _same_messages(messages[: len(stored)], stored):
                await self.turns.finish(lease, messages[len(stored) :])
                return
            if lease.info is not None:
                await self.store.reset(lease.session_id)
                lease.info = await self.store.info(lease.session_id)
            await self.turns.finish(lease, messages)
        except BaseException:
            await self.turns.release(lease)
            raise
        finally:
            self._cache.pop(stream_id, None)

    async def drop_history(self, stream_id: Any) -> None:
        """Delete the conversation."""
        if stream_id in self._open:
            await self.turns.release(self._open.pop(stream_id).lease)
        lease = await self.turns.begin(self.session_id(stream_id), load=False)
        try:
            await self.store.delete(lease.session_id)
        finally:
            await self.turns.release(lease)
            self._cache.pop(stream_id, None)

    # -- turn boundaries -----------------------------------------------------------------

    def turn_guard(self, event: BaseEvent, context: Any) -> Any:
        """An AG2 middleware factory (``Agent(..., middleware=[storage.turn_guard])``) that
        ends the storage's turn when AG2's turn ends, however it ends: a turn that raises is
        recorded (repaired) and its lease released at once, instead of when the next turn on
        the stream starts or the lease expires."""
        from ag2.middleware import BaseMiddleware

        storage = self

        class TurnGuard(BaseMiddleware):
            async def on_turn(self, call_next: Any, event: BaseEvent, context: Any) -> Any:
                try:
                    return await call_next(event, context)
                finally:
                    turn = storage._open.get(context.stream.id)
                    if turn is not None and turn.owner is context.stream:
                        await storage._finish(context.stream.id, failed=True)

        return TurnGuard(event, context)

    async def _begin(self, stream_id: Any, owner: Any) -> _OpenTurn:
        lease = await self.turns.begin(self.session_id(stream_id), load=False)
        try:
            cached = self._cache.get(stream_id)
            if cached is not None and cached[0] == lease.version:
                base = list(cached[1])
            elif lease.info is None:
                base = []
            else:
                conversation = await self.store.load(lease.session_id)
                messages = conversation.messages if conversation is not None else []
                base = to_native(close_unanswered_tool_calls(messages))
        except BaseException:
            await self.turns.release(lease)
            raise
        turn = self._open[stream_id] = _OpenTurn(lease, base, owner)
        return turn

    async def _finish(self, stream_id: Any, *, failed: bool = False) -> None:
        turn = self._open.pop(stream_id)
        messages = to_canonical(turn.pending, self.agent_name)
        if failed:
            logger.warning(
                "an AG2 turn on session %r ended without its final response; recording what "
                "happened, with unanswered tool calls closed",
                turn.lease.session_id,
            )
            messages = close_unanswered_tool_calls(messages)
        try:
            version = await self.turns.finish(turn.lease, messages)
        except StoreError:
            self._cache.pop(stream_id, None)
            raise
        self._cache[stream_id] = (version, [*turn.base, *to_native(messages)])

    async def close(self) -> None:
        self._streams.clear()  # AG2 binds each stream's turn lock to the running loop
        for stream_id in list(self._open):
            await self.turns.release(self._open.pop(stream_id).lease)
        await self.store.close()


def _same(left: Sequence[Any], right: Sequence[Any]) -> bool:
    return len(left) == len(right) and all(a is b for a, b in zip(left, right, strict=True))


def _same_messages(left: Sequence[Any], right: Sequence[Any]) -> bool:
    def key(message: Any) -> tuple[Any, ...]:
        return (message.role, message.content, message.tool_calls, message.tool_call_id)

    return len(left) == len(right) and all(
        key(a) == key(b) for a, b in zip(left, right, strict=True)
    )


__all__ = ["STREAM_NAMESPACE", "AgentSessionStorage"]
