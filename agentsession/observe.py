"""What turns and their store calls did, for metrics, traces and an on-call engineer.

Give a manager one observer or several (``SessionManager(factory, store, observer=...)``):
``Stats`` counts in process (for a health page or a metrics endpoint),
``agentsession.otel.OpenTelemetryObserver`` makes OpenTelemetry spans and metrics, and a
subclass of ``Observer`` can send them anywhere else. Observers see no message text, no
metadata and no conversation id (only a digest of it, to correlate one conversation's turns),
and never a store URL.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Observer", "Stats", "StoreCall", "TurnRecord", "session_digest"]


def session_digest(session_id: str) -> str:
    """A conversation's id as observers see it: 12 hex digits of its SHA-256, enough to tell
    one conversation's turns from another's, useless for adopting it."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class StoreCall:
    """One call the engine made to its store."""

    operation: str
    """The ``Store`` method: ``begin_turn``, ``finish_turn``, ``load``, ``read_messages``, …"""
    seconds: float
    error: str | None = None
    """The exception's type name if the call raised (``StoreUnavailable``, ``ConflictError``…)."""


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One turn, as it ended."""

    session: str
    """``session_digest`` of the conversation's id."""
    outcome: str
    """``ok``, ``replayed`` (an idempotent retry answered from the store), ``busy`` (another
    turn held the conversation past ``lock_timeout``), ``store_unavailable``,
    ``outcome_unknown``, ``conflict``, ``lease_lost``, ``refused`` (the input or the caller was
    refused: too large, not the owner, not found…), ``agent_error`` (the agent or its model
    failed), ``cancelled`` or ``error``."""
    agent: str
    """Where the live agent came from: ``cached``, ``caught_up`` (cached, then brought up to
    date with other workers' turns), ``rebuilt`` (from the stored conversation), ``new`` (a new
    conversation), or ``""`` if the turn ended before it needed one."""
    lease_wait: float
    """Seconds spent waiting for the conversation's locks (in process and in the store)."""
    seconds: float
    messages: int
    """Messages the turn recorded (0 if it recorded nothing)."""
    error: str | None = None
    """The exception's type name if the turn raised."""


class Observer:
    """Hooks the engine calls on its event loop: keep them quick and never raise (an
    exception is logged and otherwise ignored). Override what you need."""

    def turn_started(self, session: str) -> Any:
        """A turn began; the value returned is handed back with its store calls and its end."""
        return None

    def store_call(self, call: StoreCall, turn: Any) -> None:
        """A store call finished; ``turn`` is ``turn_started``'s value, or None outside a turn."""

    def turn_finished(self, record: TurnRecord, turn: Any) -> None:
        """A turn ended, recorded or not."""


class Stats(Observer):
    """Counters of turns and store calls in this process, for a health page or ``/metrics``.

    ``snapshot()`` returns plain numbers: turns by outcome, where their agents came from and
    the cache hit rate, lease waits (median and 99th percentile of the last 1,024 turns), store
    calls and errors by operation. Thread-safe.
    """

    def __init__(self, window: int = 1024) -> None:
        self._lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.agents: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._waits: deque[float] = deque(maxlen=window)
        self._seconds: deque[float] = deque(maxlen=window)

    def store_call(self, call: StoreCall, turn: Any) -> None:
        with self._lock:
            self.calls[call.operation] += 1
            if call.error is not None:
                self.errors[f"{call.operation}:{call.error}"] += 1

    def turn_finished(self, record: TurnRecord, turn: Any) -> None:
        with self._lock:
            self.outcomes[record.outcome] += 1
            if record.agent:
                self.agents[record.agent] += 1
            self._waits.append(record.lease_wait)
            self._seconds.append(record.seconds)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            agents = dict(self.agents)
            reused = agents.get("cached", 0) + agents.get("caught_up", 0)
            built = reused + agents.get("rebuilt", 0)
            return {
                "turns": dict(self.outcomes),
                "agents": agents,
                "cache_hit_rate": round(reused / built, 4) if built else None,
                "lease_wait_seconds": _percentiles(self._waits),
                "turn_seconds": _percentiles(self._seconds),
                "store_calls": dict(self.calls),
                "store_errors": dict(self.errors),
            }


def _percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 6)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 6)}
