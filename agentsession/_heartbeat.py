"""Keeps a running turn's store lease alive: renewed every third of its ttl until the turn ends.

Leases are short so that a crashed worker's conversation is free again in seconds; a turn that
runs longer (a slow model, a tool) keeps its lease by renewing it. A heartbeat costs nothing
until its first renewal is due: a timer, not a task, for turns shorter than that.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from .errors import StoreError
from .stores import Store

logger = logging.getLogger("agentsession")


class Heartbeat:
    """``async with Heartbeat(store, session_id, token, ttl):`` renews the lease while inside."""

    def __init__(self, store: Store, session_id: str, token: str, ttl: float) -> None:
        self.store = store
        self.session_id = session_id
        self.token = token
        self.ttl = ttl
        self.lost = False
        """True once another holder took the lease over (the turn's write will be refused)."""
        self._timer: asyncio.TimerHandle | None = None
        self._renewal: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        return self.start()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        renewal = self.stop()
        if renewal is not None:
            await asyncio.wait([renewal])  # unlike awaiting it, leaves our own cancellation be

    def start(self) -> Heartbeat:
        """Start renewing (what ``async with`` does), for a lease held across callbacks."""
        self._schedule()
        return self

    def stop(self) -> asyncio.Task[None] | None:
        """Stop renewing; returns a renewal still in flight (cancelled), if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        renewal, self._renewal = self._renewal, None
        if renewal is not None and not renewal.done():
            renewal.cancel()
            return renewal
        return None

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.ttl / 3, self._due)

    def _due(self) -> None:
        self._timer = None
        self._renewal = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        try:
            held = await self.store.renew(self.session_id, self.token, self.ttl)
        except StoreError as exc:  # keep trying: the lease may outlive a short outage
            logger.warning("renewing the turn lease of a conversation failed: %s", exc)
            held = True
        if not held:
            self.lost = True
            logger.warning(
                "another worker took over the turn lease of conversation %s…; this turn will "
                "not be recorded",
                self.session_id[:8],
            )
            return
        self._schedule()
