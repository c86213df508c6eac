"""Turn cost against conversation length: the persistence part of a turn at 10 … 10,000 messages.

The persistence part of a turn is the engine's whole turn minus the family driver's
``run_turn`` (the model call and AutoGen's own work, which grow with the history for any
library). It is measured on the cached-agent path (a live agent reused) and the cold path (a
fresh manager: the history is read from the store and loaded into a new agent).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import agentsession.manager as engine
from agentsession import AsyncSessionManager, Message
from agentsession.families import Driver, driver_for
from agentsession.messages import Image
from agentsession.offline import offline_agent_factory
from agentsession.turns import Emit, Turn, ignore

from ._report import Table, ms, run

REDIS_URL = os.environ.get("AGENTSESSION_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "AGENTSESSION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


class TimedDriver(Driver):
    """Wraps a real driver and accumulates the time spent inside ``run_turn``."""

    spent = 0.0

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.agent = inner.agent

    async def run_turn(
        self,
        text: str,
        sender: str = "user",
        emit: Emit = ignore,
        *,
        images: Sequence[Image] = (),
    ) -> Turn:
        start = time.perf_counter()
        try:
            return await self.inner.run_turn(text, sender, emit, images=images)
        finally:
            TimedDriver.spent += time.perf_counter() - start

    async def export_history(self) -> list[Message]:
        return await self.inner.export_history()

    async def import_history(self, messages: Sequence[Message]) -> None:
        await self.inner.import_history(messages)

    async def extend_history(self, messages: Sequence[Message]) -> bool:
        return await self.inner.extend_history(messages)


def _timed_driver_for(agent: object) -> Driver:
    return TimedDriver(driver_for(agent))


def seed_messages(count: int) -> list[Message]:
    out = []
    for i in range(count // 2):
        out.append(Message(role="user", content=f"user message number {i}", name="user"))
        out.append(
            Message(
                role="assistant", content=f"I have seen {i + 1} user messages.", name="assistant"
            )
        )
    return out


def store_urls(folder: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{folder}/turns.db",
        "redis": f"{REDIS_URL}?prefix=agentsession-bench-{tag}:",
        "postgresql": f"{POSTGRES_URL}?table_prefix=bench{tag}_",
    }


async def _seed(manager: AsyncSessionManager, length: int, copies: int) -> list[str]:
    messages = seed_messages(length)
    ids = []
    for _ in range(copies):
        sid = engine.new_session_id()
        await manager.store.create(sid, {})
        for start in range(0, len(messages), 2000):
            await manager.store.append(sid, messages[start : start + 2000], start // 2000)
        ids.append(sid)
    return ids


async def _persistence_per_turn(manager: AsyncSessionManager, sid: str, turns: int) -> float:
    samples = []
    for i in range(turns):
        TimedDriver.spent = 0.0
        start = time.perf_counter()
        await manager.send(sid, f"benchmark turn {i}")
        samples.append(time.perf_counter() - start - TimedDriver.spent)
    return statistics.median(samples)


async def measure_store(
    kind: str, url: str, lengths: Sequence[int], rounds: int, family: str
) -> list[list[Any]]:
    factory = offline_agent_factory(family)
    rows = []
    async with AsyncSessionManager(factory, url) as seeder:
        try:
            await seeder.store.ping()
        except Exception as exc:
            return [[kind, "-", f"unavailable: {type(exc).__name__}", "", "", "", ""]]
        for length in lengths:
            ids = await _seed(seeder, length, rounds + 1)
            # cached path: one warm-up turn builds the live agent, then cached turns
            async with AsyncSessionManager(factory, url) as manager:
                await manager.send(ids[0], "warm up")
                cached = await _persistence_per_turn(manager, ids[0], rounds)
            # the store calls of a turn alone, back to back: begin_turn + finish_turn. The cached
            # turn's figure also pays for what the model and AutoGen leave behind between two
            # store calls (a longer CPU burst at 10,000 messages makes the next round trip
            # slower on any server); this one holds that gap constant
            store_samples = []
            pair = seed_messages(2)
            for _ in range(rounds * 2):
                start = time.perf_counter()
                begun = await seeder.store.begin_turn(ids[0], 60)
                assert begun is not None and begun[1] is not None
                await seeder.store.finish_turn(ids[0], pair, begun[1].version, begun[0])
                store_samples.append(time.perf_counter() - start)
            # another worker served the previous turn: two managers on one store take turns,
            # and the one measured catches its cached agent up with the other's turn
            async with (
                AsyncSessionManager(factory, url) as worker,
                AsyncSessionManager(factory, url) as other,
            ):
                await worker.send(ids[0], "warm up")
                other_samples = []
                for i in range(rounds):
                    await other.send(ids[0], f"the other worker's turn {i}")
                    other_samples.append(await _persistence_per_turn(worker, ids[0], 1))
            # cold path: a fresh manager (empty cache) per sample, each on its own copy
            cold_samples = []
            for sid in ids[1:]:
                async with AsyncSessionManager(factory, url) as fresh:
                    cold_samples.append(await _persistence_per_turn(fresh, sid, 1))
            load_samples = []
            for sid in ids[1 : 1 + min(rounds, 5)]:
                start = time.perf_counter()
                await seeder.store.load(sid)
                load_samples.append(time.perf_counter() - start)
            rows.append(
                [
                    kind,
                    length,
                    ms(cached),
                    ms(statistics.median(store_samples)),
                    ms(statistics.median(cold_samples)),
                    ms(statistics.median(load_samples)),
                    ms(statistics.median(other_samples)),
                ]
            )
        drop = getattr(seeder.store, "drop", None)
        if drop is not None:
            await drop()
    return rows


def openai_agents_rows(lengths: Sequence[int], rounds: int, folder: str) -> list[list[Any]]:
    """OpenAI Agents SDK SQLiteSession: add one turn (2 items) at each length."""
    try:
        from agents import SQLiteSession
    except ImportError:
        return []

    async def measure() -> list[list[Any]]:
        rows = []
        for length in lengths:
            session = SQLiteSession(f"bench-{length}", f"{folder}/openai-agentsession.db")
            items: list[Any] = []
            for m in seed_messages(length):
                items.append({"role": m.role, "content": m.content})
            await session.add_items(items)
            samples = []
            for i in range(rounds):
                start = time.perf_counter()
                await session.add_items(
                    [
                        {"role": "user", "content": f"turn {i}"},
                        {"role": "assistant", "content": "ok"},
                    ]
                )
                samples.append(time.perf_counter() - start)
            start = time.perf_counter()
            await session.get_items()
            read = time.perf_counter() - start
            rows.append(
                [
                    "OpenAI Agents SQLiteSession",
                    length,
                    ms(statistics.median(samples)),
                    "",
                    ms(read),
                ]
            )
            session.close()
        return rows

    return list(run(measure()))


def langgraph_rows(lengths: Sequence[int], rounds: int, folder: str) -> list[list[Any]]:
    """LangGraph SqliteSaver: one invoke appending a turn (no model) at each length."""
    try:
        from langchain_core.messages import AIMessage, HumanMessage
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import START, MessagesState, StateGraph
    except ImportError:
        return []

    def reply(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content="ok")]}

    rows = []
    conn = sqlite3.connect(f"{folder}/langgraph.db", check_same_thread=False)
    saver = SqliteSaver(conn)
    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    graph = builder.compile(checkpointer=saver)
    for length in lengths:
        config = {"configurable": {"thread_id": f"bench-{length}"}}
        seed = []
        for m in seed_messages(length):
            seed.append(
                HumanMessage(content=m.content)
                if m.role == "user"
                else AIMessage(content=m.content)
            )
        graph.update_state(config, {"messages": seed})
        samples = []
        for i in range(rounds):
            start = time.perf_counter()
            graph.invoke({"messages": [HumanMessage(content=f"turn {i}")]}, config)
            samples.append(time.perf_counter() - start)
        rows.append(["LangGraph SqliteSaver", length, ms(statistics.median(samples)), "", ""])
    conn.close()
    return rows


def measure(quick: bool, floors: dict[str, Any], family: str = "agentchat") -> list[Table]:
    lengths = [10, 100, 1000] if quick else [10, 100, 1000, 10000]
    rounds = 5 if quick else 15
    engine.driver_for = _timed_driver_for  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(dir=".") as folder:
            rows: list[list[Any]] = []
            for kind, url in store_urls(folder).items():
                rows += asyncio.run(measure_store(kind, url, lengths, rounds, family))
            peers = openai_agents_rows(lengths, rounds, folder) + langgraph_rows(
                lengths, rounds, folder
            )
    finally:
        engine.driver_for = driver_for
    table = Table(
        "Persistence cost of one turn against conversation length (ms, median)",
        [
            "store",
            "messages",
            "cached turn",
            "store calls only",
            "cold turn",
            "cold read (load)",
            "other-worker turn",
            "other-worker / cached",
            "cached vs 10",
            "store calls vs 10",
            "cached / floor",
            "store calls / floor",
        ],
        notes=[
            f"{family} family with the offline model; the driver's run_turn (model + AutoGen) is subtracted.",
            "cold turn = a fresh manager: read the history, build the agent, load the history, append.",
            "other-worker turn = another manager on the same store served the previous turn: the cached agent catches up from the new messages.",
            "store calls only = begin_turn + finish_turn back to back, no agent: what the store does for a turn.",
            "peers are measured on the same disk, back to back like the store calls; their whole call is persistence (no model).",
        ],
    )

    # the SQLite store commits at synchronous=FULL: compare with the FULL floor
    def floor_of(kind: str) -> float | None:
        floor = floors.get("sqlite_full" if kind == "sqlite" or kind in peer_kinds else kind)
        return ms(floor) if floor else None

    def ratio(value: Any, to: float | None) -> Any:
        return round(value / to, 2) if isinstance(value, float) and to else ""

    # peers: their one call is the whole of their persistence, made back to back
    peer_rows = [[kind, length, "", call, "", read, ""] for kind, length, call, _, read in peers]
    peer_kinds = {row[0] for row in peer_rows}
    first: dict[str, list[Any]] = {}
    for row in rows + peer_rows:
        kind = row[0]
        if not isinstance(row[2], float) and not isinstance(row[3], float):
            table.rows.append([*row, "", "", "", "", ""])  # unavailable
            continue
        base = first.setdefault(kind, row)
        floor = floor_of(kind)
        table.rows.append(
            [
                *row,
                ratio(row[6], row[2] if isinstance(row[2], float) else None),
                ratio(row[2], base[2] if isinstance(base[2], float) else None),
                ratio(row[3], base[3]),
                ratio(row[2], floor),
                ratio(row[3], floor),
            ]
        )
    return [table]
