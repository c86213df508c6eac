"""A streamed turn's journal: its events, written behind the reader in small batches, so a
reader that reconnects (to any worker) can replay what it missed and follow the rest.

The journal is a replay log, never the record: the turn is recorded whole at its end, as every
turn is, and a journal whose turn died says so to its readers. Writing it never slows or fails
the turn: batches go out from one background task, and a store error only stops the journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from .errors import StreamInterrupted
from .stores import Store
from .turns import TurnEvent, event_from_dict

logger = logging.getLogger("agentsession")

MAX_JOURNAL_EVENTS = 4096
"""Events a turn's journal keeps; past it text deltas are dropped (finished messages and the
turn's end are always kept, and carry the whole text)."""
FLUSH_AFTER = 0.05
"""Seconds a text delta may wait to be written with the next ones."""
POLL_EVERY = 0.05
"""Seconds between a reconnected reader's looks at the journal of a running turn."""
GRACE = 5.0
"""Seconds a reader waits for a turn's end after its lease was given back, before calling it
interrupted (the end is journaled just after the turn is recorded)."""


class JournalWriter:
    def __init__(self, store: Store, session_id: str, turn_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.turn_id = turn_id
        self.next_seq = 0
        self._written = 0  # events handed to the store
        self._pending: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False

    def add(self, event: dict[str, Any]) -> bool:
        """Queue ``event`` (with its ``seq`` set by the caller); False if it was dropped."""
        if self._failed:
            return False
        if event["type"] == "delta" and self.next_seq >= MAX_JOURNAL_EVENTS:
            return False
        self._pending.append(event)
        self.next_seq += 1
        if event["type"] == "delta":
            if self._timer is None and self._flusher is None:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self._flush_soon)
        else:
            self._flush_soon()
        return True

    def _flush_soon(self) -> None:
        self._timer = None
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending and not self._failed:
                batch, self._pending = self._pending, []
                try:
                    await self.store.journal_write(
                        self.session_id, self.turn_id, self._written, batch
                    )
                except Exception as exc:  # never the turn's problem: the record is the turn
                    self._failed = True
                    logger.warning("a streamed turn's journal stopped: %s", exc)
                self._written += len(batch)
        finally:
            self._flusher = None

    async def close(self) -> None:
        """Write what is still pending (the turn's end, say) and wait for it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._flusher is not None or (self._pending and not self._failed):
            if self._flusher is None:
                self._flush_soon()
            flusher = self._flusher
            if flusher is not None:
                await asyncio.wait([flusher])


async def replay(
    store: Store, session_id: str, after: int = -1, turn_id: str | None = None
) -> AsyncIterator[TurnEvent]:
    """The events of the conversation's latest streamed turn after ``after``, then the rest as
    they are journaled, until the turn's end. With ``turn_id``, a journal of another turn (a
    newer one has started since) is replayed from its start. ``StreamInterrupted`` if the turn
    failed or died (or there is no journal to follow)."""
    quiet_since: float | None = None
    first = True
    while True:
        page = await store.journal_read(session_id, after)
        if first and page is not None and turn_id is not None and page.turn_id != turn_id:
            after = -1
            page = await store.journal_read(session_id, after)
        first = False
        if page is None:
            raise StreamInterrupted(session_id, "is not known (no journal; it may have expired)",
                                    code="no_journal")  # fmt: skip
        for record in page.events:
            after = int(record.get("seq", after + 1))
            if record.get("type") == "error":
                raise StreamInterrupted(
                    session_id,
                    str(record.get("detail", "failed")),
                    code=str(record.get("code", "interrupted")),
                )
            event = event_from_dict(record, session_id, page.turn_id)
            yield event
            if record.get("type") == "end":
                return
        if page.writing or page.events:
            quiet_since = None
        elif quiet_since is None:
            # nothing new and nobody writing: the reader may already have the turn's end
            whole = await store.journal_read(session_id)
            last = whole.events[-1] if whole is not None and whole.events else {}
            if last.get("type") == "end" and int(last.get("seq", -1)) <= after:
                return
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > GRACE:
            raise StreamInterrupted(session_id, "stopped before its end: its worker died")
        await asyncio.sleep(POLL_EVERY)
