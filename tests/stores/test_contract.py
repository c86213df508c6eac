"""One contract, every store: memory, SQLite, Redis, PostgreSQL, MariaDB (real servers)."""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
import sys
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
from agentsession.errors import MissingDependency
from agentsession.stores import RecordCodec, Store, open_store


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


def test_gc_needs_an_idle_time(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        assert await store.gc() == 0  # no TTL and no idle_seconds: nothing is idle
        assert await store.load("s1") is not None

    run(store_url, body)


def test_ttl_expires_conversations(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("short", {})
        await store.append("short", turn(1), 0)
        await asyncio.sleep(1.3)
        assert await store.load("short") is None and await store.version("short") is None
        assert await store.info("short") is None and await store.list() == []
        await store.create("short", {})  # the id is free again
        assert await store.version("short") == 0
        assert (await store.load("short")).messages == []  # type: ignore[union-attr]

    run(store_url, body, ttl=1.0)


def test_every_write_refreshes_the_ttl(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("busy", {})
        await store.create("idle", {})
        version = 0
        for i in range(3):  # 1.8 s in all, never 1 s without a write
            await asyncio.sleep(0.6)
            version = await store.append("busy", turn(i), version)
        assert await store.load("idle") is None
        busy = await store.load("busy")
        assert busy is not None and len(busy.messages) == 6
        assert await store.gc() == 1  # the default idle time is the TTL
        assert [info.session_id for info in await store.list()] == ["busy"]

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


def test_turn_protocol_takes_the_lease_and_releases_it(store_url: str) -> None:
    """``begin_turn``/``finish_turn``: the two round trips of a turn (stores may fuse them)."""

    async def body(store: Store) -> None:
        begun = await store.begin_turn("s1", 5)
        assert begun is not None and begun[1] is None  # a new conversation
        assert await store.begin_turn("s1", 5) is None  # the lease is held
        await store.create("s1", {"k": 1})
        assert await store.finish_turn("s1", turn(1), 0, begun[0]) == 1
        again = await store.begin_turn("s1", 5)  # released by finish_turn
        assert again is not None and again[1] is not None
        assert again[1].version == 1 and again[1].message_count == 2
        assert again[1].metadata == {"k": 1}
        with pytest.raises(ConflictError):
            await store.finish_turn("s1", turn(2), 0, again[0])  # stale: nothing lands...
        assert await store.acquire("s1", 5) is not None  # ...and the lease is released anyway
        conversation = await store.load("s1")
        assert conversation is not None and len(conversation.messages) == 2

    run(store_url, body)


def test_session_ids_are_exact(store_url: str) -> None:
    """No case folding or trailing-space padding: MySQL collations do both by default."""

    async def body(store: Store) -> None:
        ids = ["Ab", "ab", "ab ", "aB\u00e9", "ab\u0065\u0301"]
        for number, sid in enumerate(ids):
            await store.create(sid, {"n": number})
        for number, sid in enumerate(ids):
            info = await store.info(sid)
            assert info is not None and info.session_id == sid and info.metadata == {"n": number}
        assert await store.info("AB") is None
        await store.append("ab", turn(1), 0)
        assert (await store.info("Ab")).message_count == 0  # type: ignore[union-attr]
        assert sorted(i.session_id for i in await store.list()) == sorted(ids)

    run(store_url, body)


def test_unicode_round_trip(store_url: str) -> None:
    texts = [
        "emoji 😀👩🏽‍💻 and a 4-byte 𝄞",
        "中文, 日本語, 한국어",
        "עברית and العربية (right to left)",
        "e\u0301 combining, \u200b zero width, \ufeff bom",
        "quotes \" ' and \\ backslashes, tabs\tnew\nlines\r\n",
        "control \x00 \x01 \x1f chars",
        "",
    ]
    sent = [Message("user", text, name="ünïcödé") for text in texts]
    metadata = {"名前": "😀", "nested": {"ключ": ["значение", None, 1.5]}}

    async def body(store: Store) -> None:
        await store.create("s1", metadata)
        await store.append("s1", sent, 0)
        conversation = await store.load("s1")
        assert conversation is not None and conversation.metadata == metadata
        assert [m.content for m in conversation.messages] == texts
        assert {m.name for m in conversation.messages} == {"ünïcödé"}

    run(store_url, body)


class _FailsAt(RecordCodec):
    """Fails to encode the ``n``-th message it is given."""

    def __init__(self, n: int) -> None:
        self.left = n

    def dump_message(self, message: Message) -> str:
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("encoding failed half way through the turn")
        return super().dump_message(message)


def test_a_failed_append_leaves_nothing(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        await store.append("s1", turn(1), 0)
        store.codec = _FailsAt(1500)
        with pytest.raises(RuntimeError):
            await store.append("s1", [Message("user", f"m{i}") for i in range(3000)], 1)
        store.codec = RecordCodec()
        info = await store.info("s1")
        assert info is not None and info.version == 1 and info.message_count == 2
        conversation = await store.load("s1")
        assert conversation is not None and len(conversation.messages) == 2
        assert await store.append("s1", turn(2), 1) == 2

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


def corrupt(kind: str, url: str, store: Any, session_id: str, body: str, what: str) -> None:
    """Overwrite the first message (or the metadata) of ``session_id`` with ``body``.

    Written with the backend's own client, as damage on disk would be.
    """
    message = what == "message"
    if kind == "memory":
        record = store._records[session_id]
        if message:
            record.messages[0] = body
        else:
            record.metadata = body
    elif kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute(
                "UPDATE agentsession_messages SET body = ? WHERE session_id = ? AND seq = 0"
                if message
                else "UPDATE agentsession_conversations SET metadata = ? WHERE session_id = ?",
                (body, session_id),
            )
    elif kind.startswith("redis"):
        meta_key, messages_key = store._keys(session_id)
        client = sync_redis(kind, url)
        try:
            if message:
                client.lset(messages_key, 0, body)
            else:
                client.hset(meta_key, "metadata", body)
        finally:
            client.close()
    elif kind in ("postgresql", "mariadb"):
        import sqlalchemy as sa

        engine = sa.create_engine(store.engine.url)  # a client of its own, not the store's pool
        messages, conversations = store.messages, store.conversations
        with engine.begin() as conn:
            if message:
                first = sa.and_(messages.c.session_id == session_id, messages.c.seq == 0)
                conn.execute(sa.update(messages).where(first).values(body=body))
            else:
                row = conversations.c.session_id == session_id
                conn.execute(sa.update(conversations).where(row).values(metadata=body))
        engine.dispose()
    else:
        raise AssertionError(kind)


def sync_redis(kind: str, url: str) -> Any:
    """A client of its own for the Redis behind a store URL: a node, a cluster, a Sentinel's
    master (``redis+cluster://h:p,…`` and ``redis+sentinel://h:p,…/service`` URLs)."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    from redis.sentinel import Sentinel

    if kind == "redis":
        return redis.Redis.from_url(url.split("?")[0])
    scheme, _, rest = url.partition("://")
    if kind == "redis-tls":  # one TLS node
        ca = dict(p.split("=", 1) for p in url.partition("?")[2].split("&"))["ssl_ca_certs"]
        return redis.Redis.from_url(url.split("?")[0], ssl_ca_certs=ca)
    netloc, _, path = rest.partition("/")
    hosts = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in netloc.split(",")]
    query = dict(part.split("=", 1) for part in url.partition("?")[2].split("&") if part)
    tls: dict[str, Any] = {}
    if scheme.startswith("rediss"):  # a TLS-only cluster or Sentinel setup
        tls = {"ssl": True, "ssl_ca_certs": query["ssl_ca_certs"]}
    if kind.startswith("redis-cluster"):
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts], **tls)
    sentinels = Sentinel(hosts, sentinel_kwargs=tls)
    return sentinels.master_for(path.split("?")[0].split("/")[0], **tls)


_ONE = {"v": 1, "role": "user", "content": "x"}
_DAMAGED = {
    "invalid json": "{oops",
    "newer schema": json.dumps({**_ONE, "v": 99}),
    "no schema version": json.dumps({"role": "user", "content": "x"}),
    # stores may join the records into one array to decode them: one record must stay one
    "two records in one": json.dumps(_ONE) + "," + json.dumps(_ONE),
    "breaks out of an array": json.dumps(_ONE) + "]",
}


@pytest.mark.parametrize("damage", list(_DAMAGED))
def test_corrupt_message_names_its_session_and_stays(
    store_kind: str, store_url: str, damage: str
) -> None:
    bad = _DAMAGED[damage]

    async def body(store: Store) -> None:
        for sid in ("broken", "healthy"):
            await store.create(sid, {})
            await store.append(sid, turn(1), 0)
        corrupt(store_kind, store_url, store, "broken", bad, "message")
        error = UnknownSchemaVersion if damage == "newer schema" else CorruptRecord
        with pytest.raises(error) as caught:
            await store.load("broken")
        assert caught.value.session_id == "broken" and "broken" in str(caught.value)
        with pytest.raises(error):
            await store.read_messages("broken", 0, 1)
        assert (await store.load("healthy")) is not None  # others keep working
        info = await store.info("broken")  # left in place
        assert info is not None and info.message_count == 2

    run(store_url, body)


@pytest.mark.parametrize("damage", ["invalid json", "not an object", "newer schema"])
def test_corrupt_metadata_names_its_session(store_kind: str, store_url: str, damage: str) -> None:
    bad = {
        "invalid json": "\xff{",
        "not an object": "[1, 2]",
        "newer schema": json.dumps({"v": 99, "metadata": {}}),
    }[damage]

    async def body(store: Store) -> None:
        for sid in ("broken", "healthy"):
            await store.create(sid, {"who": sid})
        corrupt(store_kind, store_url, store, "broken", bad, "metadata")
        error = UnknownSchemaVersion if damage == "newer schema" else CorruptRecord
        for read in (store.info, store.load):
            with pytest.raises(error) as caught:
                await read("broken")
            assert caught.value.session_id == "broken"
        healthy = await store.info("healthy")
        assert healthy is not None and healthy.metadata == {"who": "healthy"}
        # a listing reports the damaged one by id and still lists the rest
        listed = {info.session_id: info for info in await store.list()}
        assert set(listed) == {"broken", "healthy"}
        assert (
            listed["healthy"].metadata == {"who": "healthy"} and listed["healthy"].problem is None
        )
        problem = listed["broken"].problem
        assert listed["broken"].metadata == {} and problem is not None and "'broken'" in problem
        assert await store.version("broken") == 0  # left in place

    run(store_url, body)


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("agentsession.stores.redis", "redis", "redis"),
        ("agentsession.stores.sql", "sqlalchemy", "postgresql"),
        ("agentsession.stores.encryption", "cryptography", "encryption"),
    ],
)
def test_a_missing_driver_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, blocked: str, extra: str
) -> None:
    for name in list(sys.modules):
        if name == blocked or name.startswith(blocked + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # makes "import blocked" fail
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingDependency, match=rf"agentsession-middleware\[{extra}\]"):
        importlib.import_module(module)


# -- pages and truncation ------------------------------------------------------------------


class _CountingCodec(RecordCodec):
    """Counts the message records a store hands back for decoding."""

    decoded = 0

    def load_messages(self, texts: Any, session_id: str) -> list[Message]:
        self.decoded += len(texts)
        return super().load_messages(texts, session_id)

    def load_array(self, array: Any, count: int) -> list[Message] | None:
        messages = super().load_array(array, count)
        self.decoded += 0 if messages is None else len(messages)
        return messages


def test_read_messages_reads_only_its_page(store_url: str) -> None:
    codec = _CountingCodec()

    async def body(store: Store) -> None:
        await store.create("s1", {})
        for i in range(100):
            await store.append("s1", turn(i), i)
        contents = [f"{kind} {i}" for i in range(100) for kind in ("question", "answer")]
        for start, stop in [(0, 2), (-2, None), (10, 14), (195, 400), (-500, 3), (5, 5), (7, 3)]:
            codec.decoded = 0
            page = await store.read_messages("s1", start, stop)
            assert page is not None and page.total == 200 and page.version == 100
            assert [m.content for m in page.messages] == contents[start:stop]
            assert page.start == slice(start, stop).indices(200)[0]
            assert codec.decoded == len(contents[start:stop])  # O(page), not O(history)
        assert await store.read_messages("nobody", -10) is None

    run(store_url, body, codec=codec)


def test_truncate_removes_the_tail_and_is_fenced(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        for i in range(3):
            await store.append("s1", turn(i), i)
        with pytest.raises(ConflictError):
            await store.truncate("s1", 2, 1)
        assert await store.truncate("s1", 2, 3) == 4
        conversation = await store.load("s1")
        assert conversation is not None and conversation.version == 4
        assert [m.content for m in conversation.messages] == ["question 0", "answer 0"]
        info = await store.info("s1")
        assert info is not None and info.message_count == 2
        assert await store.append("s1", turn(9), 4) == 5  # appends continue after the cut
        page = await store.read_messages("s1", -2)
        assert page is not None and [m.content for m in page.messages] == ["question 9", "answer 9"]
        with pytest.raises(SessionNotFound):
            await store.truncate("nobody", 0, 0)

    run(store_url, body)
