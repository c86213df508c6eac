"""The turn protocol as the framework integrations use it: the one place they touch a store's
lease, so a change of that protocol is made here once.

A framework that calls its agent itself (Agent Framework's history providers, AG2's
``Storage``) has no ``SessionManager`` around the turn, yet two processes advancing one
conversation must still be serialised, against each other and against a ``SessionManager`` on
the same store. So a framework turn takes the same per-conversation lease the engine takes
(``Store.begin_turn``), reads the conversation under it, and records the turn whole with the
same fenced append that releases it (``Store.finish_turn``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._heartbeat import Heartbeat
from ..errors import ConflictError, SessionBusy, StoreError
from ..manager import check_session_id
from ..messages import Message
from ..stores import Conversation, SessionInfo, Store

logger = logging.getLogger("agentsession")


@dataclass(eq=False)
class TurnLease:
    """A held turn lease on one conversation, and what was read under it."""

    session_id: str
    token: str
    info: SessionInfo | None
    conversation: Conversation | None = None
    done: bool = False
    _local: asyncio.Lock | None = field(default=None, repr=False)
    _heartbeat: Heartbeat | None = field(default=None, repr=False)

    @property
    def version(self) -> int:
        return self.info.version if self.info is not None else 0


class StoreTurns:
    """Begins, finishes and abandons turns on one store (see the module docstring).

    Turns of one process on one conversation also queue on an in-process lock, so local
    waiters do not poll the store, as in the engine.
    """

    def __init__(self, store: Store, *, lock_timeout: float = 30.0, lease_ttl: float = 6.0):
        self.store = store
        self.lock_timeout = lock_timeout
        self.lease_ttl = lease_ttl
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def begin(self, session_id: str, *, load: bool = True) -> TurnLease:
        """Take the lease (waiting up to ``lock_timeout``, then ``SessionBusy``) and read the
        conversation under it."""
        check_session_id(session_id)
        deadline = time.monotonic() + self.lock_timeout
        local = self._locks.get(session_id)
        if local is None:
            local = self._locks[session_id] = asyncio.Lock()
        try:
            await asyncio.wait_for(local.acquire(), self.lock_timeout)
        except asyncio.TimeoutError:
            raise SessionBusy(session_id, self.lock_timeout) from None
        try:
            delay = 0.002
            while (begun := await self.store.begin_turn(session_id, self.lease_ttl)) is None:
                if time.monotonic() >= deadline:
                    raise SessionBusy(session_id, self.lock_timeout)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.1)
            token, info = begun
            # the framework runs the turn between two callbacks: renew the short lease meanwhile
            heartbeat = Heartbeat(self.store, session_id, token, self.lease_ttl).start()
            lease = TurnLease(session_id, token, info, _local=local, _heartbeat=heartbeat)
            if load and info is not None:
                try:
                    lease.conversation = await self.store.load(session_id)
                except BaseException:
                    await self.release(lease)
                    raise
                if lease.conversation is not None and lease.conversation.version != info.version:
                    await self.release(lease)
                    raise ConflictError(f"session {session_id!r} changed while it was being loaded")
            return lease
        except BaseException:
            if local.locked():
                local.release()
            raise

    async def finish(self, lease: TurnLease, messages: Sequence[Message]) -> int:
        """Record the turn's messages whole (fenced by the version read at ``begin``) and give
        the lease back; the conversation is created by its first turn."""
        if lease.done:
            raise ConflictError(f"the turn on session {lease.session_id!r} was already finished")
        try:
            if lease.info is None:
                await self.store.create(lease.session_id, {})
            if not messages:
                await self.store.release(lease.session_id, lease.token)
                return lease.version
            return await self.store.finish_turn(
                lease.session_id, messages, lease.version, lease.token
            )
        except BaseException:
            with contextlib.suppress(StoreError):
                await self.store.release(lease.session_id, lease.token)
            raise
        finally:
            self._done(lease)

    async def release(self, lease: TurnLease) -> None:
        """Give the lease back without recording anything (the turn failed)."""
        if lease.done:
            return
        try:
            with contextlib.suppress(StoreError):
                await self.store.release(lease.session_id, lease.token)
        finally:
            self._done(lease)

    def abandon(self, lease: TurnLease) -> None:
        """Release a lease whose turn ended without telling us (the framework has no failure
        hook), from synchronous code such as a finalizer. If no loop runs, the lease simply
        expires after ``lease_ttl``."""
        if lease.done:
            return
        logger.warning(
            "a turn on session %r ended without recording anything; releasing its lease",
            lease.session_id,
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._done(lease)
            return
        task = loop.create_task(self.release(lease))
        task.add_done_callback(lambda _: None)

    def _done(self, lease: TurnLease) -> None:
        lease.done = True
        if lease._heartbeat is not None:
            lease._heartbeat.stop()
        if lease._local is not None and lease._local.locked():
            lease._local.release()
