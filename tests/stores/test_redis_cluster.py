"""The Redis store on Redis Cluster and on Sentinel, against real servers started here.

A 3-master cluster with one replica each, and a master with one replica watched by three
sentinels, all on free loopback ports in temporary directories (never the shared Redis).
The store contract suite runs on both (test_redis_tls.py runs it again over TLS); then a
master is killed mid-run: requests during the failover
raise ``StoreUnavailable`` (503 for the web adapters) and later succeed, and every turn that
was acknowledged is in the history afterwards (``WAIT``: acknowledged means a replica has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_contract
import test_journal
import test_turn_protocol
from conftest import servers_required
from servers import free_port

from agentsession import AsyncSessionManager, Message, SessionBusy, StoreUnavailable
from agentsession.offline import offline_agent_factory
from agentsession.stores import Store, open_store
from agentsession.stores.redis import NotReplicated, RedisStore, _shard_tags

pytestmark = [pytest.mark.server, pytest.mark.slow]

NODE_TIMEOUT_MS = 1000


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        if servers_required():
            pytest.fail("redis-server is not installed; the cluster and Sentinel tests need it")
        pytest.skip("redis-server is not installed")
    return found


def wait_until(check: Callable[[], Any], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


class Certs:
    """A certificate authority and a certificate it signed for 127.0.0.1, made with
    ``cryptography`` in ``folder``: what the TLS nodes serve, and what clients trust."""

    def __init__(self, folder: Path) -> None:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=7))

        def name(common: str) -> Any:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

        def made(subject: str, key: Any, issuer: Any, signer: Any, ca: bool) -> Any:
            builder = (
                x509.CertificateBuilder()
                .subject_name(name(subject))
                .issuer_name(issuer)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(valid[0])
                .not_valid_after(valid[1])
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            if not ca:
                names = [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]
                builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            return builder.sign(signer, hashes.SHA256())

        ca_key, key = (
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP256R1()),
        )
        ca = made("agentsession test CA", ca_key, name("agentsession test CA"), ca_key, True)
        cert = made("127.0.0.1", key, ca.subject, ca_key, False)
        self.ca, self.cert, self.key = folder / "ca.crt", folder / "node.crt", folder / "node.key"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )

    def server_config(self, port: int) -> str:
        return (
            f"port 0\ntls-port {port}\ntls-cert-file {self.cert}\ntls-key-file {self.key}\n"
            f"tls-ca-cert-file {self.ca}\ntls-auth-clients no\ntls-replication yes\n"
            "tls-cluster yes\n"
        )

    @property
    def query(self) -> str:
        """What a store URL adds to trust this CA."""
        return f"ssl_ca_certs={self.ca}"


_TLS_PORTS: dict[int, Certs] = {}  # the nodes that speak TLS only, and their certificates


def connect(port: int, **options: Any) -> Any:
    """A sync redis-py client of the node on ``port``, over TLS if it speaks TLS."""
    import redis

    certs = _TLS_PORTS.get(port)
    if certs is not None:
        options.update(ssl=True, ssl_ca_certs=str(certs.ca))
    return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, **options)


def info(port: int, section: str) -> dict[str, str]:
    client = connect(port)
    try:
        raw = client.execute_command("INFO", section)
    finally:
        client.close()
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    if isinstance(raw, dict):  # redis-py parses INFO itself
        return {str(k): str(v) for k, v in raw.items()}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class Node:
    """One redis-server (or sentinel) process in its own directory and process group."""

    def __init__(
        self, root: Path, config: str, *, sentinel: bool = False, tls: Certs | None = None
    ) -> None:
        self.port = free_port()
        self.dir = root / str(self.port)
        self.dir.mkdir()
        self.config = self.dir / "redis.conf"
        listen = f"port {self.port}\n" if tls is None else tls.server_config(self.port)
        if tls is not None:
            _TLS_PORTS[self.port] = tls
        self.config.write_text(
            f'{listen}bind 127.0.0.1\ndir {self.dir}\nsave ""\n'
            "repl-diskless-sync-delay 0\nenable-debug-command local\n"
            f"logfile {self.dir / 'log'}\n" + config.format(port=self.port)
        )
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [redis_server(), str(self.config)] + (["--sentinel"] if self.sentinel else [])
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@contextlib.contextmanager
def nodes_in(prefix: str) -> Iterator[tuple[Path, list[Node]]]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    made: list[Node] = []
    try:
        yield root, made
    finally:
        for node in made:
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


class Cluster:
    def __init__(self, nodes: list[Node], tls: Certs | None = None) -> None:
        self.nodes, self.tls = nodes, tls

    @property
    def url(self) -> str:
        """The store URL, with no query: add ``?...`` with ``with_query``."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        return f"{'rediss' if self.tls else 'redis'}+cluster://{hosts}/"

    def with_query(self, query: str) -> str:
        return with_query(self.url, query, self.tls)

    def by_port(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def healthy(self) -> bool:
        """Every node says ok, and 3 masters each have a replica online."""
        up = [node for node in self.nodes if node.process is not None]
        if any(info(node.port, "cluster").get("cluster_enabled") != "1" for node in up):
            return False

        for node in up:
            client = connect(node.port)
            try:
                state = client.execute_command("CLUSTER", "INFO")
            finally:
                client.close()
            text = state.decode() if isinstance(state, bytes) else str(state)
            if "cluster_state:ok" not in text:
                return False
        roles = {node.port: info(node.port, "replication") for node in up}
        masters = [r for r in roles.values() if r["role"] == "master"]
        replicas = [r for r in roles.values() if r["role"] == "slave"]
        return (
            len(masters) == 3
            and all(int(r["connected_slaves"]) >= 1 for r in masters)
            and all(r["master_link_status"] == "up" for r in replicas)
        )


CLUSTER_CONFIG = (
    "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-port {cluster_port}\n"
    f"cluster-node-timeout {NODE_TIMEOUT_MS}\ncluster-replica-validity-factor 0\n"
    "appendonly no\n"
)


def with_query(url: str, query: str, tls: Certs | None) -> str:
    """``url`` with ``query`` (and, for TLS nodes, the CA to trust)."""
    parts = [part for part in (query, tls.query if tls else "") if part]
    return f"{url}?{'&'.join(parts)}" if parts else url


@contextlib.contextmanager
def running_cluster(tls: bool = False) -> Iterator[Cluster]:
    with nodes_in("agentsession-cluster-") as (root, made):
        certs = Certs(root) if tls else None
        for _ in range(6):
            config = CLUSTER_CONFIG.replace("{cluster_port}", str(free_port()))
            node = Node(root, config, tls=certs)
            made.append(node)
            node.start()
        for node in made:
            wait_until(lambda node=node: info(node.port, "server"), "a cluster node answering")
        secure = ["--tls", "--cacert", str(certs.ca)] if certs else []
        create = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", *secure, "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in made),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert create.returncode == 0, create.stdout + create.stderr
        cluster = Cluster(made, certs)
        wait_until(cluster.healthy, "the cluster's state ok with a replica per master", 60)
        yield cluster


class SentinelSetup:
    service = "agentsession-test"

    def __init__(
        self, master: Node, replica: Node, sentinels: list[Node], tls: Certs | None = None
    ) -> None:
        self.master, self.replica, self.sentinels = master, replica, sentinels
        self.tls = tls

    @property
    def url(self) -> str:
        """The store URL, with no query: add ``?...`` with ``with_query``."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"{'rediss' if self.tls else 'redis'}+sentinel://{hosts}/{self.service}/0"

    def with_query(self, query: str) -> str:
        return with_query(self.url, query, self.tls)

    def master_port(self) -> int:
        client = connect(self.sentinels[0].port)
        try:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        finally:
            client.close()
        return int(port)

    def node(self, port: int) -> Node:
        return self.master if self.master.port == port else self.replica

    def healthy(self) -> bool:
        """The master has its replica, and every sentinel knows both others and the replica."""
        master = self.master_port()
        if int(info(master, "replication")["connected_slaves"]) < 1:
            return False
        for node in (self.master, self.replica):
            state = info(node.port, "replication")
            if state["role"] == "slave" and state["master_link_status"] != "up":
                return False
        for sentinel in self.sentinels:
            client = connect(sentinel.port, decode_responses=True)
            try:
                state = client.sentinel_master(self.service)
                replicas = client.sentinel_slaves(self.service)
            finally:
                client.close()
            if int(state["num-other-sentinels"]) < 2 or state["port"] != master:
                return False
            if not [r for r in replicas if not (r["is_sdown"] or r["is_odown"])]:
                return False
        return True


@contextlib.contextmanager
def running_sentinel(tls: bool = False) -> Iterator[SentinelSetup]:
    with nodes_in("agentsession-sentinel-") as (root, made):
        certs = Certs(root) if tls else None
        master = Node(root, "appendonly no\n", tls=certs)
        made.append(master)
        replica = Node(root, f"appendonly no\nreplicaof 127.0.0.1 {master.port}\n", tls=certs)
        made.append(replica)
        for node in (master, replica):
            node.start()
        sentinels = []
        for _ in range(3):
            sentinel = Node(
                root,
                f"sentinel monitor {SentinelSetup.service} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {SentinelSetup.service} 1000\n"
                f"sentinel failover-timeout {SentinelSetup.service} 5000\n",
                sentinel=True,
                tls=certs,
            )
            made.append(sentinel)
            sentinels.append(sentinel)
            sentinel.start()
        setup = SentinelSetup(master, replica, sentinels, certs)
        wait_until(setup.healthy, "the sentinels watching a master and its replica", 60)
        yield setup


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    redis_server()
    with running_cluster() as made:
        yield made


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelSetup]:
    redis_server()
    with running_sentinel() as made:
        yield made


# -- the contract suite, on both ------------------------------------------------------------

_SETUPS = {"redis-cluster": "cluster", "redis-sentinel": "sentinel"}


@pytest.fixture(params=list(_SETUPS))
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest) -> Iterator[str]:
    setup = request.getfixturevalue(_SETUPS[store_kind])
    yield from prefixed_url(setup)


def prefixed_url(setup: Any) -> Iterator[str]:
    """A store URL of ``setup`` under a prefix of its own, whose keys are dropped after."""
    url = setup.with_query(f"prefix=agentsession-test-{uuid.uuid4().hex[:10]}:")
    yield url

    async def drop() -> None:
        store: Any = open_store(url)
        try:
            await store.drop()
        finally:
            await store.close()

    asyncio.run(drop())


_NOT_HERE = {
    "test_a_missing_driver_names_its_extra",  # no store
    "test_an_encrypted_journal_holds_no_plaintext",  # a store of its own
}


def _for_other_stores(test: Any) -> bool:
    """Is ``test`` parametrized for named store kinds only (PostgreSQL's pipelines), none a
    cluster?"""
    return any(
        mark.name == "parametrize" and mark.args[0] == "store_kind"
        for mark in getattr(test, "pytestmark", [])
    )


for _module in (test_contract, test_turn_protocol, test_journal):
    for _name in dir(_module):
        _test = getattr(_module, _name)
        if _name.startswith("test_") and _name not in _NOT_HERE and not _for_other_stores(_test):
            globals()[_name] = _test


# -- what a cluster adds -----------------------------------------------------------------


def pair(tag: str) -> list[Message]:
    return [Message("user", tag, name="user"), Message("assistant", f"re {tag}", name="bot")]


async def opened(url: str, body: Any) -> Any:
    store = open_store(url)
    try:
        return await body(store)
    finally:
        await store.close()


def test_shard_tags_are_fixed_and_spread() -> None:
    """The tags decide where stored conversations are: they may never change."""
    from redis.crc import key_slot

    tags = _shard_tags(64)
    assert tags[:5] == ("0.178", "1.2", "2.303", "3.63", "4.40")
    slots = [key_slot(tag.encode()) for tag in tags]
    assert [slot * 64 // 16384 for slot in slots] == list(range(64))


def test_list_and_gc_see_every_shard_once(store_url: str, store_kind: str) -> None:
    ids = [f"s{i}" for i in range(40)]

    async def body(store: Store) -> None:
        for sid in ids:
            await store.create(sid, {"n": sid})
        assert isinstance(store, RedisStore)
        if store_kind == "redis-cluster":  # the ids really are spread over all masters
            masters = {store.client.get_node_from_key(store._keys(s)[0]).name for s in ids}
            assert len(masters) == 3
        listed = [info.session_id for info in await store.list(limit=1000)]
        assert sorted(listed) == sorted(ids) and len(listed) == len(set(listed))
        assert listed == ids[::-1]  # newest first, across shards
        pages = [await store.list(limit=7, offset=start) for start in range(0, 40, 7)]
        assert [info.session_id for page in pages for info in page] == ids[::-1]
        await asyncio.sleep(1.1)
        await store.append("s3", pair("keeps it"), 0)
        # a stale index entry (its conversation gone by other means) is tolerated
        await store.client.delete(*store._keys("s5"))
        assert "s5" not in {info.session_id for info in await store.list(limit=1000)}
        assert await store.gc(idle_seconds=1.0) == 39  # the 38 idle ones, and s5's entry
        assert [info.session_id for info in await store.list()] == ["s3"]

    asyncio.run(opened(store_url, body))


def test_rename_across_slots_keeps_everything(store_url: str) -> None:
    async def body(store: Store) -> None:
        assert isinstance(store, RedisStore)
        await store.create("old", {"k": "v"})
        version = await store.append("old", pair("one"), 0)
        for i in range(1500):  # more than one chunk of a Lua unpack
            version = await store.append("old", [Message("user", f"m{i}")], version)
        target = next(f"new{i}" for i in range(100) if store._tag(f"new{i}") != store._tag("old"))
        if store.cluster:
            assert store._shard_tag(target) != store._shard_tag("old")
        await store.rename("old", target)
        assert await store.load("old") is None
        moved = await store.load(target)
        assert moved is not None and moved.metadata == {"k": "v"}
        assert len(moved.messages) == 1502 and moved.version == version + 1
        assert [info.session_id for info in await store.list()] == [target]

    asyncio.run(opened(store_url, body))


def test_rename_that_races_a_write_loses_nothing(cluster: Cluster) -> None:
    """A write landing between the copy and the delete: the rename starts again."""
    url = cluster.with_query(f"prefix=race-{uuid.uuid4().hex[:8]}:")

    async def body(store: Store) -> None:
        assert isinstance(store, RedisStore)
        await store.create("a", {})
        await store.append("a", pair("first"), 0)
        target = next(
            f"b{i}" for i in range(100) if store._shard_tag(f"b{i}") != store._shard_tag("a")
        )
        real = store._write
        raced = []

        async def restore_then_write(script: Any, keys: Any, args: Any) -> Any:
            result = await real(script, keys, args)
            if script is store._restore and not raced:  # between the copy and the delete
                raced.append(await store.append("a", pair("raced"), 1))
            return result

        store._write = restore_then_write  # type: ignore[method-assign]
        await store.rename("a", target)
        assert raced == [2]
        moved = await store.load(target)
        assert moved is not None
        assert [m.content for m in moved.messages] == ["first", "re first", "raced", "re raced"]
        assert await store.load("a") is None
        assert [info.session_id for info in await store.list()] == [target]
        await store.drop()  # type: ignore[attr-defined]

    asyncio.run(opened(url, body))


def test_urls_and_errors_name_no_password() -> None:
    from agentsession import ConfigurationError

    with pytest.raises(ConfigurationError, match="database 0 only"):
        open_store("redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001/3")
    with pytest.raises(ConfigurationError, match="redis\\+sentinel://"):
        open_store("redis+sentinal://:pw@127.0.0.1:26379/mymaster")
    with pytest.raises(ConfigurationError, match="SERVICE"):
        open_store("redis+sentinel://127.0.0.1:26379/")
    with pytest.raises(ConfigurationError, match="prefix"):
        open_store("redis+cluster://127.0.0.1:7000/?prefix=a{b}:")
    with pytest.raises(ConfigurationError, match="wait_replicas"):
        open_store("redis+cluster://127.0.0.1:7000/?wait_replicas=some")
    store = open_store("redis+cluster://:s3cret@127.0.0.1:1,127.0.0.1:2/?prefix=p:")
    assert isinstance(store, RedisStore) and store.wait_replicas == 1 and store.cluster
    assert open_store("redis://127.0.0.1/0").wait_replicas == 0  # type: ignore[attr-defined]

    async def down() -> None:
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await store.info("s1")
            assert time.monotonic() - started < 10
            assert "s3cret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
        finally:
            await store.close()

    asyncio.run(down())


# -- failover -------------------------------------------------------------------------------


TURN_DEADLINE = 30.0  # seconds: far past the socket timeout and the cluster's retries


class TurnLoop:
    """Turns on one conversation through the store's turn protocol, until told to stop."""

    def __init__(self, url: str, session_id: str) -> None:
        self.url, self.session_id = url, session_id
        self.acked: list[str] = []
        self.unavailable: list[StoreUnavailable] = []
        self.other: list[BaseException] = []
        self.stop = asyncio.Event()
        self.slowest = 0.0  # seconds, the longest attempt at a turn

    async def turn(self, store: Store, tag: str) -> None:
        begun = await store.begin_turn(self.session_id, 2)
        if begun is None:  # a lease left by a turn cut off by the outage: it expires
            await asyncio.sleep(0.1)
            return
        token, info = begun
        if info is None:
            await store.create(self.session_id, {})
            version = 0
        else:
            version = info.version
        await store.finish_turn(self.session_id, pair(tag), version, token)
        self.acked.append(tag)

    async def run(self, store: Store) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                # a deadline per attempt: a call that never returns fails the test with
                # what it was doing, instead of hanging the run
                await asyncio.wait_for(self.turn(store, f"t{n}"), TURN_DEADLINE)
            except TimeoutError:
                self.other.append(AssertionError(f"turn t{n} hung for {TURN_DEADLINE} s"))
                traceback.print_exc()
            except StoreUnavailable as exc:
                self.unavailable.append(exc)
                await asyncio.sleep(0.1)
            except Exception as exc:  # anything else is a failure of the test
                self.other.append(exc)
                traceback.print_exc()
                await asyncio.sleep(0.1)
            finally:
                self.slowest = max(self.slowest, time.monotonic() - started)

    async def until(self, more: int, seconds: float) -> None:
        goal = len(self.acked) + more
        deadline = time.monotonic() + seconds
        while len(self.acked) < goal:
            assert time.monotonic() < deadline, (
                f"no {more} turns within {seconds} s: {self.unavailable[-1:]} {self.other[-1:]}"
            )
            await asyncio.sleep(0.05)


class ManagerLoop(TurnLoop):
    """Turns through ``AsyncSessionManager.send``, as a web request runs them."""

    async def turn(self, store: Store, tag: str) -> None:
        try:
            await self.manager.send(self.session_id, tag)
        except SessionBusy:  # the lease of a turn the outage cut off: it expires
            await asyncio.sleep(0.1)
            return
        self.acked.append(tag)

    async def run(self, store: Store) -> None:
        self.manager = AsyncSessionManager(offline_agent_factory(), store, lease_ttl=2)
        await super().run(store)

    async def check(self) -> None:
        history = await self.manager.history(self.session_id)
        users = [m.content for m in history if m.role == "user"]
        missing = [tag for tag in self.acked if tag not in users]
        assert not missing, f"acknowledged turns lost in the failover: {missing}"
        assert not self.other, self.other
        assert self.unavailable, "the manager's requests never saw the failover"
        assert self.slowest < 10


async def refused_for_want_of_a_replica(loop: TurnLoop, seconds: float = 20) -> None:
    """Wait until a turn is refused with :class:`NotReplicated`, then a little longer."""
    deadline = time.monotonic() + seconds
    while not any(isinstance(exc, NotReplicated) for exc in loop.unavailable):
        assert time.monotonic() < deadline, (
            f"no turn refused as unreplicated in {seconds} s: "
            f"{loop.unavailable[-3:]} {loop.other[-3:]}"
        )
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # and the turns after it are refused too


def assert_kept(loop: TurnLoop, conversation: Any) -> None:
    assert conversation is not None
    messages = conversation.messages
    assert len(messages) % 2 == 0, "a half turn was recorded"
    stored = [m.content for m in messages[::2]]
    assert [m.content for m in messages[1::2]] == [f"re {tag}" for tag in stored]
    kinds = sorted({str(exc).split(":")[-1].strip()[:60] for exc in loop.unavailable})
    print(f"{len(loop.acked)} turns acknowledged, {len(loop.unavailable)} refused: {kinds}")
    print(f"slowest attempt {loop.slowest:.2f} s")
    assert loop.slowest < 10, "a request hung through the failover"
    missing = [tag for tag in loop.acked if tag not in stored]
    assert not missing, f"acknowledged turns lost in the failover: {missing}"
    assert not loop.other, loop.other


def test_cluster_master_failover_loses_no_acknowledged_turn() -> None:
    redis_server()
    with running_cluster() as cluster:
        url = cluster.with_query("prefix=failover:")
        loop = TurnLoop(url, "s1")

        async def scenario(store: Store) -> None:
            assert isinstance(store, RedisStore)
            # and requests through the manager, on a conversation of the same shard
            tag = store._shard_tag("s1")
            same = next(f"m{i}" for i in range(9999) if store._shard_tag(f"m{i}") == tag)
            via_manager = ManagerLoop(url, same)
            runner = asyncio.create_task(loop.run(store))
            manager_runner = asyncio.create_task(via_manager.run(store))
            await loop.until(20, 30)
            await via_manager.until(5, 30)
            await store.client.initialize()
            node = store.client.get_node_from_key(store._keys("s1")[0])
            victim = cluster.by_port(int(node.port))
            heir = next(
                other
                for other in cluster.nodes
                if info(other.port, "replication").get("master_port") == str(victim.port)
            )
            await asyncio.to_thread(victim.kill)  # kill -9 the conversation's master
            started = time.monotonic()
            while not loop.unavailable:
                assert time.monotonic() - started < 20, "the outage was never seen"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            acked_while_down = len(loop.acked)
            # its replica takes over; with no replica of its own yet, a write cannot be
            # confirmed (WAIT 1): 503s, until the old master is back, as a replica
            await asyncio.to_thread(
                wait_until, lambda: info(heir.port, "replication")["role"] == "master", "failover"
            )
            # past the 2 s lease of a turn the kill cut off, and the client's view of the
            # new topology, turns reach the heir and are refused: no replica confirms them
            await refused_for_want_of_a_replica(loop)
            assert len(loop.acked) == acked_while_down, "acknowledged with no replica"
            victim.start()
            await loop.until(20, 60)
            await via_manager.until(5, 60)
            loop.stop.set()
            via_manager.stop.set()
            await runner
            await manager_runner
            assert_kept(loop, await store.load("s1"))
            await via_manager.check()
            assert info(victim.port, "replication")["role"] == "slave"

        asyncio.run(opened(url, scenario))


def test_sentinel_failover_loses_no_acknowledged_turn() -> None:
    redis_server()
    with running_sentinel() as setup:
        url = setup.with_query("prefix=failover:")
        loop = TurnLoop(url, "s1")

        async def scenario(store: Store) -> None:
            runner = asyncio.create_task(loop.run(store))
            await loop.until(20, 30)
            first = setup.master_port()
            victim = setup.node(first)
            await asyncio.to_thread(victim.kill)
            started = time.monotonic()
            while not loop.unavailable:
                assert time.monotonic() - started < 20, "the outage was never seen"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            acked_while_down = len(loop.acked)
            await asyncio.to_thread(
                wait_until, lambda: setup.master_port() != first, "the sentinels' failover"
            )
            # the new master has no replica yet: nothing is confirmed
            await refused_for_want_of_a_replica(loop)
            assert len(loop.acked) == acked_while_down, "acknowledged with no replica"
            victim.start()  # the sentinels turn it into the new master's replica
            await loop.until(20, 60)
            loop.stop.set()
            await runner
            assert_kept(loop, await store.load("s1"))
            assert setup.master_port() != first

        asyncio.run(opened(url, scenario))


def test_a_write_no_replica_confirms_is_not_acknowledged(cluster: Cluster) -> None:
    """``WAIT``: while the replica cannot take the write, the write raises (503) instead of
    being acknowledged; it did reach the master, so the retry is fenced by its version."""
    import redis

    url = cluster.with_query(f"prefix=wait-{uuid.uuid4().hex[:8]}:&wait_timeout=0.3")

    async def body(store: Store) -> None:
        assert isinstance(store, RedisStore)
        await store.create("s1", {})
        await store.client.initialize()
        master = store.client.get_node_from_key(store._keys("s1")[0])
        replica = next(
            node
            for node in cluster.nodes
            if info(node.port, "replication").get("master_port") == str(master.port)
        )
        client = redis.Redis(port=replica.port)
        blocked = asyncio.create_task(
            asyncio.to_thread(client.execute_command, "DEBUG", "SLEEP", 1.5)
        )
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="0 of 1 replicas confirmed"):
            await store.append("s1", pair("unconfirmed"), 0)
        assert time.monotonic() - started < 1.2
        await blocked
        client.close()
        conversation = await store.load("s1")  # it did reach the master
        assert conversation is not None and conversation.version == 1
        assert await store.append("s1", pair("confirmed"), 1) == 2
        await store.drop()  # type: ignore[attr-defined]

    asyncio.run(opened(url, body))
