"""The request's conversation: the ``AsyncSession`` methods, resolved on the session's first use.

A claimed id is adopted only if it is validly signed, unexpired, held by the store and (with
owner binding) not another user's; anything else starts a fresh conversation under a new id,
so a client can never choose, fix or guess its way into a conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from agentsession import _loop
from agentsession.manager import AsyncSessionManager, new_session_id
from agentsession.messages import Message
from agentsession.stores import Conversation, SessionInfo
from agentsession.turns import Turn

from ._tokens import Claim

logger = logging.getLogger("agentsession")

T = TypeVar("T")

OWNER_KEY = "agentsession.owner"
"""The metadata key holding the user a conversation is bound to (see ``owner=``)."""


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
    _stored_owner: object = None
    _owner_known = False
    _owner_value: str | None = None
    _resolving: asyncio.Lock | None = None
    _metadata: Mapping[str, Any] = MappingProxyType({})  # replaced, never changed in place

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
            info: SessionInfo | Conversation | None
            if read_messages:  # one store read for both: adoption and the history
                conversation = await self.engine.load(claimed)
                info = conversation
                messages = None if conversation is None else conversation.messages
            else:
                info = await self.engine.info(claimed)
            if info is None:
                logger.info("a signed session id unknown to the store was refused; new id issued")
            elif not owner_allows(info.metadata.get(OWNER_KEY), owner):
                logger.info("a session id bound to another user was refused; new id issued")
            else:
                self._stored = self._changed = True
                self._stored_owner = info.metadata.get(OWNER_KEY)
                self._metadata = dict(info.metadata)
                return claimed, messages
        return new_session_id(), ([] if read_messages else None)

    async def _for_writing(self) -> str:
        session_id = await self.session_id()
        owner = self.current_owner()
        if owner is not None and self._stored_owner != owner:
            # a new conversation, or an anonymous one claimed at login: bind it to its user
            metadata = {**self._metadata, OWNER_KEY: owner}
            await self.engine.set_metadata(session_id, metadata)
            self._stored_owner, self._metadata = owner, metadata
            self._stored = self._changed = True
        return session_id

    async def send(self, text: str, *, sender: str | None = None) -> str:
        reply = await self.engine.send(await self._for_writing(), text, sender=sender)
        self._stored = self._changed = True
        return reply

    async def run_turn(self, text: str, *, sender: str | None = None) -> Turn:
        turn = await self.engine.run_turn(await self._for_writing(), text, sender=sender)
        self._stored = self._changed = True
        return turn

    async def history(self) -> list[Message]:
        if self._id is None:
            messages = await self._resolve(read_messages=True)
            if messages is not None:
                return messages
        assert self._id is not None
        return await self.engine.history(self._id) if self._stored else []

    async def metadata(self) -> dict[str, Any]:
        session_id = await self.session_id()
        return await self.engine.metadata(session_id) if self._stored else {}

    async def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        session_id = await self.session_id()
        owner = self.current_owner()
        merged = {k: v for k, v in metadata.items() if k != OWNER_KEY}
        if owner is not None:
            merged[OWNER_KEY] = owner
        await self.engine.set_metadata(session_id, merged)
        self._stored_owner, self._metadata = owner, merged
        self._stored = self._changed = True

    async def exists(self) -> bool:
        await self.session_id()
        return self._stored

    async def reset(self) -> None:
        session_id = await self.session_id()
        if self._stored:
            await self.engine.reset(session_id)

    async def delete(self) -> bool:
        """Delete the conversation; a later use in this request starts a new one, new id."""
        session_id = await self.session_id()
        deleted = await self.engine.delete(session_id) if self._stored else False
        self._id, self._stored, self._changed = None, False, False
        self._stored_owner, self._metadata = None, MappingProxyType({})
        self.deleted = True
        return deleted

    async def rotate(self) -> str:
        """Move the conversation to a new id (call it at login) and return the new id."""
        session_id = await self.session_id()
        self._id = await self.engine.rotate(session_id) if self._stored else new_session_id()
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

    def session_id(self) -> str:
        return self._run(self.async_session.session_id)

    def send(self, text: str, *, sender: str | None = None) -> str:
        return self._run(lambda: self.async_session.send(text, sender=sender))

    def run_turn(self, text: str, *, sender: str | None = None) -> Turn:
        return self._run(lambda: self.async_session.run_turn(text, sender=sender))

    def history(self) -> list[Message]:
        return self._run(self.async_session.history)

    def metadata(self) -> dict[str, Any]:
        return self._run(self.async_session.metadata)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._run(lambda: self.async_session.set_metadata(metadata))

    def exists(self) -> bool:
        return self._run(self.async_session.exists)

    def reset(self) -> None:
        self._run(self.async_session.reset)

    def delete(self) -> bool:
        return self._run(self.async_session.delete)

    def rotate(self) -> str:
        return self._run(self.async_session.rotate)
