"""The request's conversation: the ``AsyncSession`` methods, resolved on the session's first use.

A claimed id is adopted only if it is validly signed, unexpired, held by the store and (with
owner binding) not another user's; anything else starts a fresh conversation under a new id,
so a client can never choose, fix or guess its way into a conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Literal, TypeVar

from agentsession import _loop
from agentsession.errors import OwnerMismatch, SessionNotFound, StreamInterrupted
from agentsession.manager import OWNER_KEY, AsyncSessionManager, new_session_id
from agentsession.messages import Image, Message
from agentsession.turns import Turn, TurnEvent

from ._tokens import Claim

logger = logging.getLogger("agentsession")

T = TypeVar("T")

__all__ = ["OWNER_KEY", "AsyncRequestSession", "RequestSession", "owner_allows"]


def owner_allows(stored: object, current: str | None) -> bool:
    """Owner binding: an anonymous conversation is anyone's to claim; an owned one is its owner's."""
    return stored is None or stored == current


class AsyncRequestSession:
    """The request's conversation: the ``AsyncSession`` methods, resolved on first use.

    Resolving verifies the claimed token and adopts its id if the store holds it for this
    user, else issues a new id. A new conversation is stored on its first write, so reading a
    fresh one costs no I/O. ``claim`` may be a callable, so a request that never uses its
    session does not even read its headers.
    """

    # class-level defaults: a request that never uses its session sets three attributes
    deleted = False
    _id: str | None = None
    _adoptable = True  # false after the first resolution: a later one must not re-adopt
    _stored = False  # the store holds this conversation
    _changed = False  # adopted, written or rotated: the client should get the id
    _owner_known = False
    _owner_value: str | None = None
    _header_key_used = False
    _resolving: asyncio.Lock | None = None

    def __init__(
        self,
        engine: AsyncSessionManager,
        claim: Claim | Callable[[], Claim],
        owner: Callable[[], str | None] | None = None,
    ) -> None:
        self.engine = engine
        self._claim = claim
        self._owner = owner

    def __repr__(self) -> str:
        state = "unresolved" if self._id is None else f"{self._id[:6]}…"
        return f"<{type(self).__name__} {state}>"

    @property
    def claim(self) -> Claim:
        """What the request brought (read from the request on first access)."""
        claim = self._claim
        if not isinstance(claim, Claim):
            claim = self._claim = claim()
        return claim

    @property
    def via_header(self) -> bool:
        return self.claim.via_header

    @property
    def needs_headers(self) -> bool:
        """Whether the response must carry the id (or expire the cookie): the session was used."""
        return self._changed or self.deleted

    @property
    def outgoing_id(self) -> str | None:
        """The id to hand back, if the conversation was used and exists."""
        return self._id if self._changed else None

    def current_owner(self) -> str | None:
        """The request's user, asked once (sync adapters ask in the request's own thread)."""
        if not self._owner_known and self._owner is not None:
            self._owner_value = self._owner()
            self._owner_known, self._owner = True, None  # and let go of the request
        return self._owner_value

    @property
    def id(self) -> str | None:
        """The conversation's id once this request used its session; None before (``await
        session.session_id()`` adopts or issues it). ``RequestSession.id`` always answers."""
        return self._id

    async def session_id(self) -> str:
        """The conversation's id, adopted or issued on first use."""
        if self._id is None:
            await self._resolve(read_messages=False)
        assert self._id is not None
        return self._id

    async def _resolve(self, read_messages: bool) -> list[Message] | None:
        """Adopt the claimed id or issue one; with ``read_messages``, the history in the same read."""
        if self._resolving is None:
            self._resolving = asyncio.Lock()
        async with self._resolving:  # two concurrent first uses must agree on one id
            if self._id is not None:
                return None
            self._id, messages = await self._adopt_or_issue(read_messages)
            return messages

    async def _adopt_or_issue(self, read_messages: bool) -> tuple[str, list[Message] | None]:
        owner = self.current_owner()
        claimed = self.claim.verified_id() if self._adoptable else None
        self._adoptable = False  # after a delete(), a later use must not adopt the old id again
        if claimed is not None:
            messages: list[Message] | None = None
            stored: Mapping[str, Any] | None = None
            if read_messages:  # one store read for both: adoption and the history
                found = await self.engine.whole_history(claimed, with_metadata=True)
                if found is not None:
                    messages, stored = found
            else:
                info = await self.engine.info(claimed)
                stored = None if info is None else info.metadata
            if stored is None:
                logger.info("a signed session id unknown to the store was refused; new id issued")
            elif not owner_allows(stored.get(OWNER_KEY), owner):
                logger.info("a session id bound to another user was refused; new id issued")
            else:
                self._stored = self._changed = True
                return claimed, messages
        return new_session_id(), ([] if read_messages else None)

    def _start_fresh(self) -> str:
        self._id, self._stored = new_session_id(), False
        return self._id

    async def _write(self, write: Callable[[str, bool], Awaitable[T]]) -> T:
        """Run ``write(session_id, create)`` on the conversation and mark it used.

        An adopted id is written with ``create=False``, and the engine checks its owner under
        the turn lease: if the conversation was deleted or rotated, or bound to another user,
        since this request adopted it, the write goes to a fresh conversation instead. An
        adopted id never comes back, and no user writes into another's conversation.
        """
        session_id = await self.session_id()
        try:
            result = await write(session_id, not self._stored)
        except (OwnerMismatch, SessionNotFound):
            if not self._stored:
                raise
            logger.info(
                "an adopted conversation was deleted, moved or bound to another user meanwhile; "
                "a new one is started"
            )
            result = await write(self._start_fresh(), True)
        self._stored = self._changed = True
        return result

    def _key(self, idempotency_key: str | None) -> str | None:
        """The turn's idempotency key: the argument, else the request's header (first turn only)."""
        if idempotency_key is not None:
            return idempotency_key
        if self._header_key_used:
            return None
        self._header_key_used = True
        return self.claim.idempotency_key

    async def send(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
    ) -> str:
        turn = await self.run_turn(
            text, sender=sender, idempotency_key=idempotency_key, images=images
        )
        return turn.reply

    async def run_turn(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
    ) -> Turn:
        owner, key = self.current_owner(), self._key(idempotency_key)
        return await self._write(
            lambda session_id, create: self.engine.run_turn(
                session_id,
                text,
                sender=sender,
                idempotency_key=key,
                images=images,
                owner=owner,
                create=create,
            )
        )

    async def stream(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        on_disconnect: Literal["finish", "cancel"] = "finish",
    ) -> AsyncIterator[TurnEvent]:
        """The turn's events as they happen (see ``AsyncSessionManager.stream``)."""
        owner, key = self.current_owner(), self._key(idempotency_key)
        events: Any = None  # the engine's async generator, made by the write below

        async def first(session_id: str, create: bool) -> TurnEvent:
            nonlocal events
            events = self.engine.stream(
                session_id,
                text,
                sender=sender,
                idempotency_key=key,
                images=images,
                owner=owner,
                create=create,
                on_disconnect=on_disconnect,
            )
            try:
                event: TurnEvent = await events.__anext__()
                return event
            except BaseException:
                await events.aclose()
                raise

        event = await self._write(first)  # the first event: the turn has passed its checks
        try:
            yield event
            async for event in events:
                yield event
        finally:
            await events.aclose()  # a reader that left: the turn's on_disconnect applies now

    async def resume(
        self, after: int = -1, *, turn_id: str | None = None
    ) -> AsyncIterator[TurnEvent]:
        """The events of this conversation's latest streamed turn after ``after``, then the
        rest as they happen (see ``AsyncSessionManager.resume``)."""
        session_id = await self.session_id()
        if not self._stored:
            raise StreamInterrupted(session_id, "is not known (no conversation)", code="no_journal")
        async for event in self.engine.resume(session_id, after, turn_id=turn_id):
            yield event

    async def history(
        self, *, limit: int | None = None, before: int | None = None
    ) -> list[Message]:
        """The messages, oldest first; a page with ``limit``/``before`` (see the engine)."""
        paged = limit is not None or before is not None
        if self._id is None:
            messages = await self._resolve(read_messages=not paged)
            if messages is not None:
                return messages
        assert self._id is not None
        if not self._stored:
            return []
        return await self.engine.history(self._id, limit=limit, before=before)

    async def pop_turn(self) -> list[Message]:
        """Undo the last turn (an "undo" or "regenerate" button); returns what was removed."""
        session_id = await self.session_id()
        if not self._stored:
            return []
        return await self.engine.pop_turn(session_id, owner=self.current_owner())

    async def append(self, messages: Sequence[Message]) -> None:
        """Record messages without running the agent (e.g. a human operator's reply)."""
        owner = self.current_owner()
        await self._write(
            lambda session_id, create: self.engine.append(
                session_id, messages, owner=owner, create=create
            )
        )

    async def metadata(self) -> dict[str, Any]:
        session_id = await self.session_id()
        return await self.engine.metadata(session_id) if self._stored else {}

    async def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Replace the metadata; the owner key stays the conversation's own."""
        owner = self.current_owner()
        await self._write(
            lambda session_id, create: self.engine.set_metadata(
                session_id, metadata, owner=owner, create=create
            )
        )

    async def exists(self) -> bool:
        await self.session_id()
        return self._stored

    async def reset(self) -> None:
        session_id = await self.session_id()
        if self._stored:
            await self.engine.reset(session_id, owner=self.current_owner())

    async def delete(self) -> bool:
        """Delete the conversation; a later use in this request starts a new one, new id."""
        session_id = await self.session_id()
        stored, owner = self._stored, self.current_owner()
        deleted = await self.engine.delete(session_id, owner=owner) if stored else False
        self._id, self._stored, self._changed = None, False, False
        self.deleted = True
        return deleted

    async def rotate(self) -> str:
        """Move the conversation to a new id and return it. Call it at login: the conversation
        is bound to the user who logs in (with ``owner=``), and the old id, which a token copied
        before login may carry, is unknown from then on."""
        session_id = await self.session_id()
        if self._stored:
            self._id = await self.engine.rotate(session_id, owner=self.current_owner())
        else:
            self._id = new_session_id()
        return self._id


class RequestSession:
    """The request's conversation for sync code (WSGI, Flask): the same methods, no ``await``.

    Calls run on agentsession's loop thread, like ``SessionManager``'s; only the owner is asked
    here, in the request's thread, where framework request-locals (Flask-Login, …) live.
    """

    def __init__(self, async_session: AsyncRequestSession) -> None:
        self.async_session = async_session

    def __repr__(self) -> str:
        return repr(self.async_session).replace("AsyncRequestSession", "RequestSession")

    def _run(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        self.async_session.current_owner()
        return _loop.run(call())

    def _read(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """A read, on the request thread's own loop where the store allows it."""
        self.async_session.current_owner()
        return self.async_session.engine.read_here(call)

    def session_id(self) -> str:
        return self._read(self.async_session.session_id)

    @property
    def id(self) -> str:
        """The conversation's id (adopted or issued on first use, like ``session_id()``)."""
        return self.session_id()

    def send(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
    ) -> str:
        return self._run(
            lambda: self.async_session.send(
                text, sender=sender, idempotency_key=idempotency_key, images=images
            )
        )

    def run_turn(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
    ) -> Turn:
        return self._run(
            lambda: self.async_session.run_turn(
                text, sender=sender, idempotency_key=idempotency_key, images=images
            )
        )

    def stream(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        on_disconnect: Literal["finish", "cancel"] = "finish",
    ) -> Iterator[TurnEvent]:
        self.async_session.current_owner()
        events = self.async_session.stream(
            text,
            sender=sender,
            idempotency_key=idempotency_key,
            images=images,
            on_disconnect=on_disconnect,
        )
        return _loop.iterate(events)

    def resume(self, after: int = -1, *, turn_id: str | None = None) -> Iterator[TurnEvent]:
        self.async_session.current_owner()
        return _loop.iterate(self.async_session.resume(after, turn_id=turn_id))

    def history(self, *, limit: int | None = None, before: int | None = None) -> list[Message]:
        return self._read(lambda: self.async_session.history(limit=limit, before=before))

    def pop_turn(self) -> list[Message]:
        return self._run(self.async_session.pop_turn)

    def append(self, messages: Sequence[Message]) -> None:
        self._run(lambda: self.async_session.append(messages))

    def metadata(self) -> dict[str, Any]:
        return self._read(self.async_session.metadata)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._run(lambda: self.async_session.set_metadata(metadata))

    def exists(self) -> bool:
        return self._read(self.async_session.exists)

    def reset(self) -> None:
        self._run(self.async_session.reset)

    def delete(self) -> bool:
        return self._run(self.async_session.delete)

    def rotate(self) -> str:
        return self._run(self.async_session.rotate)
