"""The Redis store over TLS only, against real servers started here: a single node
(``rediss://``), a 3-master Cluster with a replica each (``rediss+cluster://``; the cluster bus
and replication on TLS too) and a master with a replica watched by three sentinels
(``rediss+sentinel://``; the sentinels on TLS too), with certificates made here. The store
contract suites run on each; plaintext and untrusted clients are refused.

A module of its own, after test_redis_cluster.py: its servers are not running while that
module's failover tests time a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
import test_contract
import test_journal
import test_turn_protocol
from test_redis_cluster import (
    _NOT_HERE,
    Certs,
    Cluster,
    Node,
    SentinelSetup,
    _for_other_stores,
    info,
    nodes_in,
    prefixed_url,
    redis_server,
    running_cluster,
    running_sentinel,
    test_list_and_gc_see_every_shard_once,
    test_rename_across_slots_keeps_everything,
    wait_until,
    with_query,
)

from agentsession import StoreUnavailable
from agentsession.stores import open_store

pytestmark = [pytest.mark.server, pytest.mark.slow]


class SingleNode:
    """One TLS-only node: ``rediss://``."""

    def __init__(self, node: Node, tls: Certs) -> None:
        self.node, self.tls = node, tls

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.node.port}/0"

    def with_query(self, query: str) -> str:
        return with_query(self.url, query, self.tls)


@pytest.fixture(scope="module")
def single_tls() -> Iterator[SingleNode]:
    redis_server()
    with nodes_in("agentsession-tls-") as (root, made):
        certs = Certs(root)
        node = Node(root, "appendonly no\n", tls=certs)
        made.append(node)
        node.start()
        wait_until(lambda: info(node.port, "server"), "a TLS node answering")
        yield SingleNode(node, certs)


@pytest.fixture(scope="module")
def cluster_tls() -> Iterator[Cluster]:
    redis_server()
    with running_cluster(tls=True) as made:
        yield made


@pytest.fixture(scope="module")
def sentinel_tls() -> Iterator[SentinelSetup]:
    redis_server()
    with running_sentinel(tls=True) as made:
        yield made


_SETUPS = {
    "redis-cluster-tls": "cluster_tls",
    "redis-sentinel-tls": "sentinel_tls",
    "redis-tls": "single_tls",
}


@pytest.fixture(params=list(_SETUPS))
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from prefixed_url(request.getfixturevalue(_SETUPS[store_kind]))


for _module in (test_contract, test_turn_protocol, test_journal):
    for _name in dir(_module):
        _test = getattr(_module, _name)
        if _name.startswith("test_") and _name not in _NOT_HERE and not _for_other_stores(_test):
            globals()[_name] = _test
__all__ = ["test_list_and_gc_see_every_shard_once", "test_rename_across_slots_keeps_everything"]


@pytest.mark.parametrize("setup_name", ["single_tls", "cluster_tls", "sentinel_tls"])
def test_tls_nodes_refuse_plaintext_and_an_untrusted_certificate(
    setup_name: str, request: pytest.FixtureRequest
) -> None:
    """The TLS setups above really are TLS only: the same hosts without TLS, or with TLS but
    without trusting their CA, get ``StoreUnavailable`` (quickly), never a working store."""
    setup = request.getfixturevalue(setup_name)
    plain = setup.url.replace("rediss", "redis", 1)
    untrusted = setup.url  # TLS, but the system's CAs, which never signed these certificates

    async def refused(url: str) -> str:
        store = open_store(f"{url}?prefix=refused:")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await store.info("s1")
            assert time.monotonic() - started < 30
            return str(caught.value)
        finally:
            with contextlib.suppress(Exception):
                await store.close()

    assert asyncio.run(refused(plain))
    why = asyncio.run(refused(untrusted)).lower()
    # redis-py before 6 sums up the sentinels' failures as text that has lost the TLS error
    import redis

    if setup_name != "sentinel_tls" or int(redis.__version__.split(".")[0]) >= 6:
        assert "certificate" in why
