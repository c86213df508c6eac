"""Streamed turns against the framework's own ``run_stream``: time to the first text delta,
time to the whole reply, and what the journal costs per event, on SQLite and Redis.

The bare baseline is an ``AssistantAgent`` on the offline model with ``model_client_stream=True``
whose ``run_stream`` is read directly, with the same history and the same reply; agentsession's
side is ``AsyncSession.stream`` on a cached agent, journal on (as a web app streams) and off.
Each round alternates the variants; medians over rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

from autogen_agentchat.agents import AssistantAgent

from agentsession import AsyncSessionManager
from agentsession.offline.agentchat import OfflineChatCompletionClient
from agentsession.stores import Store, open_store

from ._report import Table, ms, run

REDIS_URL = os.environ.get("AGENTSESSION_TEST_REDIS", "redis://127.0.0.1:6379/0")
TEXT = "what did I say earlier? " * 3  # the reply quotes it: about 40 words, 40 deltas


PROFILES = {"instant model": (0.0, 0.0), "model at 200 ms + 10 ms/chunk": (0.2, 0.01)}


class Latent(OfflineChatCompletionClient):
    """The offline model with a first-token latency, as a real provider has."""

    def __init__(self, latency: float, per_chunk: float) -> None:
        super().__init__(chunk_words=1, chunk_delay=per_chunk)
        self.latency = latency

    async def create_stream(self, messages: Any, **kwargs: Any) -> Any:
        if self.latency:
            await asyncio.sleep(self.latency)
        async for chunk in super().create_stream(messages, **kwargs):
            yield chunk


def factory_for(profile: str) -> Any:
    latency, per_chunk = PROFILES[profile]
    return lambda: AssistantAgent(
        "assistant", model_client=Latent(latency, per_chunk), model_client_stream=True
    )


class Counting:
    """Counts the journal's store calls of a store."""

    def __init__(self, store: Store) -> None:
        self.calls = 0
        original = store.journal_write

        async def journal_write(*args: Any, **kwargs: Any) -> None:
            self.calls += 1
            await original(*args, **kwargs)

        store.journal_write = journal_write  # type: ignore[method-assign]


async def bare_turn(factory: Any) -> tuple[float, float, int]:
    """(first delta, whole reply, events) reading ``run_stream`` of an agent that saw the same
    first turn as agentsession's cached one."""
    agent = factory()
    await agent.run(task="hello")
    start = time.perf_counter()
    first = 0.0
    events = 0
    async for item in agent.run_stream(task=TEXT):
        events += 1
        if not first and type(item).__name__ == "ModelClientStreamingChunkEvent":
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, events


async def our_turn(
    manager: AsyncSessionManager, session_id: str, journal: bool
) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = 0.0
    events = 0
    async for event in manager.stream(session_id, TEXT, journal=journal):
        events += 1
        if not first and event.type == "delta":
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, events


async def measure_store(name: str, url: str, rounds: int, profile: str) -> list[list[Any]]:
    factory = factory_for(profile)
    store = open_store(url)
    counting = Counting(store)
    rows: dict[str, list[tuple[float, float, int]]] = {"bare": [], "journal": [], "no journal": []}
    async with AsyncSessionManager(factory, store, lock_timeout=30) as manager:
        for _ in range(rounds):
            # a conversation per round, so every variant answers at the same length
            on, off = manager.session().id, manager.session().id
            await manager.send(on, "hello")
            await manager.send(off, "hello")
            rows["bare"].append(await bare_turn(factory))
            before = counting.calls
            rows["journal"].append(await our_turn(manager, on, True))
            writes = counting.calls - before
            rows["no journal"].append(await our_turn(manager, off, False))
        drop = getattr(store, "drop", None)
        if drop is not None:
            await drop()
    bare_first = statistics.median(r[0] for r in rows["bare"])
    bare_total = statistics.median(r[1] for r in rows["bare"])
    out = []
    for variant, samples in rows.items():
        first = statistics.median(s[0] for s in samples)
        total = statistics.median(s[1] for s in samples)
        events = rows["journal"][-1][2]  # agentsession's events (deltas, messages, start, end)
        per_event = (total - bare_total) / events if variant != "bare" else 0.0
        out.append(
            [
                name,
                profile,
                variant,
                ms(first),
                round(first / bare_first, 2),
                ms(total),
                round(total / bare_total, 2),
                events,
                round(per_event * 1e6, 1) if variant != "bare" else "",
                writes if variant == "journal" else "",
            ]
        )
    return out


def measure(quick: bool) -> list[Table]:
    rounds = 3 if quick else 15
    table = Table(
        "Streamed turns against run_stream",
        [
            "store",
            "model",
            "variant",
            "first delta ms",
            "x bare",
            "whole turn ms",
            "x bare",
            "events",
            "us/event over bare",
            "journal writes",
        ],
        notes=[
            "agentchat family, the offline model streaming one word a chunk: instantly, and "
            "with a provider's latency (200 ms to the first token, 10 ms between chunks); a "
            "cached agent; medians over rounds that alternate the variants.",
            "'journal writes' is the store calls the journal made for the turn's events: "
            "deltas are batched (at most every 50 ms), finished messages and the end at once.",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("sqlite", f"sqlite:///{tmp}/stream.db")]
        try:
            import redis

            redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
            stores.append(("redis", f"{REDIS_URL}?prefix=bench-stream-{uuid.uuid4().hex[:8]}:"))
        except Exception:
            table.notes.append("Redis was not reachable: its rows are left out.")
        for profile in PROFILES:
            for name, url in stores:
                table.rows += run(measure_store(name, url, rounds, profile))
    return [table]


if __name__ == "__main__":
    for result in measure(quick=True):
        print(result.markdown())
    asyncio.run(asyncio.sleep(0))
