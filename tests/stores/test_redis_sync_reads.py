"""A sync app's reads on Redis: one sync client shared by every thread, no event loop turns.

``RedisStore.for_loop`` hands sync callers (Flask, WSGI, ``SessionManager``) a twin that
reads through redis-py's sync client. These tests run it against real servers started here:
a single node (its connections counted, killed mid-run), a Sentinel setup and a cluster (a
master killed mid-run), and each of them over TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from test_redis_cluster import (
    Node,
    info,
    nodes_in,
    redis_server,
    running_cluster,
    running_sentinel,
    wait_until,
)
from test_redis_tls import cluster_tls, sentinel_tls, single_tls

from agentsession import SessionManager, StoreUnavailable, _loop
from agentsession.offline import offline_agent_factory
from agentsession.stores.redis import RedisStore, _Inline

__all__ = ["cluster_tls", "sentinel_tls", "single_tls"]  # fixtures, imported for the TLS test
pytestmark = pytest.mark.slow  # starts redis-server
T = TypeVar("T")


@contextlib.contextmanager
def private_redis() -> Iterator[Node]:
    with nodes_in("agentsession-sync-reads-") as (root, made):
        node = Node(root, "")
        made.append(node)
        node.start()
        wait_until(lambda: redis.Redis(port=node.port).ping(), "redis-server start")
        yield node


def connected(port: int) -> int:
    with redis.Redis(port=port) as probe:
        return int(probe.info("clients")["connected_clients"]) - 1  # not the probe itself


def twin_of(manager: SessionManager) -> RedisStore:
    store = manager.engine.store
    assert isinstance(store, RedisStore)
    twin = store.for_loop()
    assert twin is not None and isinstance(twin.client, _Inline)
    return twin


def in_threads(read: Callable[[], None], count: int) -> None:
    """Run ``read`` in ``count`` threads at once; fail with what any of them raised."""
    failures: list[BaseException] = []

    def guarded() -> None:
        try:
            read()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


def read_after_failover(
    read: Callable[[], T], failed_over: Callable[[], bool] = lambda: True, seconds: float = 60
) -> tuple[T, list[StoreUnavailable]]:
    """What ``read`` returns once it succeeds after the failover, and the refusals before."""
    refused: list[StoreUnavailable] = []
    deadline = time.monotonic() + seconds
    while True:
        assert time.monotonic() < deadline, f"no read after the failover: {refused[-1:]}"
        try:
            found = read()
        except StoreUnavailable as exc:
            refused.append(exc)
        else:
            if failed_over():
                return found, refused
        time.sleep(0.1)


def test_threads_share_one_sync_client_and_close_it() -> None:
    with private_redis() as node:
        url = f"redis://127.0.0.1:{node.port}/0"
        with SessionManager(offline_agent_factory(), url) as manager:
            session = manager.session()
            session.send("one")
            session.send("two")
            twins: set[int] = set()

            def read() -> None:
                for _ in range(20):
                    messages = manager.history(session.id)
                    assert [m.content for m in messages][0::2] == ["one", "two"]
                    assert manager.info(session.id) is not None
                    assert len(manager.history(session.id, limit=1)) == 1
                twins.add(id(manager.engine._twins[_loop.here()]))

            in_threads(read, 8)
            assert twins == {id(twin_of(manager))}  # one twin, one client, for every thread
            # the bridge loop's connection(s) plus the sync pool, which keeps what it opened
            # for eight threads at once: at most eight, whatever the number of reads
            assert connected(node.port) <= 1 + 8 + 1
        wait_until(lambda: connected(node.port) == 0, "every connection closed")


def test_a_sync_read_sees_every_write_and_reads_what_the_loop_thread_reads() -> None:
    with private_redis() as node:
        url = f"redis://127.0.0.1:{node.port}/0?prefix=reads:"
        with (
            SessionManager(offline_agent_factory(), url) as manager,
            SessionManager(offline_agent_factory(), url) as other,
        ):
            session = manager.session()
            session.send("hello")
            for i in range(3):
                other.session(session.id).send(f"from the other worker {i}")
                assert len(manager.history(session.id)) == 4 + 2 * i  # caught up
            twin, store = twin_of(manager), manager.engine.store

            for call, args in [
                ("load", (session.id,)),
                ("info", (session.id,)),
                ("version", (session.id,)),
                ("read_messages", (session.id, 2, 5)),
                ("load", ("no-such-session-id-00",)),
            ]:
                inline = _loop.run_here(getattr(twin, call)(*args))  # this thread, sync client
                on_loop = _loop.run(getattr(store, call)(*args))  # the loop thread's client
                assert inline == on_loop, call


def test_an_outage_is_store_unavailable_and_reads_recover(tmp_path: Path) -> None:
    with private_redis() as node:
        url = f"redis://127.0.0.1:{node.port}/0?socket_timeout=1"
        with SessionManager(offline_agent_factory(), url) as manager:
            session = manager.session()
            session.send("kept")
            assert len(manager.history(session.id)) == 2
            node.kill()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="is unavailable"):
                manager.engine.read_here(lambda: manager.engine.load(session.id))
            assert time.monotonic() - started < 5  # refused at once, retried twice
            node.start()
            wait_until(lambda: redis.Redis(port=node.port).ping(), "redis-server restart")
            # it keeps nothing on disk: the conversation is gone, the read says so, no error
            assert manager.load(session.id) is None
            fresh = manager.session()
            fresh.send("again")
            assert manager.history(fresh.id)[0].content == "again"


def test_a_cluster_unreachable_for_the_first_sync_read_is_store_unavailable() -> None:
    # the sync cluster client reads the slot map as it is made: that failure is a 503 too,
    # and the next read tries again
    from servers import free_port

    hosts = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    with SessionManager(offline_agent_factory(), f"redis+cluster://{hosts}/") as manager:
        for _ in range(2):
            with pytest.raises(StoreUnavailable, match=r"Redis Cluster at .*cannot be connected"):
                manager.history("a-session-id-of-sixteen")


def test_sync_reads_follow_a_sentinel_failover() -> None:
    redis_server()
    with (
        running_sentinel() as setup,
        SessionManager(
            offline_agent_factory(), setup.with_query("prefix=sync-failover:")
        ) as manager,
    ):
        session = manager.session()
        session.send("before")  # acknowledged once the replica has it (WAIT 1)
        twin = twin_of(manager)
        assert len(manager.history(session.id)) == 2
        first = setup.master_port()
        victim = setup.node(first)
        victim.kill()
        # refused while the master is gone and not yet replaced, then served by the new one
        messages, refused = read_after_failover(
            lambda: manager.history(session.id), lambda: setup.master_port() != first
        )
        assert messages[0].content == "before" and len(messages) == 2
        assert refused, "no read was refused while the master was down"
        pool = twin.client.sync.connection_pool
        assert pool.get_master_address()[1] == setup.master_port() != first
        victim.start()  # the sentinels make it the new master's replica: writes are confirmed
        wait_until(setup.healthy, "the old master back, as the new one's replica", 60)
        session.send("after")
        assert [m.content for m in manager.history(session.id)][0::2] == ["before", "after"]
        _loop.run(manager.engine.store.drop())  # type: ignore[attr-defined]


def test_sync_reads_on_a_cluster_follow_a_failover() -> None:
    redis_server()
    with (
        running_cluster() as cluster,
        SessionManager(offline_agent_factory(), cluster.with_query("prefix=sync:")) as manager,
    ):
        sessions = [manager.session() for _ in range(6)]  # spread over the shards
        for i, session in enumerate(sessions):
            session.send(f"conversation {i}")
        twin = twin_of(manager)
        assert isinstance(twin.client.sync, redis.cluster.RedisCluster)

        def read() -> None:  # the sync cluster client, shared by threads
            for _ in range(10):
                for i, session in enumerate(sessions):
                    assert manager.history(session.id)[0].content == f"conversation {i}"
                    assert manager.info(session.id) is not None

        in_threads(read, 4)
        store = manager.engine.store
        assert isinstance(store, RedisStore)
        node = twin.client.sync.get_node_from_key(store._keys(sessions[0].id)[0])
        victim = cluster.by_port(int(node.port))
        victim.kill()
        # refused until a replica takes over the slots
        messages, refused = read_after_failover(lambda: manager.history(sessions[0].id))
        assert messages[0].content == "conversation 0" and len(messages) == 2
        assert refused, "no read was refused while the master was down"
        for i, session in enumerate(sessions):  # every shard reads on
            assert manager.history(session.id)[0].content == f"conversation {i}"
        victim.start()
        wait_until(lambda: info(victim.port, "replication")["role"] == "slave", "rejoined")
        sessions[0].send("after")
        assert [m.content for m in manager.history(sessions[0].id)][0::2] == [
            "conversation 0",
            "after",
        ]


@pytest.mark.parametrize("setup_name", ["single_tls", "sentinel_tls", "cluster_tls"])
def test_a_sync_read_over_tls(setup_name: str, request: pytest.FixtureRequest) -> None:
    setup = request.getfixturevalue(setup_name)
    url = setup.with_query(f"prefix=sync-tls-{uuid.uuid4().hex[:8]}:")
    with SessionManager(offline_agent_factory(), url) as manager:
        session = manager.session()
        session.send("over tls")
        sync = twin_of(manager).client.sync
        if isinstance(sync, redis.cluster.RedisCluster):
            pool = sync.get_default_node().redis_connection.connection_pool
        else:
            pool = sync.connection_pool
        assert issubclass(pool.connection_class, redis.SSLConnection), pool.connection_class
        assert session.history()[0].content == "over tls"
        asyncio.run(_drop(url))


async def _drop(url: str) -> None:
    store = RedisStore.from_url(url)
    assert isinstance(store, RedisStore)
    await store.drop()
    await store.close()
