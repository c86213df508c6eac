"""Cold reads: a whole conversation read from its store by a process that has nothing cached.

Per store, agentsession's ``Store.load`` (every record decoded into a checked ``Message``)
against what a peer that returns plain dicts does at least on the same server: fetch the
same records with the bare driver and ``json.loads`` each (LangChain's Redis and PostgreSQL
chat histories do that, then build their own message objects on top), and, on SQLite, the
OpenAI Agents SDK's ``SQLiteSession.get_items`` when it is installed. The readers take turns
round after round, so a shared machine's noise falls on all of them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from agentsession.stores import open_store

from ._report import Table, ms
from .turn_cost import POSTGRES_URL, REDIS_URL, seed_messages

MARIADB_URL = "mysql://root@127.0.0.1:3306/test"
Reader = Callable[[], Awaitable[Any]]


async def _seed(url: str, length: int) -> tuple[Any, str]:
    store = open_store(url)
    sid = f"cold-{uuid.uuid4().hex[:8]}"
    await store.create(sid, {})
    messages = seed_messages(length)
    for version, start in enumerate(range(0, length, 2000)):
        await store.append(sid, messages[start : start + 2000], version)
    return store, sid


def _plain_sqlite(path: str, sid: str) -> Reader:
    conn = sqlite3.connect(path, check_same_thread=False)

    async def read() -> Any:
        rows = conn.execute(
            "SELECT body FROM agentsession_messages WHERE session_id = ? ORDER BY seq", (sid,)
        ).fetchall()
        return [json.loads(body) for (body,) in rows]

    return read


def _plain_redis(store: Any, sid: str) -> Reader:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    key = store._keys(sid)[1]

    async def read() -> Any:
        return [json.loads(item) for item in await client.lrange(key, 0, -1)]

    return read


def _plain_sql(url: str, table: str, sid: str) -> Reader:
    if url.startswith("mysql"):
        import pymysql

        conn: Any = pymysql.connect(host="127.0.0.1", user="root", database="test")
    else:
        import psycopg

        conn = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test")

    def fetch() -> Any:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT body FROM {table} WHERE session_id = %s ORDER BY seq", [sid])
            rows = cursor.fetchall()
        conn.commit()
        return [json.loads(body) for (body,) in rows]

    async def read() -> Any:
        return fetch()

    return read


async def _openai_agents(folder: str, length: int) -> Reader | None:
    try:
        from agents import SQLiteSession
    except ImportError:
        return None
    session = SQLiteSession(f"cold-{length}", f"{folder}/openai-agents.db")
    await session.add_items(
        [{"role": m.role, "content": m.content} for m in seed_messages(length)]  # type: ignore[misc]
    )

    async def read() -> Any:
        return await session.get_items()

    return read


async def _measure(kind: str, url: str, length: int, rounds: int, folder: str) -> list[list[Any]]:
    try:
        store, sid = await _seed(url, length)
    except Exception as exc:
        return [[kind, length, f"unavailable: {type(exc).__name__}", "", "", ""]]
    readers: dict[str, Reader] = {}

    async def ours() -> Any:
        conversation = await store.load(sid)
        assert conversation is not None and len(conversation.messages) == length

    readers["agentsession"] = ours
    if kind == "sqlite":
        readers["plain dicts"] = _plain_sqlite(url.removeprefix("sqlite:///"), sid)
        peer = await _openai_agents(folder, length)
        if peer is not None:
            readers["OpenAI Agents SQLiteSession"] = peer
    elif kind == "redis":
        readers["plain dicts"] = _plain_redis(store, sid)
    else:
        readers["plain dicts"] = _plain_sql(url, store._messages_table, sid)
    samples: dict[str, list[float]] = {name: [] for name in readers}
    for reader in readers.values():
        await reader()  # warm up: connections, prepared statements
    for _ in range(rounds):
        for name, reader in readers.items():
            start = time.perf_counter()
            await reader()
            samples[name].append(time.perf_counter() - start)
    await store.delete(sid)
    if kind in ("postgresql", "mariadb"):
        await store.drop()  # this run's tables
    await store.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    best_peer = min(v for name, v in medians.items() if name != "agentsession")
    return [
        [
            kind,
            length,
            name,
            ms(value),
            round(value / best_peer, 2),
            "" if name != "agentsession" else round(value / medians["plain dicts"], 2),
        ]
        for name, value in medians.items()
    ]


def measure(quick: bool) -> list[Table]:
    lengths = [1000, 10000]
    rounds = 7 if quick else 21
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(dir=".") as folder:
        tag = uuid.uuid4().hex[:8]
        urls = {
            "sqlite": f"sqlite:///{folder}/reads.db",
            "redis": f"{REDIS_URL}?prefix=agentsession-reads-{tag}:",
            "postgresql": f"{POSTGRES_URL}?table_prefix=reads{tag}_",
            "mariadb": f"{MARIADB_URL}?table_prefix=reads{tag}_",
        }
        for kind, url in urls.items():
            for length in lengths:
                rows += asyncio.run(_measure(kind, url, length, rounds, folder))
    return [
        Table(
            "Cold read of a whole conversation (ms, median)",
            ["store", "messages", "reader", "read", "vs best peer", "vs plain dicts"],
            rows,
            notes=[
                "agentsession = Store.load: every record checked and decoded into a Message.",
                "plain dicts = the same records fetched with the bare driver and json.loads each: "
                "the least a peer that returns dicts does (no checks, no objects).",
                "vs best peer = against the fastest other reader of the same store and length.",
            ],
        )
    ]
