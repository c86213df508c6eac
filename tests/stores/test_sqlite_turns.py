"""The SQLite store's turn: two transactions (lease + summary, append + release), not four."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from test_contract import turn

from agentsession.stores.sqlite import SQLiteStore

Trace = list[tuple[str, str]]


def traced(path: Path, body: Callable[[SQLiteStore, Trace], Awaitable[Any]]) -> Any:
    """Run ``body`` with every statement of the store's two connections recorded as
    ``(connection, statement)``; the connection is named by its synchronous level."""

    async def main() -> Any:
        store = SQLiteStore(path)
        try:
            await store.create("s1", {"k": 1})  # opens the turn connection (FULL)...
            await store.release("s1", "nobody")  # ...and the lease connection (OFF)
            trace: Trace = []
            names = {0: "lease", 2: "turn"}
            for conn in store._connections:
                name = names[conn.execute("PRAGMA synchronous").fetchone()[0]]
                conn.set_trace_callback(lambda sql, name=name: trace.append((name, sql)))
            return await body(store, trace)
        finally:
            await store.close()

    return asyncio.run(main())


def statements(trace: Trace) -> list[tuple[str, str]]:
    """The statements' first words; an executemany's rows count once."""
    out: list[tuple[str, str]] = []
    for conn, sql in trace:
        statement = (conn, " ".join(sql.split()[:3]))
        if not out or out[-1] != statement:
            out.append(statement)
    return out


def test_a_turn_is_two_transactions(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, trace: Trace) -> None:
        begun = await store.begin_turn("s1", 30)
        assert begun is not None and begun[1] is not None and begun[1].metadata == {"k": 1}
        assert await store.finish_turn("s1", turn(1), 0, begun[0]) == 1
        assert statements(trace) == [
            ("lease", "BEGIN IMMEDIATE"),
            ("lease", "INSERT INTO agentsession_leases"),
            ("lease", "SELECT version, message_count,"),
            ("lease", "COMMIT"),
            ("turn", "BEGIN IMMEDIATE"),
            ("turn", "DELETE FROM agentsession_leases"),  # the lease fence, and its release
            ("turn", "UPDATE agentsession_conversations SET"),
            ("turn", "INSERT INTO agentsession_messages"),
            ("turn", "COMMIT"),
        ]
        assert await store.acquire("s1", 30) is not None  # released by the commit

    traced(tmp_path / "agents.db", body)


def test_a_refused_begin_turn_reads_nothing(tmp_path: Path) -> None:
    async def body(store: SQLiteStore, trace: Trace) -> None:
        assert await store.acquire("s1", 30) is not None
        trace.clear()
        assert await store.begin_turn("s1", 30) is None
        assert [sql for _, sql in statements(trace)] == [
            "BEGIN IMMEDIATE",
            "INSERT INTO agentsession_leases",
            "ROLLBACK",
        ]

    traced(tmp_path / "agents.db", body)


def test_a_failed_write_transaction_releases_on_the_lease_connection(tmp_path: Path) -> None:
    path = tmp_path / "agents.db"

    async def body(store: SQLiteStore, trace: Trace) -> None:
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        with sqlite3.connect(path) as db:  # the insert of the messages fails mid-transaction
            db.execute(
                "CREATE TRIGGER fail BEFORE INSERT ON agentsession_messages"
                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        trace.clear()
        with pytest.raises(sqlite3.IntegrityError, match="injected"):
            await store.finish_turn("s1", turn(1), 0, begun[0])
        assert statements(trace)[-2:] == [
            ("turn", "ROLLBACK"),
            ("lease", "DELETE FROM agentsession_leases"),
        ]
        info = await store.info("s1")
        assert info is not None and info.version == 0 and info.message_count == 0
        assert await store.acquire("s1", 30) is not None

    traced(path, body)
