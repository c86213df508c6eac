"""Team turns against conversation length: bytes written and agentsession's cost per turn.

A writer/critic ``RoundRobinGroupChat`` (``--family legacy``: a ``GroupChat`` with a user
proxy) on the offline model, seeded with 10 … 10,000 stored
messages. For each length: the bytes one team turn appends (its messages, their team record
included), what AutoGen's whole ``team.save_state()`` would be at that point (the full-state
checkpoint agentsession does not write), and agentsession's part of a cached team turn: the
engine's whole turn minus the time inside ``team.run_stream()`` (the model calls and AutoGen's
own work, which grow with the history whatever stores it). That part holds the store calls,
reading the turn's messages from the stream, rewriting what the turn added to each member's
context and reading the manager's bounded state. The cold turn (a fresh manager: read the log,
rebuild every member's context and the manager's thread) is shown as it is: it reads it all.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import agentsession.manager as engine
from agentsession import AsyncSessionManager, Message, open_store
from agentsession.families import driver_for
from agentsession.families._team import team_record, with_record

from ._report import Table, ms
from .turn_cost import store_urls

STOP = "TERMINATE"


class _Clock:
    autogen = 0.0  # seconds spent inside team.run_stream() since the last reset


def legacy_factory() -> Any:
    """A legacy (user proxy, writer, critic) group chat; AutoGen's part is ``run_chat``."""
    from agentsession.offline.legacy import build_group_chat

    user, manager = build_group_chat()
    inner = manager.run_chat

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            _Clock.autogen += time.perf_counter() - start

    manager.run_chat = timed
    return user, manager


def team_factory() -> Any:
    from autogen_agentchat.conditions import TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    from agentsession.offline.agentchat import build_member

    team = RoundRobinGroupChat(
        [build_member("writer"), build_member("critic", terminate=STOP)],
        termination_condition=TextMentionTermination(STOP),
    )
    inner = team.run_stream

    async def timed(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        stream = inner(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                item = await stream.__anext__()
            except StopAsyncIteration:
                _Clock.autogen += time.perf_counter() - start
                return
            _Clock.autogen += time.perf_counter() - start
            yield item

    team.run_stream = timed  # type: ignore[method-assign]
    return team


def seed_log(length: int) -> list[Message]:
    """A stored team conversation: blocks of (user, writer, critic), the critic's carrying the
    team record, as the driver writes them."""
    log: list[Message] = []
    record = team_record("RoundRobinGroupChat", {"current_turn": 0, "next_speaker_index": 0})
    for i in range(max(1, length // 3)):
        block = [
            Message("user", f"user message number {i}", name="user"),
            Message("assistant", f"I am writer; I have seen {i + 1} user messages.", name="writer"),
            Message(
                "assistant",
                f"I am critic; I have seen {i + 1} user messages. {STOP}",
                name="critic",
            ),
        ]
        log += with_record(block, record)
    return log


async def _seed(manager: AsyncSessionManager, log: Sequence[Message], copies: int) -> list[str]:
    ids = []
    for _ in range(copies):
        sid = engine.new_session_id()
        await manager.store.create(sid, {})
        for start in range(0, len(log), 2001):
            await manager.store.append(sid, log[start : start + 2001], start // 2001)
        ids.append(sid)
    return ids


async def _turn(manager: AsyncSessionManager, sid: str, text: str) -> tuple[float, float, int]:
    """(agentsession's seconds, AutoGen's seconds, bytes appended) of one team turn."""
    _Clock.autogen = 0.0
    start = time.perf_counter()
    turn = await manager.run_turn(sid, text)
    whole = time.perf_counter() - start
    written = sum(len(m.to_json().encode()) for m in turn)
    return whole - _Clock.autogen, _Clock.autogen, written


async def _full_state_bytes(log: Sequence[Message]) -> int:
    """What ``json.dumps(team.save_state())`` would write at this length (not written)."""
    driver: Any = driver_for(team_factory())
    await driver.import_history(log)
    state = await driver.agent.save_state()
    return len(json.dumps(state, default=str).encode())


async def measure_store(
    kind: str, url: str, lengths: Sequence[int], rounds: int, family: str = "agentchat"
) -> list[list[Any]]:
    factory = legacy_factory if family == "legacy" else team_factory
    # every "memory://" URL opens a new, empty store: the managers share one store object
    target: Any = open_store(url) if url.startswith("memory:") else url
    rows: list[list[Any]] = []
    async with AsyncSessionManager(factory, target) as seeder:
        try:
            await seeder.store.ping()
        except Exception as exc:
            return [[kind, "-", f"unavailable: {type(exc).__name__}", "", "", "", ""]]
        logs = {length: seed_log(length) for length in lengths}
        copies = 1 + min(rounds, 5)
        ids = {length: await _seed(seeder, logs[length], copies) for length in lengths}
        samples: dict[int, list[tuple[float, float, int]]] = {length: [] for length in lengths}
        async with AsyncSessionManager(factory, target) as manager:
            for length in lengths:
                await manager.run_turn(ids[length][0], "warm up")  # builds the live team
            # the lengths take turns, round after round: a shared machine's noise falls on all
            for i in range(rounds):
                for length in lengths:
                    samples[length].append(await _turn(manager, ids[length][0], f"team turn {i}"))
        for length in lengths:
            cold = []
            for sid in ids[length][1:]:
                async with AsyncSessionManager(factory, target) as fresh:
                    cold.append((await _turn(fresh, sid, "cold turn"))[0])
            rows.append(
                [
                    kind,
                    len(logs[length]),
                    statistics.median(s[2] for s in samples[length]),
                    await _full_state_bytes(logs[length])
                    if kind == "memory" and family == "agentchat"
                    else "",
                    ms(statistics.median(s[0] for s in samples[length])),
                    ms(statistics.median(s[1] for s in samples[length])),
                    ms(statistics.median(cold)),
                ]
            )
        drop = getattr(seeder.store, "drop", None)
        if drop is not None:
            await drop()
    return rows


def measure(quick: bool, family: str = "agentchat") -> list[Table]:
    lengths = [10, 100, 1000] if quick else [10, 100, 1000, 10000]
    rounds = 5 if quick else 15
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(dir=".") as folder:
        for kind, url in store_urls(folder).items():
            rows += asyncio.run(measure_store(kind, url, lengths, rounds, family))
    table = Table(
        "Team turns against conversation length ("
        + ("legacy GroupChat" if family == "legacy" else "RoundRobinGroupChat")
        + ", 3 messages per turn)",
        [
            "store",
            "messages",
            "bytes written per turn",
            "AutoGen save_state bytes",
            "agentsession per turn (ms)",
            "AutoGen per turn (ms)",
            "cold turn, agentsession (ms)",
            "bytes vs first",
            "agentsession vs first",
        ],
        notes=[
            "agentsession per turn = the engine's whole cached team turn minus the time inside "
            "team.run_stream() (legacy: manager.run_chat; the model calls and AutoGen): store "
            "calls, reading the messages, settling each member's context, the manager's bounded "
            "state. Medians.",
            "AutoGen save_state bytes = json.dumps(team.save_state()) at that length: what a "
            "full-state checkpoint per turn would write (measured once, not written).",
            "cold turn = a fresh manager: the log is read and every member's context and the "
            "manager's thread rebuilt, which grows with the conversation by nature.",
        ],
    )
    first: dict[str, list[Any]] = {}
    for row in rows:
        if not isinstance(row[4], float):
            table.rows.append([*row, "", ""])
            continue
        base = first.setdefault(row[0], row)
        table.rows.append(
            [*row, round(row[2] / base[2], 2), round(row[4] / base[4], 2) if base[4] else ""]
        )
    return [table]
