"""Bounded, least-recently-used caches: live agents and whole histories, each tagged with the store
version it matches."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .families import Driver
from .messages import Message


@dataclass(slots=True)
class LiveAgent:
    driver: Driver
    version: int
    message_count: int
    metadata: Mapping[str, Any]
    """The conversation's metadata the agent was built or last ran with."""
    last: Message | None
    """The conversation's last message as this agent knows it: a catch-up checks that the
    store still holds it where it was, i.e. that only appends happened since."""


class AgentCache:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[str, LiveAgent] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, session_id: str) -> LiveAgent | None:
        """Remove and return the live agent, whatever version it matches.

        Taking (rather than peeking) means a turn that fails half-way can never leave a
        half-updated agent behind for the next turn.
        """
        return self._entries.pop(session_id, None)

    def put(self, session_id: str, live: LiveAgent) -> list[LiveAgent]:
        """Cache ``live``; return the entries evicted to respect ``maxsize``."""
        if self.maxsize <= 0:
            return [live]
        self._entries[session_id] = live
        self._entries.move_to_end(session_id)
        evicted = []
        while len(self._entries) > self.maxsize:
            evicted.append(self._entries.popitem(last=False)[1])
        return evicted

    def discard(self, session_id: str) -> LiveAgent | None:
        return self._entries.pop(session_id, None)

    def drain(self) -> list[LiveAgent]:
        entries = list(self._entries.values())
        self._entries.clear()
        return entries


_History = tuple[int, tuple[Message, ...], Mapping[str, Any] | None]


class HistoryCache:
    """Whole histories a manager read recently, each with the store version it matches,
    bounded by the messages held in all (least recently used out first).

    ``history()`` answers from here after one small read: the store's current version and
    the messages from the last one cached on (``AsyncSessionManager._whole_history``). The
    entries are immutable ``Message`` tuples; sync callers read on their own threads, so
    every access holds a lock.
    """

    def __init__(self, max_messages: int) -> None:
        self.max_messages = max_messages
        # session id -> (version, messages, metadata or None if not known at that version)
        self._entries: OrderedDict[str, _History] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, session_id: str) -> _History | None:
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is not None:
                self._entries.move_to_end(session_id)
            return entry

    def put(
        self,
        session_id: str,
        version: int,
        messages: tuple[Message, ...],
        metadata: Mapping[str, Any] | None,
    ) -> None:
        if len(messages) > self.max_messages:
            self.discard(session_id)
            return
        with self._lock:
            old = self._entries.pop(session_id, None)
            if old is not None:
                self._held -= len(old[1])
            self._entries[session_id] = (version, messages, metadata)
            self._held += len(messages)
            while self._held > self.max_messages:
                self._held -= len(self._entries.popitem(last=False)[1][1])

    def discard(self, session_id: str) -> None:
        with self._lock:
            old = self._entries.pop(session_id, None)
            if old is not None:
                self._held -= len(old[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._held = 0
