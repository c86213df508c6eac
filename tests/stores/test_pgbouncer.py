"""The PostgreSQL store behind PgBouncer in transaction pooling mode (``?pgbouncer=true``).

Each module run starts a pgbouncer of its own (two server connections per pool, so clients
share them), in front of the shared PostgreSQL. The contract and turn-protocol suites run
through it unchanged; then many concurrent turns through ``AsyncSessionManager``; then the
server-side limits, set per transaction there, still cancel a slow statement. Without the
option PgBouncer refuses the connection, and the error says what to add.
"""

from __future__ import annotations

import asyncio
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import test_contract
import test_turn_protocol
from conftest import drop_store, need_server, servers_required
from servers import find_pgbouncer, pgbouncer

from agentsession import AsyncSessionManager, Message, StoreUnavailable
from agentsession.offline import offline_agent_factory, user_messages_seen
from agentsession.stores import open_store

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def bouncer() -> Iterator[str]:
    """The URL of a test-started pgbouncer (pool_mode=transaction, default_pool_size=2)."""
    need_server("postgresql")
    if find_pgbouncer() is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if servers_required():
            pytest.fail(f"{message} and AGENTSESSION_REQUIRE_SERVERS is set")
        pytest.skip(message)
    with pgbouncer(pool_size=2) as port:
        yield f"postgresql://postgres@127.0.0.1:{port}/test?pgbouncer=true"


@pytest.fixture
def store_kind() -> str:
    return "postgresql"  # what the suites' helpers (corrupt) see: a PostgreSQL store


@pytest.fixture
def store_url(bouncer: str) -> Iterator[str]:
    url = f"{bouncer}&table_prefix=b{uuid.uuid4().hex[:10]}_"
    yield url
    drop_store("postgresql", url)


def _without_store_kind_parametrize(test: Any) -> Any:
    """The same test, minus a parametrisation of ``store_kind`` (this module fixes it)."""
    marks = getattr(test, "pytestmark", [])
    if not any(m.name == "parametrize" and "store_kind" in str(m.args[0]) for m in marks):
        return test
    copy = types.FunctionType(
        test.__code__, test.__globals__, test.__name__, test.__defaults__, test.__closure__
    )
    copy.__annotations__ = test.__annotations__
    copy.pytestmark = [  # type: ignore[attr-defined]
        m for m in marks if not (m.name == "parametrize" and "store_kind" in str(m.args[0]))
    ]
    return copy


# PgBouncer keeps its clients' connections when a server connection behind it ends, so the
# store's connections are never the ones the server closes
_NOT_THROUGH_PGBOUNCER = {
    "test_pooled_connections_the_server_closed_are_replaced_before_a_pipeline",
}

# the two store suites, every test that runs on a store URL, through pgbouncer
for _module in (test_contract, test_turn_protocol):
    for _name, _test in vars(_module).items():
        _takes = getattr(_test, "__code__", None)
        if _name in _NOT_THROUGH_PGBOUNCER:
            continue
        if _name.startswith("test_") and _takes and "store_url" in _takes.co_varnames:
            globals()[_name] = _without_store_kind_parametrize(_test)


# -- concurrency through a small pool ----------------------------------------------------


def test_concurrent_turns_through_a_small_pool_lose_nothing(store_url: str) -> None:
    """Two managers (two connection pools, so the store's lease decides, not an in-process
    lock): 24 concurrent turns on one conversation and 3 turns on each of 16 others, through
    a pgbouncer with two server connections. Every turn is recorded once, whole, in order,
    and each reply saw every turn before it."""

    async def scenario() -> None:
        factory = offline_agent_factory()
        managers = [
            AsyncSessionManager(factory, store_url, lock_timeout=120, lease_ttl=6) for _ in range(2)
        ]
        try:
            shared = [
                managers[i % 2].send("shared", f"shared {i}") for i in range(24)
            ]  # one conversation

            async def own(n: int) -> list[str]:
                return [await managers[n % 2].send(f"own-{n}", f"own {n}.{t}") for t in range(3)]

            replies = await asyncio.gather(*shared, *(own(n) for n in range(16)))
            assert all(isinstance(r, str) for r in replies[:24])
            history = await managers[0].history("shared")
            users = [m for m in history if m.role == "user"]
            assert sorted(str(m.content) for m in users) == sorted(f"shared {i}" for i in range(24))
            assert len(history) == 48, [m.role for m in history]
            for k, (user, reply) in enumerate(zip(history[::2], history[1::2], strict=True)):
                assert user.role == "user" and reply.role == "assistant"
                assert user_messages_seen(str(reply.content)) == k + 1  # saw all before it
            for n in range(16):
                mine = await managers[1].history(f"own-{n}")
                assert [m.content for m in mine if m.role == "user"] == [
                    f"own {n}.{t}" for t in range(3)
                ]
                assert len(mine) == 6
        finally:
            for manager in managers:
                await manager.aclose()

    asyncio.run(scenario())


# -- the server-side limits, per transaction ---------------------------------------------


def test_the_limits_hold_in_every_transaction(store_url: str) -> None:
    store: Any = open_store(f"{store_url}&timeout=1.5")
    names = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
    try:
        for _ in range(8):  # past psycopg's prepare threshold, on whichever server connection
            shown = store._call(
                lambda conn: [conn.exec_driver_sql(f"SHOW {n}").scalar() for n in names]
            )
            assert shown == ["1500ms"] * 3
        # not session state: a transaction outside the store's calls has the server defaults
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() != "1500ms"
        with pytest.raises(StoreUnavailable, match="statement timeout"):
            store._call(lambda conn: conn.exec_driver_sql("SELECT pg_sleep(5)").scalar())
        assert store._call(lambda conn: conn.exec_driver_sql("SELECT 1").scalar()) == 1
    finally:
        store.engine.dispose()


def test_a_lock_wait_is_cut_by_the_server(store_url: str) -> None:
    """A row lock held by another client: the store's transaction gives up after ``timeout``
    with the server's own error (statement and lock timeouts are equal; the statement's
    fires first) instead of waiting for the holder."""

    async def scenario() -> None:
        store: Any = open_store(f"{store_url}&timeout=1")
        other: Any = open_store(store_url)
        try:
            await store.create("s1", {})
            started = asyncio.Event()
            release = asyncio.Event()
            loop = asyncio.get_running_loop()

            def hold(conn: Any) -> None:
                conn.execute(
                    store.conversations.update()
                    .where(store.conversations.c.session_id == "s1")
                    .values(updated_at=1e12)
                )
                loop.call_soon_threadsafe(started.set)
                asyncio.run_coroutine_threadsafe(release.wait(), loop).result(30)

            holder = asyncio.create_task(asyncio.to_thread(other._call, hold))
            await started.wait()
            with pytest.raises(StoreUnavailable, match=r"(statement|lock) timeout"):
                await store.append("s1", [Message("user", "x")], 0)
            release.set()
            await holder
        finally:
            await store.close()
            await other.close()

    asyncio.run(scenario())


def test_without_the_option_the_error_names_it(bouncer: str) -> None:
    store = open_store(bouncer.replace("pgbouncer=true", "table_prefix=unused_"))
    try:
        with pytest.raises(StoreUnavailable, match=r"\?pgbouncer=true"):
            asyncio.run(store.ping())
    finally:
        asyncio.run(store.close())


def test_pgbouncer_option_values() -> None:
    from agentsession import ConfigurationError

    with pytest.raises(ConfigurationError, match="pgbouncer"):
        open_store("postgresql://postgres@127.0.0.1:1/test?pgbouncer=maybe")
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        open_store("mysql://root@127.0.0.1:1/test?pgbouncer=true")
    assert open_store("postgresql://postgres@127.0.0.1:1/test?pgbouncer=false").pgbouncer is False  # type: ignore[attr-defined]
