"""A bounded, least-recently-used cache of live agents, each tagged with the store version it matches."""

from __future__ import annotations

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
