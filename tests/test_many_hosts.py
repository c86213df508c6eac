"""Several app hosts, one store: each host is a network namespace of its own with a real uvicorn.

The test makes a bridge and one namespace per host (``ip netns``, veth), so the hosts share
nothing but the network: a private Redis, or a private PgBouncer in front of the real
PostgreSQL, listens on the bridge. Fifty concurrent turns on one conversation, spread over the
hosts, must each be recorded exactly once, in order; a host killed in the middle of a turn
loses nothing that was acknowledged, and the conversation goes on from the other hosts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import servers_required
from servers import REPO, find_pgbouncer, free_port_on, pgbouncer

from agentsession import SessionManager
from agentsession.offline import offline_agent_factory, user_messages_seen

pytestmark = [pytest.mark.server, pytest.mark.slow]
HOSTS = 3
SECRET = "a-many-hosts-secret-key-of-32-bytes-or-more"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _unavailable(why: str) -> None:
    if servers_required():
        pytest.fail(why)
    pytest.skip(why)


@contextmanager
def network() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A bridge at 10.203.N.1 and HOSTS namespaces at 10.203.N.11…: (bridge ip, [(ns, ip)])."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        _unavailable("network namespaces need root and iproute2")
    tag = secrets.token_hex(3)
    subnet = 10 + int(tag, 16) % 240
    bridge, gateway = f"asb{tag}", f"10.203.{subnet}.1"
    hosts = [(f"as-{tag}-{i}", f"10.203.{subnet}.{11 + i}") for i in range(HOSTS)]
    made: list[str] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for index, (namespace, address) in enumerate(hosts):
            _ip("netns", "add", namespace)
            made.append(namespace)
            outside, inside = f"asv{tag}{index}", f"asp{tag}{index}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", outside, "master", bridge, "up")
            _ip("link", "set", inside, "netns", namespace)
            for args in (
                ("addr", "add", f"{address}/24", "dev", inside),
                ("link", "set", inside, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("-n", namespace, *args)
        yield gateway, hosts
    except subprocess.CalledProcessError as exc:
        _unavailable(f"cannot make network namespaces here: {exc.stderr.decode().strip()}")
    finally:
        for namespace in made:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@contextmanager
def private_redis(address: str) -> Iterator[str]:
    port = free_port_on(address)
    folder = tempfile.mkdtemp(prefix="agentsession-hosts-redis-")
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            address,
            "--port",
            str(port),
            "--save",
            "",
            "--dir",
            folder,
            "--protected-mode",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection((address, port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://{address}:{port}/0"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


class Host:
    """uvicorn with the Starlette example in one namespace."""

    def __init__(self, namespace: str, address: str, store: str, log: Path) -> None:
        self.namespace, self.address, self.store, self.log = namespace, address, store, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:8000"

    def start(self, **env: str) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, "env",
                 *(f"{k}={v}" for k, v in {
                     "PYTHONPATH": str(REPO), "SECRET_KEY": SECRET,
                     "AGENTSESSION_STORE": self.store, **env}.items()),
                 sys.executable,
                 "-m", "uvicorn", "examples.starlette_app:app",
                 "--host", self.address, "--port", "8000", "--log-level", "warning"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                httpx.post(f"{self.url}/chat", json={}, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"{self.namespace} did not come up: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture(params=["redis", "postgresql"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[Host]]]:
    with network() as (gateway, namespaces):
        if request.param == "redis":
            if shutil.which("redis-server") is None:
                _unavailable("redis-server is not installed")
            store_cm: Any = private_redis(gateway)
        else:
            if find_pgbouncer() is None:
                _unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
            store_cm = pgbouncer(listen=gateway, pool_size=4)
        with store_cm as found:
            if request.param == "redis":
                store = str(found)
            else:
                prefix = f"hosts{secrets.token_hex(3)}_"
                store = (
                    f"postgresql://postgres@{gateway}:{found}/test"
                    f"?pgbouncer=true&table_prefix={prefix}"
                )
            hosts = [Host(ns, ip, store, tmp_path / f"{ns}.log") for ns, ip in namespaces]
            try:
                for host in hosts:
                    host.start()
                yield store, hosts
            finally:
                for host in hosts:
                    host.kill()
                if request.param == "postgresql":
                    with SessionManager(offline_agent_factory(), store) as manager:
                        manager._run(manager.store.drop())  # type: ignore[attr-defined]


def stored_conversation(store: str) -> list[Any]:
    with SessionManager(offline_agent_factory(), store) as manager:
        (info,) = manager.list()
        return manager.history(info.session_id)


def test_turns_spread_over_hosts_lose_nothing(deployment: tuple[str, list[Host]]) -> None:
    store, hosts = deployment
    first = httpx.post(f"{hosts[0].url}/chat", json={"message": "turn start"}, timeout=30)
    assert first.status_code == 200
    cookie = {"agentsession": first.cookies["agentsession"]}

    def turn(index: int) -> tuple[str, int]:
        text = f"turn {index}"
        host = hosts[index % len(hosts)]
        response = httpx.post(
            f"{host.url}/chat", json={"message": text}, cookies=cookie, timeout=60
        )
        return text, response.status_code

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(turn, range(50)))
    assert {status for _, status in answers} <= {200, 409}, answers
    acknowledged = {"turn start"} | {text for text, status in answers if status == 200}
    assert len(acknowledged) > 1 + len(hosts)  # turns went through on several hosts

    # a host killed in the middle of a slow turn: nothing acknowledged is lost
    slow = hosts[-1]
    slow.kill()
    slow.start(OFFLINE_CHUNK_DELAY="0.5")
    doomed = threading.Thread(target=_post_and_lose, args=(f"{slow.url}/chat", cookie))
    doomed.start()
    time.sleep(1.5)  # the turn holds the lease, its model is writing
    slow.kill()
    doomed.join()
    deadline = time.monotonic() + 30
    while True:  # the dead host's lease expires (lease_ttl 6 s), then turns go on
        after = httpx.post(f"{hosts[0].url}/chat", json={"message": "after"}, cookies=cookie,
                           timeout=30)  # fmt: skip
        if after.status_code == 200 or time.monotonic() > deadline:
            break
        assert after.status_code == 409
        time.sleep(0.5)
    assert after.status_code == 200
    acknowledged.add("after")

    history = stored_conversation(store)
    users = [m.content for m in history if m.role == "user"]
    assert sorted(users) == sorted(acknowledged)  # each acknowledged turn exactly once
    assert "doomed" not in users
    assert [m.role for m in history] == ["user", "assistant"] * len(users)
    replies = [m.content for m in history if m.role == "assistant"]
    assert [user_messages_seen(r) for r in replies] == list(range(1, len(users) + 1))


def _post_and_lose(url: str, cookie: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the host dies under it: not acknowledged
        httpx.post(url, json={"message": "doomed"}, cookies=cookie, timeout=60)
