"""The floor: the cheapest durable write each store's server can do, measured in this run."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from typing import Any

from ._report import Table, amedian_time, median_time, ms, run

PAYLOAD = '{"v":1,"role":"user","content":"' + "x" * 200 + '","created_at":1.0}'
REDIS_URL = os.environ.get("AGENTSESSION_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "AGENTSESSION_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def sqlite_floor(rounds: int, synchronous: str = "NORMAL") -> float:
    """One INSERT + COMMIT in WAL mode at agentsession's synchronous level."""
    with tempfile.TemporaryDirectory(dir=".") as folder:
        conn = sqlite3.connect(os.path.join(folder, "floor.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")

        def insert() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (body) VALUES (?)", (PAYLOAD,))
            conn.execute("COMMIT")

        try:
            return median_time(insert, rounds=rounds, number=50)
        finally:
            conn.close()


def redis_floor(rounds: int) -> float | None:
    """One pipelined round trip (RPUSH + HSET) with redis.asyncio, as the Redis store talks."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        return None

    async def measure() -> float:
        client = aioredis.Redis.from_url(REDIS_URL)
        key = f"agentsession-bench-floor-{uuid.uuid4().hex}"
        try:
            await client.ping()

            async def push() -> None:
                pipe = client.pipeline(transaction=False)
                pipe.rpush(key + ":m", PAYLOAD)
                pipe.hset(key, "updated", "1")
                await pipe.execute()

            return await amedian_time(push, rounds=rounds, number=50)
        finally:
            await client.delete(key, key + ":m")
            await client.aclose()

    try:
        return float(run(measure()))
    except OSError:
        return None
    except Exception as exc:  # redis.ConnectionError is not an OSError
        if "connect" in str(exc).lower():
            return None
        raise


def postgres_floor(rounds: int) -> float | None:
    """One INSERT + COMMIT with psycopg 3 over TCP."""
    try:
        import psycopg
    except ImportError:
        return None
    try:
        conn = psycopg.connect(POSTGRES_DSN, connect_timeout=2)
    except psycopg.OperationalError:
        return None
    table = f"agentsession_bench_floor_{uuid.uuid4().hex[:8]}"
    try:
        conn.execute(f"CREATE TABLE {table} (id SERIAL PRIMARY KEY, body TEXT)")
        conn.commit()

        def insert() -> None:
            conn.execute(f"INSERT INTO {table} (body) VALUES (%s)", (PAYLOAD,))
            conn.commit()

        return median_time(insert, rounds=rounds, number=20)
    finally:
        conn.rollback()
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()


def measure(quick: bool) -> tuple[Table, dict[str, Any]]:
    rounds = 5 if quick else 15
    floors: dict[str, Any] = {
        "sqlite": sqlite_floor(rounds),
        "sqlite_full": sqlite_floor(rounds, "FULL"),
        "redis": redis_floor(rounds),
        "postgresql": postgres_floor(rounds),
    }
    table = Table(
        "The floor: one durable write, measured in this run",
        ["store", "operation", "median ms"],
        notes=[
            "agentsession's SQLite store commits turns at synchronous=FULL (durable); its leases at OFF."
        ],
    )
    names = {
        "sqlite": "SQLite INSERT+COMMIT, WAL, synchronous=NORMAL",
        "sqlite_full": "SQLite INSERT+COMMIT, WAL, synchronous=FULL",
        "redis": "Redis pipelined RPUSH+HSET round trip",
        "postgresql": "PostgreSQL INSERT+COMMIT",
    }
    for key, value in floors.items():
        table.rows.append([key, names[key], "unavailable" if value is None else ms(value)])
    return table, floors
