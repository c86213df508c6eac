"""One contract, every store: memory, SQLite, Redis, PostgreSQL, MariaDB (real servers)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentsession import (
    ConflictError,
    CorruptRecord,
    Message,
    SessionNotFound,
    UnknownSchemaVersion,
)
from agentsession.stores import Store, open_store


def run(store_url: str, body: Callable[[Store], Awaitable[Any]], **options: Any) -> Any:
    async def main() -> Any:
        store = open_store(store_url, **options)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def turn(i: int) -> list[Message]:
    return [
        Message("user", f"question {i}", name="user"),
        Message("assistant", f"answer {i}", name="assistant"),
    ]


def test_create_append_load(store_url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.load("s1") is None and await store.info("s1") is None
        await store.create("s1", {"user": "ada"})
        assert await store.version("s1") == 0
        assert await store.append("s1", turn(1), 0) == 1
        assert await store.append("s1", turn(2), 1) == 2
        conversation = await store.load("s1")
        assert conversation is not None
        assert [m.content for m in conversation.messages] == [
            "question 1",
            "answer 1",
            "question 2",
            "answer 2",
        ]
        assert conversation.version == 2 and conversation.metadata == {"user": "ada"}
        info = await store.info("s1")
        assert info is not None and info.message_count == 4 and info.version == 2
        assert info.updated_at >= info.created_at

    run(store_url, body)


def test_versions_fence_writers(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        await store.append("s1", turn(1), 0)
        with pytest.raises(ConflictError):
            await store.append("s1", turn(2), 0)  # a stale writer
        with pytest.raises(ConflictError):
            await store.create("s1", {})
        with pytest.raises(SessionNotFound):
            await store.append("missing", turn(1), 0)
        conversation = await store.load("s1")
        assert conversation is not None and len(conversation.messages) == 2

    run(store_url, body)


def test_metadata_reset_delete(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {"a": 1})
        await store.append("s1", turn(1), 0)
        assert await store.set_metadata("s1", {"a": 2, "b": [1, 2]}) == 2
        assert await store.reset("s1") == 3
        conversation = await store.load("s1")
        assert conversation is not None and conversation.messages == []
        assert conversation.metadata == {"a": 2, "b": [1, 2]}
        await store.append("s1", turn(2), 3)
        assert [m.content for m in (await store.load("s1")).messages] == ["question 2", "answer 2"]  # type: ignore[union-attr]
        assert await store.delete("s1") is True
        assert await store.delete("s1") is False
        assert await store.load("s1") is None
        with pytest.raises(SessionNotFound):
            await store.reset("s1")

    run(store_url, body)


def test_rename(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("old", {"k": "v"})
        await store.append("old", turn(1), 0)
        await store.create("taken", {})
        with pytest.raises(ConflictError):
            await store.rename("old", "taken")
        await store.rename("old", "new")
        assert await store.load("old") is None
        moved = await store.load("new")
        assert moved is not None and len(moved.messages) == 2 and moved.metadata == {"k": "v"}
        await store.append("new", turn(2), moved.version)
        with pytest.raises(SessionNotFound):
            await store.rename("old", "other")

    run(store_url, body)


def test_list_orders_by_last_update(store_url: str) -> None:
    async def body(store: Store) -> None:
        for name in ("a", "b", "c"):
            await store.create(name, {})
            await asyncio.sleep(0.01)
        await store.append("a", turn(1), 0)
        listed = [info.session_id for info in await store.list()]
        assert listed == ["a", "c", "b"]
        assert [i.session_id for i in await store.list(limit=1, offset=1)] == ["c"]
        assert (await store.list())[0].message_count == 2

    run(store_url, body)


def test_gc_removes_idle_and_keeps_live(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("idle", {})
        await asyncio.sleep(1.2)
        await store.create("live", {})
        assert await store.gc(idle_seconds=1.0) == 1
        assert await store.load("idle") is None and await store.load("live") is not None

    run(store_url, body)


def test_ttl_expires_conversations(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("short", {})
        await store.append("short", turn(1), 0)
        await asyncio.sleep(1.3)
        assert await store.load("short") is None and await store.version("short") is None
        await store.create("short", {})  # the id is free again
        assert await store.version("short") == 0

    run(store_url, body, ttl=1.0)


def test_leases_are_exclusive_and_expire(store_url: str) -> None:
    async def body(store: Store) -> None:
        token = await store.acquire("s1", 0.5)
        assert token is not None
        assert await store.acquire("s1", 0.5) is None
        await store.release("s1", "not-the-token")
        assert await store.acquire("s1", 0.5) is None
        await asyncio.sleep(0.7)  # the holder crashed: its lease expires
        second = await store.acquire("s1", 5)
        assert second is not None
        await store.release("s1", token)  # the stale holder cannot release the new lease
        assert await store.acquire("s1", 5) is None
        await store.release("s1", second)
        assert await store.acquire("s1", 5) is not None

    run(store_url, body)


def test_a_turn_lands_whole(store_url: str) -> None:
    many = [Message("user", f"m{i} ✓ ünïcödé", name="user") for i in range(3001)]

    async def body(store: Store) -> None:
        await store.create("s1", {})
        await store.append("s1", many, 0)
        conversation = await store.load("s1")
        assert conversation is not None
        assert [m.content for m in conversation.messages] == [m.content for m in many]

    run(store_url, body)


def corrupt(kind: str, url: str, store: Store, session_id: str, body: str) -> None:
    """Overwrite the first stored message of ``session_id`` with ``body``, using the backend's own client."""
    if kind == "memory":
        store._records[session_id].messages[0] = body  # type: ignore[attr-defined]
    elif kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute(
                "UPDATE agentsession_messages SET body = ? WHERE session_id = ? AND seq = 0",
                (body, session_id),
            )
    elif kind == "redis":
        import redis

        from agentsession.stores.redis import RedisStore

        store = RedisStore.from_url(url)
        client = redis.Redis.from_url(url.split("?")[0])
        client.lset(store._keys(session_id)[1], 0, body)
        client.close()
    elif kind in ("postgresql", "mariadb"):
        import sqlalchemy as sa

        from agentsession.stores.sql import SQLStore

        store = SQLStore.from_url(url)
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(store.messages)
                .where(store.messages.c.session_id == session_id, store.messages.c.seq == 0)
                .values(body=body)
            )
        store.engine.dispose()
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("damage", ["invalid json", "newer schema"])
def test_corrupt_record_names_its_session_and_stays(
    store_kind: str, store_url: str, damage: str
) -> None:
    bad = (
        "{oops"
        if damage == "invalid json"
        else json.dumps({"v": 99, "role": "user", "content": "x"})
    )

    async def body(store: Store) -> None:
        for sid in ("broken", "healthy"):
            await store.create(sid, {})
            await store.append(sid, turn(1), 0)
        corrupt(store_kind, store_url, store, "broken", bad)
        error = UnknownSchemaVersion if damage == "newer schema" else CorruptRecord
        with pytest.raises(error) as caught:
            await store.load("broken")
        assert caught.value.session_id == "broken" and "broken" in str(caught.value)
        assert (await store.load("healthy")) is not None  # others keep working
        info = await store.info("broken")  # left in place
        assert info is not None and info.message_count == 2

    run(store_url, body)
