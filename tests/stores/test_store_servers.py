"""Stores across processes and through failures: concurrent turns, kill -9 mid-write, outages.

The outage tests crash and restart *private* Redis, PostgreSQL and MariaDB instances on free
ports, configured durably (Redis with ``appendfsync always``), instead of the shared servers:
other test runs use those at the same time, and the shared Redis keeps nothing across a
restart, so "no committed turn is lost" could not hold there.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DURABLE_STORES, drop_store, make_store_url, servers_required

from agentsession import ConflictError, Message, StoreUnavailable
from agentsession.stores import Store, open_store

pytestmark = pytest.mark.slow


def pair(tag: str) -> list[Message]:
    return [Message("user", tag, name="user"), Message("assistant", f"re {tag}", name="bot")]


def assert_whole_turns(messages: list[Message]) -> list[str]:
    """Every user message is followed by its own reply; returns the turns' tags in order."""
    assert len(messages) % 2 == 0, "a half turn was recorded"
    tags = []
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert user.role == "user" and reply.role == "assistant"
        assert reply.content == f"re {user.content}"
        tags.append(user.content or "")
    return tags


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(process: subprocess.Popen[str], line: str, timeout: float = 60) -> None:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for got in process.stdout:
            lines.put(got)
            if got.strip() == line:
                return
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if got is None:
            break
        seen.append(got)
        if got.strip() == line:
            return
    process.kill()
    raise AssertionError(f"no {line!r} from the worker; it said: {''.join(seen)[-3000:]}")


def kill_9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


async def opened(url: str, body: Any) -> Any:
    store = open_store(url)
    try:
        return await body(store)
    finally:
        await store.close()


# -- concurrency ---------------------------------------------------------------------

CONCURRENT_WORKER = textwrap.dedent(
    """
    import asyncio, os, sys, threading
    from agentsession import Message
    from agentsession.stores import open_store

    url, sid, workers, turns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    THREADS = 2

    def pair(tag):
        return [Message("user", tag, name="user"), Message("assistant", f"re {tag}", name="bot")]

    async def worker(store, w):
        for i in range(turns):
            tag = f"{os.getpid()}-{w}-{i}"
            if w % 2:  # the fused protocol: lease and summary, then append and release
                while (begun := await store.begin_turn(sid, 30)) is None:
                    await asyncio.sleep(0.002)
                token, info = begun
                await store.finish_turn(sid, pair(tag), info.version, token)
                continue
            while (token := await store.acquire(sid, 30)) is None:
                await asyncio.sleep(0.002)
            try:
                info = await store.info(sid)
                await store.append(sid, pair(tag), info.version)
            finally:
                await store.release(sid, token)

    async def thread_main(t):
        store = open_store(url)  # a store belongs to one event loop
        try:
            await asyncio.gather(*(worker(store, w) for w in range(t, workers, THREADS)))
        finally:
            await store.close()

    errors = []
    def run(t):
        try:
            asyncio.run(thread_main(t))
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print("errors", errors, flush=True)
    sys.exit(1 if errors else 0)
    """
)


def test_fifty_store_level_turns_from_two_processes(durable_store_url: str) -> None:
    url = durable_store_url
    """2 processes x 2 threads x 5 tasks, 50 turns of lease -> read -> append -> release."""

    async def start(store: Store) -> None:
        await store.create("shared", {})
        await store.append("shared", pair("opening"), 0)

    asyncio.run(opened(url, start))
    workers = [spawn(CONCURRENT_WORKER, url, "shared", "5", "5") for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    conversation = asyncio.run(opened(url, lambda store: store.load("shared")))
    assert conversation is not None
    tags = assert_whole_turns(conversation.messages)
    assert tags[0] == "opening" and len(tags) == 51 and len(set(tags)) == 51
    assert conversation.version == 51
    pids = {w.pid for w in workers}
    assert {int(tag.split("-")[0]) for tag in tags[1:]} == pids


@pytest.mark.parametrize("kind", ["redis", "postgresql", "mariadb"])
def test_drop_removes_its_own_prefix_only(kind: str, tmp_path: Path) -> None:
    """``drop`` (test teardown) of ``p:`` must spare ``p:v2:``, whose keys start the same way."""
    base = make_store_url(kind, tmp_path)
    option = "prefix" if kind == "redis" else "table_prefix"
    head, _, tail = base.partition(f"{option}=")
    outer, inner = base, f"{head}{option}={tail}v2{tail[-1]}"  # x: and x:v2:

    async def scenario() -> None:
        first, second = open_store(outer), open_store(inner)
        try:
            for store in (first, second):
                await store.create("s1", {})
                await store.append("s1", pair("kept"), 0)
            await first.drop()  # type: ignore[attr-defined]
            assert (await second.load("s1")) is not None
            assert await second.list() != []
        finally:
            await first.close()
            await second.close()

    try:
        asyncio.run(scenario())
    finally:
        drop_store(kind, outer)
        drop_store(kind, inner)
    assert asyncio.run(opened(outer, lambda store: store.list())) == []
    drop_store(kind, outer)


# -- kill -9 ---------------------------------------------------------------------------

# Holds the lease, then dies (the parent kills it) inside the turn's write transaction,
# after the messages were written and before the commit. On PostgreSQL a turn sends its
# COMMIT together with its statement (one pipeline), so there is no such moment there: the
# test after this one kills a PostgreSQL turn while the server holds it.
HANG_BEFORE_COMMIT = textwrap.dedent(
    """
    import asyncio, sqlite3, sys, time
    from agentsession import Message
    from agentsession.stores import open_store

    url, sid = sys.argv[1], sys.argv[2]
    armed = False

    def hang():
        print("in-transaction", flush=True)
        time.sleep(120)

    if url.startswith("sqlite"):
        class Hanging(sqlite3.Connection):
            def commit(self):
                if armed and self.in_transaction:
                    hang()
                super().commit()
        connect = sqlite3.connect
        sqlite3.connect = lambda *a, **k: connect(*a, factory=Hanging, **k)
    store = open_store(url)
    if not url.startswith("sqlite"):
        from sqlalchemy import event
        event.listen(store.engine, "commit", lambda conn: armed and hang())

    async def main():
        global armed
        token = await store.acquire(sid, 3)
        info = await store.info(sid)
        turn = [Message("user", f"doomed {i}") for i in range(200)]
        armed = True
        await store.finish_turn(sid, turn, info.version, token)

    asyncio.run(main())
    """
)


# Redis has no transaction to hang in: a Lua script runs whole or not at all, and the
# write-loop test below kills Redis writers at random points instead.
@pytest.mark.parametrize(
    "durable_kind", [k for k in DURABLE_STORES if k not in ("redis", "postgresql")]
)
def test_kill_9_inside_the_write_transaction(durable_kind: str, durable_store_url: str) -> None:
    url = durable_store_url

    async def scenario(store: Store) -> None:
        await store.create("s1", {})
        await store.append("s1", pair("before"), 0)
        worker = spawn(HANG_BEFORE_COMMIT, url, "s1")
        try:
            await asyncio.to_thread(wait_for_line, worker, "in-transaction")
        finally:
            kill_9(worker)
        # the server (or SQLite's journal) rolled the turn back whole
        info = await store.info("s1")
        assert info is not None and info.version == 1 and info.message_count == 2
        conversation = await store.load("s1")
        assert conversation is not None
        assert assert_whole_turns(conversation.messages) == ["before"]
        # the dead worker's lease (3 s) blocks, then expires and is taken over
        assert await store.acquire("s1", 10) is None
        started = time.monotonic()
        while (token := await store.acquire("s1", 10)) is None:
            assert time.monotonic() - started < 15, "the dead worker's lease never expired"
            await asyncio.sleep(0.1)
        assert await store.finish_turn("s1", pair("after"), 1, token) == 2
        conversation = await store.load("s1")
        assert conversation is not None
        assert assert_whole_turns(conversation.messages) == ["before", "after"]

    asyncio.run(opened(url, scenario))


PIPELINED_TURN = textwrap.dedent(
    """
    import asyncio, sys
    from agentsession import Message
    from agentsession.stores import open_store

    url, sid = sys.argv[1], sys.argv[2]

    async def main():
        store = open_store(url)
        token, info = await store.begin_turn(sid, 3)
        turn = [Message(role, text) for i in range(100)
                for role, text in (("user", f"doomed {i}"), ("assistant", f"re doomed {i}"))]
        print("sending", flush=True)
        await store.finish_turn(sid, turn, info.version, token)
        print("acknowledged", flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("durable_kind", ["postgresql"])
def test_kill_9_while_a_pipelined_turn_waits_on_the_server(
    durable_kind: str, durable_store_url: str
) -> None:
    """The worker's turn (statement and COMMIT, sent together) waits on a row lock when the
    worker is killed: the server finishes it or drops it, whole, and the conversation goes on
    either way."""
    import sqlalchemy as sa

    url = durable_store_url

    async def scenario(store: Any) -> None:
        await store.create("s1", {})
        await store.append("s1", pair("before"), 0)
        c = store.conversations.c
        locker = sa.create_engine(store.engine.url)
        # pg_stat_activity is read once per transaction: the watcher polls in autocommit
        watching = locker.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            with locker.connect() as conn, watching as watcher:
                held = conn.begin()
                conn.execute(sa.select(c.version).where(c.session_id == "s1").with_for_update())
                worker = spawn(PIPELINED_TURN, url, "s1")
                try:
                    await asyncio.to_thread(wait_for_line, worker, "sending")
                    waiting = sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )
                    deadline = time.monotonic() + 30
                    while (pid := watcher.execute(waiting).scalar()) is None:
                        assert time.monotonic() < deadline, "the turn never reached the server"
                        await asyncio.sleep(0.02)
                finally:
                    kill_9(worker)
                held.rollback()  # the turn of a dead worker goes on
                deadline = time.monotonic() + 30
                gone = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
                while watcher.execute(gone, {"pid": pid}).scalar():
                    assert time.monotonic() < deadline, "the dead worker's backend stayed"
                    await asyncio.sleep(0.02)
        finally:
            locker.dispose()
        info = await store.info("s1")
        assert info is not None and info.version in (1, 2)
        conversation = await store.load("s1")
        assert conversation is not None
        landed = [f"doomed {i}" for i in range(100)] if info.version == 2 else []
        assert assert_whole_turns(conversation.messages) == ["before", *landed]
        print(f"\nthe dead worker's pipelined turn landed: {bool(landed)}")
        # the lease went with the turn, or expires (3 s) and is taken over
        started = time.monotonic()
        while (token := await store.acquire("s1", 10)) is None:
            assert not landed, "the landed turn left its lease behind"
            assert time.monotonic() - started < 15, "the dead worker's lease never expired"
            await asyncio.sleep(0.1)
        assert await store.finish_turn("s1", pair("after"), info.version, token)
        conversation = await store.load("s1")
        assert conversation is not None
        assert assert_whole_turns(conversation.messages) == ["before", *landed, "after"]

    asyncio.run(opened(url, scenario))


WRITE_LOOP = textwrap.dedent(
    """
    import asyncio, os, sys
    from agentsession import Message
    from agentsession.stores import open_store

    url, sid, size = sys.argv[1], sys.argv[2], int(sys.argv[3])

    async def main():
        store = open_store(url)
        n = 0
        while True:
            token = await store.acquire(sid, 1)
            if token is None:
                await asyncio.sleep(0.01)
                continue
            info = await store.info(sid)
            tag = f"{os.getpid()}-{n}"
            turn = [Message("user", f"{tag} {i}") for i in range(size - 1)]
            turn.append(Message("assistant", f"{tag} end"))
            await store.finish_turn(sid, turn, info.version, token)
            n += 1
            if n == 1:
                print("ready", flush=True)

    asyncio.run(main())
    """
)


def test_kill_9_in_a_loop_of_large_turns(durable_store_url: str) -> None:
    url = durable_store_url
    size = 400

    async def scenario(store: Store) -> None:
        await store.create("s1", {})
        for delay in (0.0, 0.03, 0.11, 0.23, 0.41):
            worker = spawn(WRITE_LOOP, url, "s1", str(size))
            try:
                await asyncio.to_thread(wait_for_line, worker, "ready")
                await asyncio.sleep(delay)
            finally:
                kill_9(worker)
        # take the lease first: it waits out the dead workers' leases (1 s), and by then a
        # COMMIT a worker sent just before its kill -9 has landed on the server
        deadline = time.monotonic() + 10
        while (token := await store.acquire("s1", 10)) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        conversation = await store.load("s1")
        info = await store.info("s1")
        assert conversation is not None and info is not None
        messages = conversation.messages
        assert len(messages) == info.message_count and len(messages) % size == 0
        assert conversation.version == len(messages) // size
        for start in range(0, len(messages), size):
            chunk = [m.content or "" for m in messages[start : start + size]]
            tag = chunk[-1].removesuffix(" end")
            assert chunk == [f"{tag} {i}" for i in range(size - 1)] + [f"{tag} end"]
        # the dead workers' lease was recovered above, and the conversation goes on
        await store.finish_turn("s1", pair("after"), conversation.version, token)

    asyncio.run(opened(url, scenario))


# -- outages ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(binary: str | None, what: str) -> str:
    if binary is None or not os.path.exists(binary):
        if servers_required():
            pytest.fail(f"{what} is not installed; the outage tests need it")
        pytest.skip(f"{what} is not installed")
    return binary


def wait_until(check: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


class PrivateServer:
    """A throwaway server on a free port that a test may crash and restart."""

    password = "s3cret-pw"
    url: str

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def crash(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None

    def cleanup(self) -> None:
        self.crash()

    def _spawn(self, args: list[str]) -> None:
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()


class PrivateRedis(PrivateServer):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.binary = need(shutil.which("redis-server"), "redis-server")
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        config = self.root / "redis.conf"
        config.write_text(
            f'port {self.port}\nbind 127.0.0.1\ndir {self.root}\nsave ""\n'
            f"appendonly yes\nappendfsync always\nrequirepass {self.password}\n"
            f"unixsocket {self.root}/redis.sock\nunixsocketperm 700\n"
        )
        self._spawn([self.binary, str(config)])
        import redis

        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
        try:
            wait_until(client.ping, "Redis answering")  # LOADING raises until the AOF is read
        finally:
            client.close()


class PrivatePostgres(PrivateServer):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        self.pg_ctl = need(found[-1] if found else shutil.which("pg_ctl"), "pg_ctl")
        self.initdb = need(str(Path(self.pg_ctl).with_name("initdb")), "initdb")
        self.data = root / "data"
        self.url = f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(root, "postgres")
        self._as_owner([self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust"])

    def _as_owner(self, args: list[str]) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, *args: str) -> None:
        self._as_owner([self.pg_ctl, "-D", str(self.data), *args])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._pg_ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def crash(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-m", "immediate", "-w", "stop")  # no checkpoint: WAL recovery


class PrivateMariaDB(PrivateServer):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.binary = need(shutil.which("mariadbd"), "mariadbd")
        install = need(shutil.which("mariadb-install-db"), "mariadb-install-db")
        self.data = root / "data"
        self.url = f"mysql://root:{self.password}@127.0.0.1:{self.port}/test"
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "")
        self.config = root / "my.cnf"
        # skip-grant-tables: any password is accepted, so the URL can carry one
        self.config.write_text(
            f"[mariadbd]\ndatadir={self.data}\nuser={user}\nport={self.port}\n"
            f"bind-address=127.0.0.1\nsocket={root}/sock\nskip-grant-tables\n"
            "skip-name-resolve\ninnodb-buffer-pool-size=16M\n"
        )
        subprocess.run(
            [install, f"--defaults-file={self.config}", "--skip-test-db"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.created = False

    def start(self) -> None:
        self._spawn([self.binary, f"--defaults-file={self.config}"])
        import pymysql  # type: ignore[import-untyped]

        def connect() -> bool:
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1
            ).close()
            return True

        wait_until(connect, "MariaDB answering")
        if not self.created:
            db = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
            db.cursor().execute("CREATE DATABASE test")
            db.close()
            self.created = True


SERVERS: dict[str, type[PrivateServer]] = {
    "redis": PrivateRedis,
    "postgresql": PrivatePostgres,
    "mariadb": PrivateMariaDB,
}


@pytest.fixture(params=list(SERVERS))
def private_server(request: pytest.FixtureRequest) -> Iterator[PrivateServer]:
    # not tmp_path: PostgreSQL's owner must be able to reach the directory
    root = Path(tempfile.mkdtemp(prefix="agentsession-server-"))
    server: PrivateServer | None = None
    try:
        server = SERVERS[request.param](root)
        server.start()
        yield server
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_outage_then_recovery(private_server: PrivateServer) -> None:
    """The server crashes mid-run: errors say StoreUnavailable, then the same store recovers."""
    server = private_server
    acked: list[str] = []
    unavailable: list[StoreUnavailable] = []

    async def one_turn(store: Store, tag: str) -> None:
        info = await store.info("s1")
        assert info is not None
        await store.append("s1", pair(tag), info.version)
        acked.append(tag)

    async def write_forever(store: Store, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await one_turn(store, f"w{n}")
            except StoreUnavailable as exc:
                unavailable.append(exc)
                await asyncio.sleep(0.05)
            except ConflictError:
                pass  # an append cut off by the crash may have landed: its outcome was unknown

    async def scenario(store: Store) -> None:
        await store.create("s1", {})
        for n in range(3):
            await one_turn(store, f"before {n}")
        stop = asyncio.Event()
        writer = asyncio.create_task(write_forever(store, stop))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.crash)
        # while it is down, every operation says so, quickly, and names no password
        for operation in (
            lambda: store.info("s1"),
            lambda: store.load("s1"),
            lambda: store.append("s1", pair("down"), 999),
            lambda: store.acquire("s1", 5),
            lambda: store.begin_turn("s1", 5),
            store.ping,
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await operation()
            assert time.monotonic() - started < 10
            assert str(server.port) in str(caught.value)
            assert server.password not in str(caught.value)
        # the writer's own calls retry for about a second before they give up: stay down
        # until one of them has
        deadline = time.monotonic() + 30
        while not unavailable:
            assert time.monotonic() < deadline, "the writer never saw the outage"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(server.start)
        # the same store object reconnects by itself
        recovered = len(acked)
        deadline = time.monotonic() + 60
        while len(acked) < recovered + 5:
            assert time.monotonic() < deadline, f"no turn after the restart: {unavailable[-1:]}"
            await asyncio.sleep(0.05)
        stop.set()
        await writer
        assert unavailable, "the writer never saw the outage"
        conversation = await store.load("s1")
        assert conversation is not None
        stored = assert_whole_turns(conversation.messages)
        missing = [tag for tag in acked if tag not in stored]
        assert not missing, f"committed turns lost in the crash: {missing}"
        assert stored[:3] == ["before 0", "before 1", "before 2"]

    asyncio.run(opened(server.url, scenario))


def test_redis_over_a_unix_socket() -> None:
    root = Path(tempfile.mkdtemp(prefix="agentsession-server-"))
    server = PrivateRedis(root)
    try:
        server.start()
        url = f"unix://{root}/redis.sock?db=0&password={server.password}&prefix=unix:"

        async def round_trip(store: Store) -> None:
            await store.create("s1", {})
            await store.append("s1", pair("over the socket"), 0)
            conversation = await store.load("s1")
            assert conversation is not None
            assert assert_whole_turns(conversation.messages) == ["over the socket"]
            server.crash()
            with pytest.raises(StoreUnavailable) as caught:
                await store.info("s1")
            assert "redis.sock" in str(caught.value)
            assert server.password not in str(caught.value)

        asyncio.run(opened(url, round_trip))
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
