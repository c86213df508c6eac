"""Time to recovery, per store: after a worker is killed in the middle of a turn (its lease
must expire), and after the store itself crashes and restarts (the same store object must
reconnect). Seconds, medians of a few rounds; the numbers behind docs/engine.md and
docs/stores.md.

The outage part crashes private servers on free ports, started with the test suite's helpers
(tests/stores/test_store_servers.py), never the shared ones.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from agentsession import AsyncSessionManager, SessionBusy, StoreUnavailable
from agentsession.offline import offline_agent_factory

from ._report import Table

ROOT = Path(__file__).resolve().parent.parent
SHARED = {
    "redis": "redis://127.0.0.1:6379/0",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql://root@127.0.0.1:3306/test",
}

_HOLD = textwrap.dedent(
    """
    import asyncio, sys
    from agentsession import AsyncSessionManager
    from agentsession.offline.agentchat import build_agent

    async def slow(n: int) -> int:
        print("turn started", flush=True)
        await asyncio.sleep(600)
        return n

    async def main() -> None:
        async with AsyncSessionManager(lambda: build_agent(tools=[slow]), sys.argv[1]) as m:
            await m.send(sys.argv[2], '/tool slow {"n": 1}')

    asyncio.run(main())
    """
)


async def after_a_crash(url: str) -> float:
    """Seconds from kill -9 of a worker mid-turn until another worker's turn succeeds."""
    async with AsyncSessionManager(offline_agent_factory("agentchat"), url) as manager:
        session_id = manager.session().id
        await manager.send(session_id, "before")
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timing
            [sys.executable, "-c", _HOLD, url, session_id], stdout=subprocess.PIPE, text=True
        )
        assert worker.stdout is not None
        worker.stdout.readline()
        worker.kill()
        worker.wait()
        killed = time.monotonic()
        while True:
            try:
                await manager.send(session_id, "after")
                return time.monotonic() - killed
            except SessionBusy:
                continue


async def after_an_outage(server: Any) -> tuple[float, float]:
    """(seconds a call takes to fail while the server is down, seconds from the server
    accepting connections again to the first successful turn)."""
    async with AsyncSessionManager(offline_agent_factory("agentchat"), server.url) as manager:
        session_id = manager.session().id
        await manager.send(session_id, "before")
        await asyncio.to_thread(server.crash)
        started = time.monotonic()
        try:
            await manager.send(session_id, "while down")
        except StoreUnavailable:
            failed = time.monotonic() - started
        await asyncio.to_thread(server.start)
        back = time.monotonic()
        while True:
            try:
                await manager.send(session_id, "after")
                return failed, time.monotonic() - back
            except StoreUnavailable:
                await asyncio.sleep(0.01)


def _private_servers() -> dict[str, type]:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "stores")]
    from test_store_servers import SERVERS  # the suite's private-server helpers

    return dict(SERVERS)


def measure(quick: bool) -> list[Table]:
    rounds = 1 if quick else 3
    table = Table(
        "Time to recovery (seconds, median)",
        [
            "store",
            "kill -9 mid-turn: next turn after",
            "outage: a call fails after",
            "restart: first turn after",
        ],
        notes=[
            "kill -9: the engine's defaults (lease_ttl 6 s, renewed every 2 s while a turn runs; "
            "lock_timeout 2 s), a client retrying on SessionBusy at once.",
            "outage: a private server crashed (kill -9) and restarted; the same store object.",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{tmp}/recovery.db"}
        for kind, base in SHARED.items():
            option = "prefix" if kind == "redis" else "table_prefix"
            tag = uuid.uuid4().hex[:8]
            urls[kind] = f"{base}?{option}=bench{tag}{':' if kind == 'redis' else '_'}"
        servers = _private_servers()
        for kind, url in urls.items():
            crash = statistics.median(asyncio.run(after_a_crash(url)) for _ in range(rounds))
            fails, back = "", ""
            if kind in servers:
                root = Path(tempfile.mkdtemp(prefix="agentsession-server-"))
                server = servers[kind](root)
                try:
                    server.start()
                    samples = [asyncio.run(after_an_outage(server)) for _ in range(rounds)]
                    fails = statistics.median(s[0] for s in samples)
                    back = statistics.median(s[1] for s in samples)
                finally:
                    server.cleanup()
                    shutil.rmtree(root, ignore_errors=True)
            table.rows.append([kind, round(crash, 2), _round(fails), _round(back)])
    return [table]


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


if __name__ == "__main__":
    for result in measure(quick="--quick" in sys.argv):
        print(result.markdown())
